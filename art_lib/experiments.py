"""One table row = one call: train a method on a benchmark, save what would be served, score it from disk.

Notebooks call these functions; they hold no training loop, loss or answer parsing themselves.
Every arm starts from a freshly loaded frozen model, trains with `train.train` (the same loop for
every method) and is evaluated from its saved artifact: the 8-bit PNG for ART (on the same frozen
model, whose weights training leaves bit-identical), the adapter folder for LoRA (on a fresh base),
the embedding file for soft prompts.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import pandas as pd
import torch

from .checkpoint import safe_load
from .data import load_benchmark
from .evaluate import EvalResult, evaluate, evaluate_controls, score_completions
from .models import load_frozen
from .pixel_prompt import PixelPrompt
from .train import train


def resolve_model(model: str) -> tuple[str, str]:
    """(path or id to load, label for tables): `"<scheme>:<spec>"` names of a registered scheme (`registry`)
    resolve to a checkpoint folder; anything else is a hub id or folder."""
    from .registry import resolve_model as resolve

    return resolve(model)


def max_new_tokens_for(examples: list[dict], default: int = 512) -> int:
    """The generation budget a set of examples needs: the largest `meta["max_new_tokens"]`, else `default`."""
    return max([int((e.get("meta") or {}).get("max_new_tokens", default)) for e in examples] or [default])


def evaluate_soft_prompt(model, processor, examples: list[dict], path: str | Path, *, benchmark: str,
                         max_new_tokens: int = 512, batch_size: int = 16) -> EvalResult:
    """Greedy accuracy with saved soft-prompt embeddings in place of the image (not servable by engines)."""
    from .prompting import example_text
    from .rollout import generate_rollouts

    saved = safe_load(path)  # a .pt file may come from anyone: tensors only, never code
    dtype = next(model.parameters()).dtype
    image = {"pixel_values": None, "image_grid_thw": saved["image_grid_thw"]}
    texts = [example_text(processor, e) for e in examples]
    completions = []
    for i in range(0, len(texts), batch_size):
        r = generate_rollouts(model, processor, texts[i:i + batch_size], examples[i:i + batch_size],
                              num_generations=1, image=image, image_embeds=saved["embeds"].to(dtype),
                              max_new_tokens=max_new_tokens, do_sample=False, compute_logprobs=False)
        completions += r.completions
    return score_completions(examples, completions, benchmark, label="soft_prompt")


def run_arm(model_path: str | Path, benchmark: str, method: str, *, objective: str = "sft", seed: int = 0,
            out_dir: str | Path, train_examples: list[dict] | None = None, test_examples: list[dict] | None = None,
            n_train: int | None = None, n_test: int | None = None, image_size: int = 64, seed_icon: str = "math",
            artwork: PixelPrompt | None = None, max_new_tokens: int | None = None, label: str = "",
            model_label: str = "toy", warm_start: dict | None = None, **train_kw) -> tuple[dict, object]:
    """Train one method and evaluate it from its saved artifact; returns (table row, TrainResult).

    `warm_start` (RL objectives only), e.g. `{"steps": 20, "lr": 0.05, "batch_size": 16}`: first train
    the same artwork / adapter with SFT for that many steps, then continue with `objective` from there
    (a policy that never earns a reward gives GRPO / DAPO nothing to learn from). The row's
    `warm_start_steps` says so; score the warm start alone with an SFT arm of the same settings.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train_examples = train_examples or load_benchmark(benchmark, split="train", limit=n_train, seed=seed)
    test_examples = test_examples or load_benchmark(benchmark, split="test", limit=n_test)
    mnt = max_new_tokens or max_new_tokens_for(test_examples)
    model, processor = load_frozen(model_path)
    torch.manual_seed(seed)
    if artwork is None and method != "lora":
        artwork = PixelPrompt.from_icon(seed_icon, image_size)
    t = time.perf_counter()
    init_state = None
    if warm_start:
        if objective == "sft":
            raise ValueError("warm_start is an SFT phase before an RL objective; with objective='sft' add its steps")
        shared = {k: train_kw[k] for k in ("lora_rank", "lora_alpha", "lora_dropout") if k in train_kw}  # same adapter
        seed_artwork = copy.deepcopy(artwork)  # training moves the artwork in place; the KL reference stays the seed
        warm = train(model, processor, train_examples, method=method, objective="sft", artwork=artwork,
                     benchmark=benchmark, seed=seed, progress=False, **(shared | warm_start))
        init_state, artwork = warm.method.state_dict(), seed_artwork
        if method == "lora":
            model = warm.method.model.unload()  # the frozen base again, without adapter layers
    res = train(model, processor, train_examples, method=method, objective=objective, artwork=artwork,
                benchmark=benchmark, seed=seed, progress=False, init_state=init_state, **train_kw)
    train_s = time.perf_counter() - t
    stem = f"{label or method}-{benchmark}-{objective}-seed{seed}"
    artifact = res.method.save(out_dir / stem, model_id=str(model_path), objective=objective,
                               step=int(res.history["step"].iloc[-1]), benchmark=benchmark)
    # Score what would be served, loaded back from disk. ART and soft prompts leave the frozen model
    # bit-identical (tested), so it is reused; LoRA needs the base without the trained adapter layers.
    if method == "art":
        ev = evaluate(model, processor, test_examples, image=artifact, benchmark=benchmark, max_new_tokens=mnt,
                      progress=False)
    elif method == "lora":
        from peft import PeftModel

        base, proc = load_frozen(model_path)
        ev = evaluate(PeftModel.from_pretrained(base, artifact).eval(), proc, test_examples, image=None,
                      benchmark=benchmark, max_new_tokens=mnt, progress=False)
    else:
        ev = evaluate_soft_prompt(model, processor, test_examples, artifact, benchmark=benchmark, max_new_tokens=mnt)
    row = {"method": label or method, "objective": objective, "benchmark": benchmark, "model": model_label,
           "seed": seed, "trainable_params": res.trainable_parameters, "steps": len(res.history),
           "warm_start_steps": int((warm_start or {}).get("steps", 0)),
           "train_seconds": round(train_s, 1), "final_train_loss": float(res.history["loss"].iloc[-1]),
           "n_test": ev.n, "accuracy": ev.accuracy, "ci_low": ev.ci_low, "ci_high": ev.ci_high,
           "artifact": Path(artifact).name}
    return row, res


def control_rows(model_path: str | Path, benchmark: str, *, n_test: int | None = None, image_size: int = 64,
                 seed_icon: str = "math", seed: int = 0, model_label: str = "toy",
                 max_new_tokens: int | None = None) -> list[dict]:
    """Rows for the controls (text-only, seed image, noise image, token-matched random text), same scorer."""
    test_examples = load_benchmark(benchmark, split="test", limit=n_test)
    model, processor = load_frozen(model_path)
    mnt = max_new_tokens or max_new_tokens_for(test_examples)
    df = evaluate_controls(model, processor, test_examples, benchmark=benchmark, size=image_size,
                           seed_icon_name=seed_icon, seed=seed, max_new_tokens=mnt, progress=False)
    rows = []
    for r in df.to_dict("records"):
        rows.append({"method": f"control:{r['control']}", "objective": "none", "benchmark": benchmark,
                     "model": model_label, "seed": seed, "trainable_params": 0, "warm_start_steps": 0, "steps": 0,
                     "train_seconds": 0.0,
                     "final_train_loss": float("nan"), "n_test": r["n"], "accuracy": r["accuracy"],
                     "ci_low": r["ci_low"], "ci_high": r["ci_high"], "artifact": ""})
    return rows


def tidy(rows: list[dict]) -> pd.DataFrame:
    """Rows -> a tidy table with a fixed column order."""
    cols = ["model", "benchmark", "method", "objective", "seed", "trainable_params", "warm_start_steps", "steps",
            "train_seconds",
            "final_train_loss", "n_test", "accuracy", "ci_low", "ci_high", "artifact"]
    df = pd.DataFrame(rows)
    return df[[c for c in cols if c in df.columns] + [c for c in df.columns if c not in cols]]


def sft_eval_loss(model, processor, examples: list[dict], pixels: torch.Tensor, batch_size: int = 32) -> float:
    """Mean SFT loss (completion-token NLL) of `examples` with the artwork `pixels` (3, H, W)."""
    from .forward import completion_logprobs
    from .preprocess import num_visual_tokens, preprocess_image
    from .prompting import encode, example_text
    from .train import sft_completion

    image = preprocess_image(pixels, processor.image_processor)
    n = num_visual_tokens(pixels.shape[1], pixels.shape[2], processor.image_processor)
    total, count = 0.0, 0.0
    with torch.no_grad():
        for i in range(0, len(examples), batch_size):
            chunk = examples[i:i + batch_size]
            batch = encode(processor, [example_text(processor, e) for e in chunk], [sft_completion(e) for e in chunk],
                           num_image_tokens=n)
            logps = completion_logprobs(model, batch, image)
            total += float(-(logps * batch.completion_mask).sum())
            count += float(batch.completion_mask.sum())
    return total / max(count, 1.0)


def processor_resize(h: int, w: int, processor) -> tuple[int, int]:
    """The size the official processor resizes an h x w image to (unchanged when already valid)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    from .preprocess import patch_geometry

    g = patch_geometry(processor.image_processor)
    return tuple(smart_resize(h, w, factor=g["factor"], min_pixels=g["min_pixels"], max_pixels=g["max_pixels"]))


def resize_to(size: tuple[int, int]):
    """A deterministic 'transformation' for `train(eot=...)`: resample the artwork to `size` (differentiable).

    Used to train an artwork whose size the processor would resize: the model then sees an
    approximation (torch bilinear, antialiased) of what the official processor (PIL bicubic) will feed it.
    """
    import torch.nn.functional as F

    def f(pixels: torch.Tensor, generator=None) -> torch.Tensor:
        return F.interpolate(pixels[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0].clamp(0, 1)

    return f
