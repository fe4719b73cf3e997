"""Evaluations without training, each recorded in the results folder's manifest: controls and transports.

`control_rows` and `transport_rows` look every evaluation up in `<results>/evals.jsonl` (`manifest`) before running
it, load the model only when something is missing, and release it before returning.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from .controls import CONTROLS, evaluate_controls
from .data import load_benchmark_once
from .manifest import image_hash, recorded_evaluations
from .models import load_frozen
from .runtime import Runtime, default_image_size, free_memory, generation_budget, open_engine, placement, resolve_engine


def _untrained_row(
    method: str, benchmark: str, model_label: str, seed: int, mnt: int, res: dict, placement: dict, engine: str
):
    """A table row for an evaluation without training (a control), in `run_arm`'s columns."""
    return {
        "method": method,
        "objective": "none",
        "benchmark": benchmark,
        "model": model_label,
        "seed": seed,
        "trainable_params": 0,
        "warm_start_steps": 0,
        "steps": 0,
        "policy_updates": 0,
        "train_seconds": 0.0,
        "final_train_loss": float("nan"),
        "n_test": res["n"],
        "accuracy": res["accuracy"],
        "ci_low": res["ci_low"],
        "ci_high": res["ci_high"],
        "max_new_tokens": mnt,
        "rollout_engine": "",
        "eval_engine": engine,
        **placement,
        "artifact": "",
    }


def _engine_key(engine: str) -> dict:
    """The engine in an evaluation's hash when it is not HF (HF evaluations keep the hashes they always had)."""
    return {} if engine == "hf" else {"engine": engine}


@contextmanager
def _engine_for(engine: str, model_path, model, runtime: Runtime, seed: int):
    """ "hf", or a vLLM engine on the checkpoint beside `model` for the evaluations of one call, closed after them."""
    if engine == "hf":
        yield "hf"
        return
    kw = dict(dtype=runtime.dtype, seed=seed, memory_fraction=runtime.vllm_memory_fraction)
    eng = open_engine(model_path, model, method="art", **kw)
    try:
        yield eng
    finally:
        eng.close()


def control_rows(
    model_path: str | Path,
    benchmark: str,
    *,
    which: Sequence[str] = CONTROLS,
    out_dir: str | Path | None = None,
    resume: bool = False,
    n_test: int | None = None,
    image_size: int | None = None,
    seed_icon: str = "math",
    seed: int = 0,
    model_label: str | None = None,
    max_new_tokens: int | None = None,
    runtime: Runtime | None = None,
) -> list[dict]:
    """Rows for the controls in `which` (text-only, seed image, noise image, token-matched random text), same scorer.

    Each control is recorded in `<out_dir>/evals.jsonl` under a hash of its configuration (model label, benchmark,
    test ids, budget, dtype, control, image size, seed icon, seed); with `resume` a recorded one is not evaluated
    again, and the model is loaded only when some control is missing. `image_size`: default as `run_arm`'s.
    `runtime` (`runtime.Runtime`, default: its defaults): device, dtype, data sources, evaluation batch and engine.
    """
    unknown = [c for c in which if c not in CONTROLS]
    if unknown:
        raise ValueError(f"unknown controls {unknown} in which=; valid: {list(CONTROLS)}")
    rt = runtime or Runtime()
    test_examples = load_benchmark_once(benchmark, data_dir=rt.data_dir, split="test", limit=n_test)
    model_label = model_label or str(model_path)
    image_size = image_size or default_image_size(model_path)
    mnt = max_new_tokens or generation_budget(benchmark)
    common = dict(evaluation="control", model=model_label, benchmark=benchmark, max_new_tokens=mnt, dtype=rt.dtype)
    common |= dict(image_size=image_size, seed_icon=seed_icon, seed=seed, test_ids=[e["id"] for e in test_examples])
    common |= _engine_key(engine := resolve_engine(rt.eval_engine, rt.device))

    def evaluate_missing(names: Sequence[str]) -> dict[str, dict]:
        model, processor = load_frozen(model_path, device=rt.device, dtype=rt.dtype)
        with _engine_for(engine, model_path, model, rt, seed) as eng:
            df = evaluate_controls(
                model,
                processor,
                test_examples,
                benchmark=benchmark,
                size=image_size,
                seed_icon_name=seed_icon,
                seed=seed,
                controls=names,
                max_new_tokens=mnt,
                batch_size=rt.eval_batch_size,
                progress=False,
                engine=eng,
            )
        place = placement(model)
        return {
            r["control"]: _untrained_row(f"control:{r['control']}", benchmark, model_label, seed, mnt, r, place, engine)
            for r in df.to_dict("records")
        }

    rows = recorded_evaluations(out_dir, {c: common | {"control": c} for c in which}, evaluate_missing, resume=resume)
    free_memory()
    return list(rows.values())


def transport_rows(
    model_path: str | Path,
    benchmark: str,
    png: str | Path,
    *,
    kinds: Sequence[str] | None = None,
    out_dir: str | Path | None = None,
    files_dir: str | Path | None = None,
    resume: bool = False,
    test_examples: list[dict] | None = None,
    n_test: int | None = None,
    model_label: str | None = None,
    max_new_tokens: int | None = None,
    runtime: Runtime | None = None,
) -> pd.DataFrame:
    """The artwork `png` scored after each re-encoding in `kinds` (`transport.evaluate_transports`'s columns).

    Each (artwork pixels, transport) is recorded in `<out_dir>/evals.jsonl` under a hash of model label,
    benchmark, test ids, budget, dtype, the artwork's pixel hash and the transport; with `resume` a recorded one is
    not evaluated again, and the model is loaded only when some are missing. Transported PNGs go to `files_dir`.
    `runtime` (`runtime.Runtime`, default: its defaults): device, dtype, data sources, evaluation batch and engine.
    """
    from .transport import TRANSPORTS, evaluate_transports

    kinds = list(kinds or TRANSPORTS)
    rt = runtime or Runtime()
    test_examples = test_examples or load_benchmark_once(benchmark, data_dir=rt.data_dir, split="test", limit=n_test)
    mnt = max_new_tokens or generation_budget(benchmark)
    common = dict(evaluation="transport", model=model_label or str(model_path), benchmark=benchmark, dtype=rt.dtype)
    common |= dict(max_new_tokens=mnt, artwork=image_hash(png), test_ids=[e["id"] for e in test_examples])
    common |= _engine_key(engine := resolve_engine(rt.eval_engine, rt.device))

    def evaluate_missing(names: Sequence[str]) -> dict[str, dict]:
        model, processor = load_frozen(model_path, device=rt.device, dtype=rt.dtype)
        with _engine_for(engine, model_path, model, rt, 0) as eng:
            df = evaluate_transports(
                model,
                processor,
                test_examples,
                png,
                benchmark,
                kinds=names,
                out_dir=files_dir,
                max_new_tokens=mnt,
                batch_size=rt.eval_batch_size,
                progress=False,
                engine=eng,
            )
        place, root = placement(model), Path(out_dir or ".").resolve()
        rows = {}
        for r in df.to_dict("records"):  # files named relative to the results folder, not where it lives
            path = Path(r["path"]).resolve() if r["path"] else None
            r["path"] = str(path.relative_to(root)) if path and path.is_relative_to(root) else r["path"]
            rows[r["kind"]] = r | place
        return rows

    rows = recorded_evaluations(out_dir, {k: common | {"transport": k} for k in kinds}, evaluate_missing, resume=resume)
    free_memory()
    return pd.DataFrame(list(rows.values()))
