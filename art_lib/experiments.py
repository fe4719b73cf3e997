"""One table row = one call: train a method on a benchmark, save what would be served, score it from disk.

Notebooks call these functions; they hold no training loop, loss or answer parsing themselves.
Every arm starts from a freshly loaded frozen model, trains with `train.train` (the same loop for
every method) and is evaluated from its saved artifact: the 8-bit PNG for ART (on the same frozen
model, whose weights training leaves bit-identical), the adapter folder for LoRA (on the same base, its trained
adapter layers removed first), the embedding file for soft prompts.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path

import pandas as pd
import torch

from .checkpoint import Checkpointer, safe_load
from .config import RESULT_NEUTRAL
from .data import load_benchmark_once
from .evaluations import control_rows as control_rows
from .evaluations import transport_rows as transport_rows
from .manifest import config_hash as config_hash
from .manifest import finished_arm, record_arm
from .methods import evaluate_soft_prompt as evaluate_soft_prompt
from .methods import spec
from .models import load_frozen
from .pixel_prompt import PixelPrompt
from .runtime import Runtime as Runtime
from .runtime import default_image_size, free_memory, open_engine, placement, resolve_engine
from .runtime import generation_budget as generation_budget
from .runtime import resolve_model as resolve_model
from .runtime import resolve_runtime as resolve_runtime
from .runtime import smallest_valid_side as smallest_valid_side
from .train import train


def dry_run_reward(completions: list, examples: list[dict]) -> list[float]:
    """Dry runs only: 1, 0, 1, 0, ... by position, so every group of >= 2 completions is informative.

    A random stand-in model never earns a real reward; this forces non-zero advantages so the
    dry run reaches a policy update. Never used by a paper or default parameter file.
    """
    return [float(i % 2 == 0) for i in range(len(completions))]


REWARDS = {"dry_run": dry_run_reward}


def arm_stem(method: str, benchmark: str, objective: str, seed: int, label: str = "") -> str:
    """An arm's file stem in its results folder (artifact, checkpoints, manifest)."""
    return f"{label or method}-{benchmark}-{objective}-seed{seed}"


def final_float_pixels(out_dir: str | Path, row: dict) -> torch.Tensor:
    """The float pixels (3, H, W) an ART arm ended with (saved next to its PNG by `run_arm`)."""
    return safe_load(Path(out_dir) / f"{Path(row['artifact']).stem}.float.pt")


def arm_checkpoints(out_dir: str | Path, stem: str, every: int, keep: int = 2) -> Checkpointer:
    """The per-arm checkpoint folder `<results>/checkpoints/<arm stem>/`."""
    return Checkpointer(Path(out_dir) / "checkpoints" / stem, every=every, keep=keep)


@dataclasses.dataclass
class ReleasedMethod:
    """What `run_arm` returns of a trained method once its model is released: the name and the artwork (ART)."""

    name: str
    artwork: PixelPrompt | None = None


@dataclasses.dataclass(frozen=True)
class Arm:
    """One table row to train and score: everything here is part of the arm's configuration hash.

    `model`: a checkpoint folder, a hub id or a scheme name (`toy:base`); `model_label` is its name in the table,
    the artifact and the hash (default: the name as given, never the folder a scheme resolves to, so results do
    not depend on where the checkout lives). `train`: `TrainConfig` settings (`steps`, `lr`, `batch_size`, ...);
    the memory settings belong to `Runtime.memory`. `warm_start` (RL objectives only), e.g. `{"steps": 20, "lr":
    0.05, "batch_size": 16}`: first train the same artwork / adapter with SFT for that many steps, then continue
    with `objective` from there (a policy that never earns a reward gives GRPO / DAPO nothing to learn from); the
    row's `warm_start_steps` says so. `image_size` (ART, soft prompt): default the smallest square the checkpoint's
    processor keeps as is (256 for Qwen3.5, 64 for the toy models). Examples: `train_examples` / `test_examples`,
    or the benchmark's splits cut to `n_train` / `n_test`. `max_new_tokens`: the generation budget of evaluation
    and (unless `train` sets `max_completion_length`) of RL rollouts; default: the benchmark's.
    `reward="dry_run"` (dry runs only) replaces the benchmark's scorer for RL.
    """

    model: str | Path
    benchmark: str
    method: str
    objective: str = "sft"
    seed: int = 0
    train: dict = dataclasses.field(default_factory=dict)
    warm_start: dict | None = None
    label: str = ""
    model_label: str | None = None
    image_size: int | None = None
    seed_icon: str = "math"
    artwork: PixelPrompt | None = None
    n_train: int | None = None
    n_test: int | None = None
    train_examples: list[dict] | None = None
    test_examples: list[dict] | None = None
    max_new_tokens: int | None = None
    reward: str | None = None

    def __post_init__(self) -> None:
        if memory := sorted(set(self.train) & set(RESULT_NEUTRAL)):
            raise ValueError(f"{memory} leave the results unchanged: set them in Runtime.memory, not Arm.train")
        if self.warm_start and self.objective == "sft":
            raise ValueError("warm_start is an SFT phase before an RL objective; with objective='sft' add its steps")

    @property
    def stem(self) -> str:
        """The arm's file stem in its results folder (artifact, checkpoints, manifest)."""
        return arm_stem(self.method, self.benchmark, self.objective, self.seed, self.label)


@dataclasses.dataclass(frozen=True)
class Checkpointing:
    """Where an arm's files go and how a long run survives an interruption.

    `every` > 0 saves the arm every N steps under `<out_dir>/checkpoints/<arm>/`, keeping the last `keep`; with
    `resume` a rerun continues from there, and an arm already recorded in `<out_dir>/arms.jsonl` with the same
    configuration is not trained again. Without `resume` the arm's old checkpoints are deleted first.
    """

    out_dir: str | Path
    every: int = 0
    keep: int = 2
    resume: bool = False


def run_arm(
    arm: Arm, runtime: Runtime | None = None, checkpointing: Checkpointing | None = None, *, keep_model: bool = False
) -> tuple[dict, object | None]:
    """Train one method and evaluate it from its saved artifact; returns (table row, TrainResult or None).

    `arm` says what is trained and scored, `runtime` where and how (default: `Runtime()`), `checkpointing` where the
    files go (default: `runs/arms`) and how a rerun resumes; an arm already recorded with the same configuration
    returns its row and `None`. One model in memory at a time: the model is released before returning (the result
    keeps the history and the artwork; `keep_model=True` keeps the trained method with its model, to inspect it).
    The engines (`Runtime.rollout_engine`, `eval_engine`) are part of the arm's configuration and row; a soft prompt
    is always generated with HF (no engine can be sent one).
    """
    rt, ck = runtime or Runtime(), checkpointing or Checkpointing("runs/arms")
    out_dir = Path(ck.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path, model_label = _model(arm)
    train_examples, test_examples = _examples(arm, rt)
    mnt = arm.max_new_tokens or generation_budget(arm.benchmark)
    train_kw = dict(arm.train)
    if arm.objective != "sft":
        train_kw.setdefault("max_completion_length", mnt)
    engines = _arm_engines(arm.method, arm.objective, rt.rollout_engine, rt.eval_engine, rt.device)
    image_size = arm.image_size or default_image_size(model_path)
    config = {
        "model": model_label,
        "benchmark": arm.benchmark,
        "method": arm.method,
        "objective": arm.objective,
        "seed": arm.seed,
        "image_size": image_size,
        "seed_icon": arm.seed_icon,
        "max_new_tokens": mnt,
        "warm_start": arm.warm_start,
        "dtype": rt.dtype,
        "reward": arm.reward,
        "train_kw": train_kw,
        "train_ids": [e["id"] for e in train_examples],
        "test_ids": [e["id"] for e in test_examples],
        "artwork": arm.artwork,
        # engines other than HF change the numbers (8-bit rollouts, engine kernels); HF runs keep their old hash
        **{f"{k}_engine": v for k, v in engines.items() if v != "hf"},
    }
    chash, stem = config_hash(config), arm.stem
    if ck.resume and (done := finished_arm(out_dir, stem, chash)) is not None:
        print(f"[arm] {stem}: finished earlier (arms.jsonl), not trained again", flush=True)
        return done, None
    if ck.every:
        if not ck.resume:
            shutil.rmtree(out_dir / "checkpoints" / stem, ignore_errors=True)  # a fresh run, not an old one's state
        train_kw["checkpoint"] = arm_checkpoints(out_dir, stem, ck.every, keep=ck.keep)
    if arm.reward is not None:
        train_kw["reward_fn"] = REWARDS[arm.reward]
    print(f"[arm] {stem}: {train_kw.get('steps', '?')} steps on {rt.device} ({rt.dtype})", flush=True)
    artwork = arm.artwork
    if artwork is None and spec(arm.method).shows_image:
        artwork = PixelPrompt.from_icon(arm.seed_icon, image_size)
    row, res = _train_and_score(
        dataclasses.replace(arm, model=model_path, artwork=artwork),
        train_examples,
        test_examples,
        runtime=rt,
        engines=engines,
        save=dict(path=out_dir / stem, model_id=model_label),
        eval_kw=dict(benchmark=arm.benchmark, max_new_tokens=mnt, batch_size=rt.eval_batch_size),
        train_kw=train_kw,
    )
    row = {"method": arm.label or arm.method, **row}
    record_arm(out_dir, stem, chash, row)
    if not keep_model:  # the caller's `row, _ = run_arm(...)` must not keep this model alive into the next load
        res = dataclasses.replace(res, method=ReleasedMethod(arm.method, res.artwork))
        free_memory()
    return row, res


def _model(arm: Arm) -> tuple[str, str]:
    """(what to load, the table's name for it): a scheme name resolves to its folder, the label stays the name."""
    path, label = (str(arm.model), str(arm.model)) if Path(arm.model).exists() else resolve_model(str(arm.model))
    return path, arm.model_label or label


def _examples(arm: Arm, rt: Runtime) -> tuple[list[dict], list[dict]]:
    """The arm's (train, test) examples: given, or its benchmark's splits (train shuffled by the arm's seed)."""
    load = dict(data_dir=rt.data_dir)
    train = arm.train_examples or load_benchmark_once(
        arm.benchmark, split="train", limit=arm.n_train, seed=arm.seed, **load
    )
    test = arm.test_examples or load_benchmark_once(arm.benchmark, split="test", limit=arm.n_test, **load)
    return train, test


def _arm_engines(method: str, objective: str, rollout, evaluation: str, device: str) -> dict[str, str]:
    """{"rollout": ..., "eval": ...} as "hf" / "vllm" / server URLs for this arm (SFT samples nothing; soft prompts:
    HF only; servers sample rollouts only, evaluation scores the saved artifact in process)."""
    engines = {"rollout": resolve_engine(rollout, device) if objective != "sft" else "hf"}
    engines["eval"] = resolve_engine(evaluation, device)
    if engines["eval"] not in ("hf", "vllm"):
        raise ValueError(
            f"eval_engine {evaluation!r}: servers serve RL rollouts here; score a server with client.evaluate_server"
        )
    if not spec(method).servable and set(engines.values()) != {"hf"}:
        print(f"[arm] {method}: no engine can be sent a soft prompt; generating with HF instead of vLLM", flush=True)
        engines = {k: "hf" for k in engines}
    return engines


def _train(model, processor, arm: Arm, train_examples: list[dict], rt: Runtime, train_kw: dict):
    """The arm's training: an optional SFT warm start, then `objective`; returns (TrainResult, train seconds)."""
    torch.manual_seed(arm.seed)
    t = time.perf_counter()
    init_state = None
    common = dict(method=arm.method, benchmark=arm.benchmark, seed=arm.seed, progress=rt.progress, **rt.memory)
    if arm.warm_start:
        adapter = {k: train_kw[k] for k in ("lora_rank", "lora_alpha", "lora_dropout") if k in train_kw}
        warm = train(
            model,
            processor,
            train_examples,
            objective="sft",
            artwork=arm.artwork,
            **common,
            **(adapter | arm.warm_start),
        )  # trains a copy of the artwork: the KL reference of the run below stays the seed
        init_state, model = warm.method.state_dict(), warm.method.unload()  # the frozen model, no adapter layers
    res = train(
        model,
        processor,
        train_examples,
        objective=arm.objective,
        artwork=arm.artwork,
        init_state=init_state,
        **common,
        **train_kw,
    )
    return res, time.perf_counter() - t


def _score_artifact(arm: Arm, res, test_examples, engine, save, eval_kw):
    """(artifact path, EvalResult): save what would be served, score it loaded back from disk (on `engine` if any).

    ART and soft prompts leave the frozen model bit-identical (tested), so it is reused; so is LoRA's base, once the
    trained adapter layers are removed (vLLM: the engine loads the saved adapter folder itself).
    """
    h = res.history
    artifact = res.method.save(
        save["path"],
        model_id=save["model_id"],
        objective=arm.objective,
        step=int(h["step"].iloc[-1]),
        benchmark=arm.benchmark,
    )
    if res.artwork is not None:  # the float pixels too, to compare with the 8-bit PNG after a resumed run
        torch.save(res.artwork.pixels().detach().cpu(), Path(f"{save['path']}.float.pt"))
    return artifact, res.method.score_saved(artifact, test_examples, engine=engine, **eval_kw)


def _train_and_score(arm: Arm, train_examples, test_examples, *, runtime: Runtime, engines, save, eval_kw, train_kw):
    """Load the frozen model, train, save the artifact and score it from disk; the model dies with this frame."""
    rt = runtime
    model, processor = load_frozen(arm.model, device=rt.device, dtype=rt.dtype)
    place, engine = placement(model), None
    if "vllm" in engines.values():  # one engine for the arm's rollouts and its evaluation, beside the model
        engine = open_engine(
            arm.model, model, method=arm.method, dtype=rt.dtype, lora_rank=train_kw.get("lora_rank", 8),
            seed=arm.seed, memory_fraction=rt.vllm_memory_fraction,
        )  # fmt: skip
    try:
        if engines["rollout"] != "hf":  # the arm's offline engine, or the server URLs
            train_kw = train_kw | {"rollout_engine": engine if engines["rollout"] == "vllm" else engines["rollout"]}
        res, train_s = _train(model, processor, arm, train_examples, rt, train_kw)
        artifact, ev = _score_artifact(arm, res, test_examples, engine, save, eval_kw)
    finally:
        if engine is not None:
            engine.close()
    h = res.history
    grad = h["grad_norm"] if "grad_norm" in h else pd.Series(0.0, index=h.index)
    row = {
        "objective": arm.objective,
        "benchmark": arm.benchmark,
        "model": save["model_id"],
        "seed": arm.seed,
        "trainable_params": res.trainable_parameters,
        "steps": len(h),
        "warm_start_steps": int((arm.warm_start or {}).get("steps", 0)),
        # steps whose loss moved the trainable parameters (RL: a step whose groups all tie has none)
        "policy_updates": int((h["loss"].notna() & (grad.fillna(0) > 0)).sum()),
        "train_seconds": round(train_s, 1),
        "final_train_loss": float(h["loss"].iloc[-1]),
        "n_test": ev.n,
        "accuracy": ev.accuracy,
        "ci_low": ev.ci_low,
        "ci_high": ev.ci_high,
        "max_new_tokens": eval_kw["max_new_tokens"],
        "rollout_engine": engines["rollout"] if arm.objective != "sft" else "",
        "eval_engine": engines["eval"],
        **place,
        "artifact": Path(artifact).name,
    }
    return row, res


def tidy(rows: list[dict]) -> pd.DataFrame:
    """Rows -> a tidy table with a fixed column order."""
    cols = [
        "model",
        "benchmark",
        "method",
        "objective",
        "seed",
        "trainable_params",
        "warm_start_steps",
        "steps",
        "policy_updates",
        "train_seconds",
        "final_train_loss",
        "n_test",
        "accuracy",
        "ci_low",
        "ci_high",
        "max_new_tokens",
        "rollout_engine",
        "eval_engine",
        "device",
        "dtype",
        "artifact",
    ]
    df = pd.DataFrame(rows)
    return df[[c for c in cols if c in df.columns] + [c for c in df.columns if c not in cols]]


def sft_eval_loss(model, processor, examples: list[dict], pixels: torch.Tensor, batch_size: int = 32) -> float:
    """Mean SFT loss (completion-token NLL) of `examples` with the artwork `pixels` (3, H, W)."""
    from .forward import sft_nll
    from .preprocess import num_visual_tokens, preprocess_image
    from .prompting import encode, example_text
    from .registry import default_sft_target

    device = next(model.parameters()).device
    image = preprocess_image(pixels.to(device), processor.image_processor)
    n = num_visual_tokens(pixels.shape[1], pixels.shape[2], processor.image_processor)
    total, count = 0.0, 0.0
    with torch.no_grad():
        for i in range(0, len(examples), batch_size):
            chunk = examples[i : i + batch_size]
            batch = encode(
                processor,
                [example_text(processor, e) for e in chunk],
                [default_sft_target(e) for e in chunk],
                num_image_tokens=n,
            )
            total += float(sft_nll(model, batch.to(device), image))
            count += float(batch.completion_mask.sum())
    return total / max(count, 1.0)


def processor_resize(h: int, w: int, processor) -> tuple[int, int]:
    """The size the official processor resizes an h x w image to (unchanged when already valid)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    from .preprocess import patch_geometry

    g = patch_geometry(processor.image_processor)
    return tuple(smart_resize(h, w, factor=g["factor"], min_pixels=g["min_pixels"], max_pixels=g["max_pixels"]))
