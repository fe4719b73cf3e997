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


def results_dir(stem: str, root: str | Path | None = None) -> Path:
    """`results/<stem>/` (created), under `root` or the repository's `results/`."""
    root = Path(root) if root is not None else Path(__file__).resolve().parent.parent / "results"
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


def _cpu_model() -> str | None:
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
        "cpu": _cpu_model(),
        "cpu_threads": torch.get_num_threads(),
        "wall_time_s": round(time.time() - started, 1),
        "checkpoints": _checkpoint_info(parameters),
        **extra,
    }
    path = Path(folder) / "run_info.json"
    path.write_text(json.dumps(info, indent=2, default=str))
    return path


def table_checks(table: pd.DataFrame, expected: list[dict]) -> dict[str, bool]:
    """Statements that mean something at any scale (paper runs, dry runs), unlike the toy world's margins.

    `expected`: one dict of column values per arm the run should have produced, e.g.
    `{"benchmark": "gsm8k", "method": "art", "objective": "dapo"}`. Checks: every expected arm has a
    row; every accuracy is in [0, 1] inside its 95% interval; every arm scored at least one example;
    every RL arm made at least one policy update (a step with informative groups and a gradient).
    """
    checks = {}
    for want in expected:
        hit = pd.Series(True, index=table.index)
        for k, v in want.items():
            hit &= table[k] == v
        checks["arm present: " + ", ".join(f"{k}={v}" for k, v in want.items())] = bool(hit.any())
    acc, lo, hi = table["accuracy"], table["ci_low"], table["ci_high"]
    checks["every accuracy is in [0, 1] and inside its 95% interval"] = bool(
        ((acc >= 0) & (acc <= 1) & (lo <= acc + 1e-12) & (acc <= hi + 1e-12)).all()
    )
    checks["every arm was scored on at least one example"] = bool((table["n_test"] > 0).all())
    rl = table[~table["objective"].isin(["sft", "none"])]
    if len(rl) and "policy_updates" in rl:
        checks["every RL arm made at least one policy update"] = bool((rl["policy_updates"] >= 1).all())
    return checks
