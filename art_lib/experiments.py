"""One table row = one call: train a method on a benchmark, save what would be served, score it from disk.

Notebooks call these functions; they hold no training loop, loss or answer parsing themselves.
Every arm starts from a freshly loaded frozen model, trains with `train.train` (the same loop for
every method) and is evaluated from its saved artifact: the 8-bit PNG for ART (on the same frozen
model, whose weights training leaves bit-identical), the adapter folder for LoRA (on a fresh base),
the embedding file for soft prompts.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import time
import types
from pathlib import Path

import pandas as pd
import torch

from .checkpoint import Checkpointer, safe_load
from .controls import evaluate_controls
from .data import load_benchmark
from .evaluate import evaluate
from .methods import load_lora_adapter
from .models import load_frozen, resolve_device, resolve_dtype
from .pixel_prompt import PixelPrompt
from .scoring import EvalResult, score_completions
from .train import train
from .transforms import resize_to


def resolve_model(model: str) -> tuple[str, str]:
    """(path or id to load, label for tables): `"<scheme>:<spec>"` names of a registered scheme (`registry`)
    resolve to a checkpoint folder; anything else is a hub id or folder."""
    from .registry import resolve_model as resolve

    return resolve(model)


def generation_budget(benchmark: str) -> int:
    """A benchmark's generation budget for evaluation and RL rollouts (`registry`: 512 for the real ones)."""
    from .registry import get_benchmark

    return get_benchmark(benchmark).max_new_tokens


def resolve_runtime(device: str = "auto", dtype: str = "auto") -> tuple[str, str]:
    """Notebook names of what will run: ("auto", "auto") -> ("cuda", "bfloat16") with a GPU, else ("cpu", "float32").

    The rules are `models.resolve_device` / `resolve_dtype` (CUDA asked for where there is none: error).
    """
    dev = resolve_device(device)
    return str(dev), str(resolve_dtype(dtype, dev)).removeprefix("torch.")


def _placement(model) -> dict:
    """Where the frozen weights actually are: {"device": "cuda:0" | "cpu", "dtype": "bfloat16" | ...}."""
    p = next(model.parameters())
    return {"device": str(p.device), "dtype": str(p.dtype).removeprefix("torch.")}


def dry_run_reward(completions: list, examples: list[dict]) -> list[float]:
    """Dry runs only: 1, 0, 1, 0, ... by position, so every group of >= 2 completions is informative.

    A random stand-in model never earns a real reward; this forces non-zero advantages so the
    dry run reaches a policy update. Never used by a paper or default parameter file.
    """
    return [float(i % 2 == 0) for i in range(len(completions))]


REWARDS = {"dry_run": dry_run_reward}


def _jsonable(o, depth: int = 0):
    """A stable JSON stand-in for config values (callables by name and closure, objects by their fields).

    Deeply nested objects (an inference engine, say) are named by their type past a few levels.
    """
    if depth > 4:
        return type(o).__qualname__
    d = depth + 1
    if isinstance(o, types.ModuleType):
        return o.__name__
    if callable(o) and hasattr(o, "__qualname__"):
        closure = getattr(o, "__closure__", None) or []  # builtins have none
        return [getattr(o, "__module__", None), o.__qualname__, [_jsonable(c.cell_contents, d) for c in closure]]
    if isinstance(o, torch.Tensor):
        return hashlib.sha1(o.detach().cpu().float().contiguous().numpy().tobytes()).hexdigest()
    if isinstance(o, torch.Generator):  # its state, not its address
        return hashlib.sha1(o.get_state().numpy().tobytes()).hexdigest()
    if hasattr(o, "__dict__"):
        return [type(o).__qualname__, {k: _jsonable(v, d) for k, v in sorted(vars(o).items())}]
    if isinstance(o, (list, tuple)):
        return [_jsonable(v, d) for v in o]
    if isinstance(o, dict):
        return {str(k): _jsonable(v, d) for k, v in o.items()}
    if isinstance(o, (str, int, float, bool, type(None))):
        return o
    text = repr(o)
    return type(o).__qualname__ if " at 0x" in text else text  # a memory address is no identity


def config_hash(config: dict) -> str:
    """Short hash of an arm's whole configuration (what the manifest compares before skipping it)."""
    return hashlib.sha1(json.dumps(_jsonable(config), sort_keys=True, default=repr).encode()).hexdigest()[:16]


def finished_arm(out_dir: Path, stem: str, chash: str) -> dict | None:
    """The manifest row (`arms.jsonl`) of an arm finished earlier with the same config, if its artifact is there."""
    path = Path(out_dir) / "arms.jsonl"
    if not path.exists():
        return None
    for line in path.read_text().splitlines():
        rec = json.loads(line) if line.strip() else {}
        same = rec.get("stem") == stem and rec.get("config_hash") == chash
        if same and (Path(out_dir) / rec["row"]["artifact"]).exists():
            return rec["row"]
    return None


def record_arm(out_dir: Path, stem: str, chash: str, row: dict) -> None:
    """Append a finished arm to the results folder's manifest (one JSON line, flushed at once)."""
    with open(Path(out_dir) / "arms.jsonl", "a") as f:
        f.write(json.dumps({"stem": stem, "config_hash": chash, "row": row}, default=str) + "\n")


def arm_stem(method: str, benchmark: str, objective: str, seed: int, label: str = "") -> str:
    """An arm's file stem in its results folder (artifact, checkpoints, manifest)."""
    return f"{label or method}-{benchmark}-{objective}-seed{seed}"


def final_float_pixels(out_dir: str | Path, row: dict) -> torch.Tensor:
    """The float pixels (3, H, W) an ART arm ended with (saved next to its PNG by `run_arm`)."""
    return safe_load(Path(out_dir) / f"{Path(row['artifact']).stem}.float.pt")


def arm_checkpoints(out_dir: str | Path, stem: str, every: int, keep: int = 2) -> Checkpointer:
    """The per-arm checkpoint folder `<results>/checkpoints/<arm stem>/`."""
    return Checkpointer(Path(out_dir) / "checkpoints" / stem, every=every, keep=keep)


def evaluate_soft_prompt(
    model,
    processor,
    examples: list[dict],
    path: str | Path,
    *,
    benchmark: str,
    max_new_tokens: int = 512,
    batch_size: int = 16,
) -> EvalResult:
    """Greedy accuracy with saved soft-prompt embeddings in place of the image (not servable by engines)."""
    from .prompting import example_text
    from .rollout import generate_rollouts

    saved = safe_load(path)  # a .pt file may come from anyone: tensors only, never code
    dtype = next(model.parameters()).dtype
    image = {"pixel_values": None, "image_grid_thw": saved["image_grid_thw"]}
    texts = [example_text(processor, e) for e in examples]
    completions = []
    for i in range(0, len(texts), batch_size):
        r = generate_rollouts(
            model,
            processor,
            texts[i : i + batch_size],
            examples[i : i + batch_size],
            num_generations=1,
            image=image,
            image_embeds=saved["embeds"].to(dtype),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            compute_logprobs=False,
        )
        completions += r.completions
    return score_completions(examples, completions, benchmark, label="soft_prompt")


#: Trainer memory settings (`TrainConfig`), shared by an RL arm's SFT warm start.
MEMORY_FIELDS = ("micro_batch_size", "generation_batch_size", "gradient_checkpointing", "shared_prefix")


def run_arm(
    model_path: str | Path,
    benchmark: str,
    method: str,
    *,
    objective: str = "sft",
    seed: int = 0,
    out_dir: str | Path,
    train_examples: list[dict] | None = None,
    test_examples: list[dict] | None = None,
    n_train: int | None = None,
    n_test: int | None = None,
    image_size: int = 64,
    seed_icon: str = "math",
    artwork: PixelPrompt | None = None,
    max_new_tokens: int | None = None,
    label: str = "",
    model_label: str | None = None,
    warm_start: dict | None = None,
    device: str = "auto",
    dtype: str = "auto",
    data_dir: str | dict | None = None,
    checkpoint_every: int = 0,
    checkpoint_keep: int = 2,
    resume: bool = False,
    reward: str | None = None,
    eval_batch_size: int = 8,
    progress: bool = False,
    **train_kw,
) -> tuple[dict, object | None]:
    """Train one method and evaluate it from its saved artifact; returns (table row, TrainResult or None).

    `warm_start` (RL objectives only), e.g. `{"steps": 20, "lr": 0.05, "batch_size": 16}`: first train
    the same artwork / adapter with SFT for that many steps, then continue with `objective` from there
    (a policy that never earns a reward gives GRPO / DAPO nothing to learn from). The row's
    `warm_start_steps` says so; score the warm start alone with an SFT arm of the same settings.

    `model_label` is the model's name as the user typed it (`toy:base`, a hub id; default: `model_path`): the
    table's `model` column, the artifact's `model_id` and the configuration hash use it, never the local folder a
    scheme resolved to, so results do not depend on where the checkout lives.

    Long runs: `checkpoint_every` > 0 saves the arm every N steps under `<out_dir>/checkpoints/<arm>/`;
    with `resume`, a rerun continues from there, and an arm already recorded in `<out_dir>/arms.jsonl`
    with the same configuration is not trained again (its row is returned with `None` for the result).
    Without `resume` the arm's old checkpoints are deleted first. `max_new_tokens` is the generation
    budget of evaluation and (unless `max_completion_length` is given) of RL rollouts; default: the
    benchmark's. `reward="dry_run"` (dry runs only) replaces the benchmark's scorer for RL.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_label = model_label or str(model_path)
    stem = arm_stem(method, benchmark, objective, seed, label)
    train_examples = train_examples or load_benchmark(
        benchmark, data_dir=data_dir, split="train", limit=n_train, seed=seed
    )
    test_examples = test_examples or load_benchmark(benchmark, data_dir=data_dir, split="test", limit=n_test)
    mnt = max_new_tokens or generation_budget(benchmark)
    if objective != "sft":
        train_kw.setdefault("max_completion_length", mnt)
    device, dtype = resolve_runtime(device, dtype)
    config = {
        "model": model_label,
        "benchmark": benchmark,
        "method": method,
        "objective": objective,
        "seed": seed,
        "image_size": image_size,
        "seed_icon": seed_icon,
        "max_new_tokens": mnt,
        "warm_start": warm_start,
        "dtype": dtype,
        "reward": reward,
        # memory settings leave the results unchanged: changing them does not retrain a finished arm
        "train_kw": {k: v for k, v in train_kw.items() if k not in MEMORY_FIELDS},
        "train_ids": [e["id"] for e in train_examples],
        "test_ids": [e["id"] for e in test_examples],
        "artwork": artwork,
    }
    chash = config_hash(config)
    if resume and (done := finished_arm(out_dir, stem, chash)) is not None:
        print(f"[arm] {stem}: finished earlier (arms.jsonl), not trained again", flush=True)
        return done, None
    if checkpoint_every and "checkpoint" not in train_kw:
        if not resume:
            shutil.rmtree(out_dir / "checkpoints" / stem, ignore_errors=True)  # a fresh run, not an old one's state
        train_kw["checkpoint"] = arm_checkpoints(out_dir, stem, checkpoint_every, keep=checkpoint_keep)
    if reward is not None:
        train_kw["reward_fn"] = REWARDS[reward]
    print(f"[arm] {stem}: {train_kw.get('steps', '?')} steps on {device} ({dtype})", flush=True)
    model, processor = load_frozen(model_path, device=device, dtype=dtype)
    torch.manual_seed(seed)
    if artwork is None and method != "lora":
        artwork = PixelPrompt.from_icon(seed_icon, image_size)
    t = time.perf_counter()
    init_state = None
    if warm_start:
        if objective == "sft":
            raise ValueError("warm_start is an SFT phase before an RL objective; with objective='sft' add its steps")
        shared = {
            k: train_kw[k] for k in ("lora_rank", "lora_alpha", "lora_dropout") + MEMORY_FIELDS if k in train_kw
        }  # same adapter, same memory settings
        seed_artwork = copy.deepcopy(artwork)  # training moves the artwork in place; the KL reference stays the seed
        warm = train(
            model,
            processor,
            train_examples,
            method=method,
            objective="sft",
            artwork=artwork,
            benchmark=benchmark,
            seed=seed,
            progress=progress,
            **(shared | warm_start),
        )
        init_state, artwork = warm.method.state_dict(), seed_artwork
        if method == "lora":
            model = warm.method.model.unload()  # the frozen base again, without adapter layers
    res = train(
        model,
        processor,
        train_examples,
        method=method,
        objective=objective,
        artwork=artwork,
        benchmark=benchmark,
        seed=seed,
        progress=progress,
        init_state=init_state,
        **train_kw,
    )
    train_s = time.perf_counter() - t
    artifact = res.method.save(
        out_dir / stem,
        model_id=model_label,
        objective=objective,
        step=int(res.history["step"].iloc[-1]),
        benchmark=benchmark,
    )
    if method == "art":  # the float pixels too, to compare with the 8-bit PNG after a resumed run
        torch.save(res.artwork.pixels().detach().cpu(), out_dir / f"{stem}.float.pt")
    # Score what would be served, loaded back from disk. ART and soft prompts leave the frozen model
    # bit-identical (tested), so it is reused; LoRA needs the base without the trained adapter layers.
    ev_kw = dict(benchmark=benchmark, max_new_tokens=mnt, batch_size=eval_batch_size)
    if method == "art":
        # An artwork trained through `resize_to` is scored through the processor's own resize (Table 3).
        ev = evaluate(
            model,
            processor,
            test_examples,
            image=artifact,
            progress=False,
            allow_resize=isinstance(train_kw.get("eot"), resize_to),
            **ev_kw,
        )
    elif method == "lora":
        base, proc = load_frozen(model_path, device=device, dtype=dtype)
        ev = evaluate(load_lora_adapter(base, artifact), proc, test_examples, image=None, progress=False, **ev_kw)
    else:
        ev = evaluate_soft_prompt(model, processor, test_examples, artifact, **ev_kw)
    h = res.history
    grad = h["grad_norm"] if "grad_norm" in h else pd.Series(0.0, index=h.index)
    row = {
        "method": label or method,
        "objective": objective,
        "benchmark": benchmark,
        "model": model_label,
        "seed": seed,
        "trainable_params": res.trainable_parameters,
        "steps": len(h),
        "warm_start_steps": int((warm_start or {}).get("steps", 0)),
        # steps whose loss moved the trainable parameters (RL: a step whose groups all tie has none)
        "policy_updates": int((h["loss"].notna() & (grad.fillna(0) > 0)).sum()),
        "train_seconds": round(train_s, 1),
        "final_train_loss": float(h["loss"].iloc[-1]),
        "n_test": ev.n,
        "accuracy": ev.accuracy,
        "ci_low": ev.ci_low,
        "ci_high": ev.ci_high,
        "max_new_tokens": mnt,
        **_placement(model),
        "artifact": Path(artifact).name,
    }
    record_arm(out_dir, stem, chash, row)
    return row, res


def control_rows(
    model_path: str | Path,
    benchmark: str,
    *,
    n_test: int | None = None,
    image_size: int = 64,
    seed_icon: str = "math",
    seed: int = 0,
    model_label: str = "model",
    max_new_tokens: int | None = None,
    device: str = "auto",
    dtype: str = "auto",
    data_dir: str | dict | None = None,
    eval_batch_size: int = 8,
) -> list[dict]:
    """Rows for the controls (text-only, seed image, noise image, token-matched random text), same scorer."""
    test_examples = load_benchmark(benchmark, data_dir=data_dir, split="test", limit=n_test)
    device, dtype = resolve_runtime(device, dtype)
    model, processor = load_frozen(model_path, device=device, dtype=dtype)
    mnt = max_new_tokens or generation_budget(benchmark)
    df = evaluate_controls(
        model,
        processor,
        test_examples,
        benchmark=benchmark,
        size=image_size,
        seed_icon_name=seed_icon,
        seed=seed,
        max_new_tokens=mnt,
        batch_size=eval_batch_size,
        progress=False,
    )
    rows = []
    for r in df.to_dict("records"):
        rows.append(
            {
                "method": f"control:{r['control']}",
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
                "n_test": r["n"],
                "accuracy": r["accuracy"],
                "ci_low": r["ci_low"],
                "ci_high": r["ci_high"],
                "max_new_tokens": mnt,
                **_placement(model),
                "artifact": "",
            }
        )
    return rows


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
