"""Where notebooks put what they produce: results/<stem>/ with tables, figures and run info."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pandas as pd

PACKAGES = ("art-lib", "torch", "transformers", "peft", "trl", "accelerate", "numpy", "pillow", "pandas")


#: The committed results, written only on purpose (`bash scripts/reproduce.sh`, `reproduce --update-results`).
RESULTS = Path(__file__).resolve().parent.parent / "results"
#: Where any other run writes (git ignores it): a hand-run notebook never overwrites the committed results.
SCRATCH = Path(__file__).resolve().parent.parent / "runs"


def default_results_root() -> Path:
    """`$ART_RESULTS_ROOT` when set (reproduce sets it for the notebooks it runs), else the scratch `runs/`."""
    env = os.environ.get("ART_RESULTS_ROOT")
    return Path(env) if env else SCRATCH


def results_dir(stem: str, root: str | Path | None = None) -> Path:
    """`<root>/<stem>/` (created); `root` None: `default_results_root()`, so never `results/` by accident."""
    root = Path(root) if root is not None else default_results_root()
    path = root / stem if root.name != stem else root
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_table(df: pd.DataFrame, folder: str | Path, name: str = "table.csv") -> Path:
    """Write a tidy table as CSV (atomically) and return its path."""
    path = Path(folder) / name
    tmp = path.with_suffix(path.suffix + ".tmp")
    df.to_csv(tmp, index=False)
    os.replace(tmp, path)
    return path


def save_figure(fig, folder: str | Path, name: str) -> list[Path]:
    """Save a matplotlib figure as PNG and PDF; returns both paths."""
    out = []
    for ext in ("png", "pdf"):
        path = Path(folder) / f"{name}.{ext}"
        fig.savefig(path, dpi=150, bbox_inches="tight", metadata={"CreationDate": None} if ext == "pdf" else None)
        out.append(path)
    return out


def print_checks(checks: dict[str, bool]) -> None:
    """Print one line per statement about a run's results: `[holds]` or `[does not hold]`.

    Notebooks end their result section with these statements (with margins) rather than with raw
    digits for the CI's output check: on the toy world the exact accuracies depend on the CPU the toy
    model was pretrained and trained on, the statements should not. Nothing is asserted: a statement
    that does not hold is a finding, printed as such.
    """
    for text, ok in checks.items():
        print(f"[{'holds' if bool(ok) else 'does not hold'}] {text}")


def _git_commit() -> str | None:
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
                cwd=Path(__file__).resolve().parent,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        return None


def _versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def cpu_model() -> str | None:
    """This machine's CPU model name (from /proc/cpuinfo, else `platform.processor()`), None when unknown."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _checkpoint_info(parameters: dict) -> dict:
    """Identity (e.g. weights hashes) of the checkpoints a run's parameters name through a registered scheme.

    Checkpoints built on this machine (the toy world's, say) may differ on another CPU, so a results folder
    records which ones it used.
    """
    from .registry import model_scheme

    out = {}
    for v in parameters.values():
        for x in v if isinstance(v, (list, tuple)) else [v]:
            found = model_scheme(x) if isinstance(x, str) else None
            if found and found[0].info is not None and x not in out:
                out[x] = found[0].info(found[1])
    return out


def write_run_info(folder: str | Path, parameters: dict, started: float, device: str = "cpu", **extra) -> Path:
    """run_info.json: parameters, git commit, package versions, device, wall time."""
    import torch

    info = {
        "parameters": parameters,
        "git_commit": _git_commit(),
        "packages": _versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device": device,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu": cpu_model(),
        "cpu_threads": torch.get_num_threads(),
        "wall_time_s": round(time.time() - started, 1),
        "checkpoints": _checkpoint_info(parameters),
        **extra,
    }
    path = Path(folder) / "run_info.json"
    path.write_text(json.dumps(info, indent=2, default=str))
    return path


def table_checks(table: pd.DataFrame, expected: list[dict], round_trip_tol: float = 0.01) -> dict[str, bool]:
    """Statements that mean something at any scale (paper runs, dry runs), unlike the toy world's margins
    (`claims`), and that a broken run violates.

    `expected`: one dict of column values per arm the run should have produced, e.g.
    `{"benchmark": "gsm8k", "method": "art", "objective": "dapo"}`. Checks: every expected arm has a row and
    was scored on at least one example; every trained arm scores at least the best control of its model and
    benchmark; every RL arm made a policy update and ends no lower than its warm start's 95% interval (the
    `<method>-warm<N>` row; the seed-icon control when it started from the seed); where the table has the
    loss from the float pixels and from the 8-bit PNG, they differ by less than `round_trip_tol`.
    """
    checks = {}
    for want in expected:
        hit = pd.Series(True, index=table.index)
        for k, v in want.items():
            hit &= table[k] == v
        checks["arm present: " + ", ".join(f"{k}={v}" for k, v in want.items())] = bool(hit.any())
    checks["every arm was scored on at least one example"] = bool((table["n_test"] > 0).all())
    checks |= _beats_controls(table) | _rl_checks(table)
    if {"loss_png", "loss_float"} <= set(table.columns):
        change = (table["loss_png"] - table["loss_float"]).abs().dropna()
        checks[f"the 8-bit PNG round trip changes the loss by < {round_trip_tol:g}"] = bool(
            len(change) and (change < round_trip_tol).all()
        )
    return checks


def _keys(table: pd.DataFrame) -> list[str]:
    return [k for k in ("model", "benchmark", "seed") if k in table]


def _beats_controls(table: pd.DataFrame) -> dict[str, bool]:
    is_control = table["method"].str.startswith("control:")
    if not is_control.any():
        return {}
    keys = [k for k in _keys(table) if k != "seed"]
    best = table[is_control].groupby(keys)["accuracy"].max().rename("best_control")
    trained = table[~is_control].join(best, on=keys)
    trained = trained[trained["best_control"].notna()]
    return {
        "every trained arm scores at least the best control of its benchmark": bool(
            (trained["accuracy"] >= trained["best_control"]).all()
        )
    }


def _rl_checks(table: pd.DataFrame) -> dict[str, bool]:
    rl = table[~table["objective"].isin(["sft", "none"])]
    if not len(rl):
        return {}
    checks = {"every RL arm made at least one policy update": bool((rl["policy_updates"] >= 1).all())}
    for _, r in rl.iterrows():
        n = int(r.get("warm_start_steps", 0) or 0)
        start = f"{r['method']}-warm{n}" if n else "control:seed"
        same = [k for k in _keys(table) if k != "seed" or n]  # a control is scored once, not per training seed
        hit = (table["method"] == start) & (table[same] == r[same]).all(axis=1)
        if hit.any():
            floor = float(table.loc[hit, "ci_low"].min())
            name = f"{r['benchmark']}: {r['method']}/{r['objective']} ends at or above the 95% interval of {start}"
            checks[name] = bool(r["accuracy"] >= floor)
    return checks
