"""Score a frozen model on a benchmark with the learned artwork loaded as any reader would load it.

The artwork is evaluated from its PNG file: the file is opened with PIL and handed to the model's
official processor (`processor(text=..., images=...)`), never taken from the float pixels that were
optimised. What is scored is therefore exactly what an unmodified engine (vLLM, `transformers`,
`art_lib.serve`) sees when a user attaches the PNG.

Prompts are the benchmark examples rendered by the model's own chat template (the image first, then
the text, thinking off by default), generation is batched HF `generate` with left padding, and only
the new tokens are decoded. Scoring is `art_lib.scoring.score_completions`, shared by every backend (in-process, an
OpenAI-compatible server, vLLM), so all of them share one definition of accuracy.

Controls (no image, the seed icon, noise, token-matched random text) are in `controls.py`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, Union

from .context import check_context, context_length, prompt_lengths
from .png_metadata import check_still
from .prompting import eos_token_ids, example_text, vision_token_ids
from .scoring import EvalResult, score_completions, score_outputs

if TYPE_CHECKING:  # heavy imports stay out of import time
    from PIL import Image

    from .vllm_engine import VLLMEngine

ImageArg = Union[str, os.PathLike, "Image.Image", None]

__all__ = ["load_image", "generate_completions", "evaluate", "evaluate_with_engine", "visual_token_count"]

# --------------------------------------------------------------------------- #
# Prompts and images
# --------------------------------------------------------------------------- #


def load_image(image: ImageArg, processor=None, *, allow_resize: bool = False) -> Image.Image | None:
    """A PNG path opened with PIL (pixels decoded now), a PIL image as is, or None (text only).

    With `processor`, the image is validated as training validates it, so a score always belongs to
    the artwork's own pixels: a path must be a PNG file; the size (read from the header, before
    decoding) must be one the processor keeps as is (else a ValueError naming the nearest valid
    sizes: never resampled); 16-bit and float images are refused (never silently requantised);
    other 8-bit modes become RGB as in training (transparency over white). `allow_resize=True` lets
    the processor resize a size it would not keep (what a user's engine would do with such a file).
    """
    if image is None:
        return None
    from PIL import Image

    if isinstance(image, Image.Image):
        return _checked_pil(image, processor, allow_resize) if processor is not None else image
    if isinstance(image, (str, os.PathLike)):
        with Image.open(image) as img:
            if processor is not None:
                if img.format != "PNG":
                    raise ValueError(
                        f"{os.fspath(image)!r} is a {img.format} file, not a PNG; evaluate the "
                        "lossless PNG the artwork was saved as"
                    )
                check_still(img, os.fspath(image))
                _check_header(img, processor, allow_resize)
            img.load()
            # Copy so the file handle is closed.
            return _checked_pil(img.copy(), processor, allow_resize) if processor is not None else img.copy()
    raise TypeError(
        f"image must be a PNG path, a PIL image or None, got {type(image).__name__}; "
        "save a PixelPrompt with .save_png(path) and evaluate that file"
    )


def _check_header(img: Image.Image, processor, allow_resize: bool = False) -> None:
    """Size and bit depth, known before the pixels are decoded."""
    from art_lib.pixel_prompt import check_8bit_mode
    from art_lib.preprocess import num_visual_tokens

    if not allow_resize:
        num_visual_tokens(img.height, img.width, processor.image_processor)  # raises naming the nearest valid sizes
    check_8bit_mode(img.mode)


def _checked_pil(img: Image.Image, processor, allow_resize: bool = False) -> Image.Image:
    from art_lib.pixel_prompt import pil_to_rgb

    _check_header(img, processor, allow_resize)
    return pil_to_rgb(img)


# --------------------------------------------------------------------------- #
# Generation
# --------------------------------------------------------------------------- #


def _generation_kwargs(model, processor, max_new_tokens: int, greedy: bool, temperature: float, top_p: float) -> dict:
    """`generate` arguments: greedy, or sampling with the given temperature / top-p."""
    kw: dict[str, Any] = {"max_new_tokens": int(max_new_tokens), "pad_token_id": processor.tokenizer.pad_token_id}
    if greedy:
        # Explicit None for sampling knobs so a checkpoint's generation_config (Qwen ships
        # temperature/top_k/top_p) does not trigger "ignored flags" warnings under greedy.
        kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    else:
        kw.update(do_sample=True, temperature=float(temperature), top_p=float(top_p), top_k=None)
    return kw


def generate_completions(
    model,
    processor,
    texts: Sequence[str],
    image: Image.Image | None = None,
    *,
    max_new_tokens: int = 512,
    greedy: bool = True,
    temperature: float = 1.0,
    top_p: float = 1.0,
    cancelled: Callable[[], bool] | None = None,
    shared_prefix: bool = False,
) -> list[dict]:
    """One batched `generate` over rendered prompts sharing one image: text, token count, finish reason.

    Every row gets the same image through the official processor (`images=[image] * B`); prompts
    are left-padded so all rows end where generation starts. `generate` pads a row after its
    end-of-turn token and stops when every row has ended. `cancelled()` is asked between
    tokens; when it returns True generation stops early (a server whose client has gone).
    `shared_prefix`: the tokens all prompts share (template opening, image) run once and
    `generate` continues from their cache.
    """
    import torch

    tok = processor.tokenizer
    old_side = tok.padding_side
    tok.padding_side = "left"
    try:
        kwargs = {"images": [image] * len(texts)} if image is not None else {}
        inputs = processor(text=list(texts), return_tensors="pt", padding=True, **kwargs)
    finally:
        tok.padding_side = old_side
    device = next(model.parameters()).device
    inputs = {k: v.to(device) if hasattr(v, "to") else v for k, v in inputs.items()}
    gen_kw = _generation_kwargs(model, processor, max_new_tokens, greedy, temperature, top_p)
    gen_kw["suppress_tokens"] = vision_token_ids(model, processor)  # a sampled image pad breaks the next forward
    if cancelled is not None:
        from transformers import StoppingCriteria, StoppingCriteriaList

        class _Cancel(StoppingCriteria):
            def __call__(self, input_ids, scores, **kw):
                return torch.full((input_ids.shape[0],), bool(cancelled()), dtype=torch.bool, device=input_ids.device)

        gen_kw["stopping_criteria"] = StoppingCriteriaList([_Cancel()])
    if shared_prefix and image is not None:
        inputs = _with_prefilled_cache(model, inputs)
    with torch.inference_mode():
        out = model.generate(**inputs, **gen_kw)
    new = out[:, inputs["input_ids"].shape[1] :].tolist()
    eos = set(eos_token_ids(model, processor))
    rows = []
    for ids in new:
        # Cut at the first end-of-turn token: later positions are padding of finished rows.
        end = next((i for i, t in enumerate(ids) if t in eos), None)
        kept = ids if end is None else ids[: end + 1]
        rows.append(
            {
                "completion": tok.decode(kept, skip_special_tokens=True),
                # Counted like an OpenAI server's usage.completion_tokens: the stop token included.
                "completion_tokens": len(kept),
                "finish_reason": "stop" if end is not None else "length",
            }
        )
    return rows


def _with_prefilled_cache(model, inputs: dict) -> dict:
    """`generate` inputs whose shared prefix (one image, B identical copies) is already in a cache."""
    from art_lib.forward import prefilled_cache
    from art_lib.prompting import Batch

    grid = inputs["image_grid_thw"][:1]
    image = {"pixel_values": inputs["pixel_values"][: int(grid.prod())], "image_grid_thw": grid}
    ids = inputs["input_ids"]
    batch = Batch(
        input_ids=ids,
        attention_mask=inputs["attention_mask"],
        mm_token_type_ids=inputs["mm_token_type_ids"],
        prompt_length=ids.shape[1],
    )
    cache = prefilled_cache(model, batch, image)
    if cache is None:
        return inputs
    return {k: v for k, v in inputs.items() if k != "pixel_values"} | {"past_key_values": cache}


def auto_batch_size(
    model, prompt_tokens: int, max_new_tokens: int, *, cpu_default: int = 32, fraction: float = 0.5
) -> int:
    """Rows per `generate` call that fit in `fraction` of the accelerator's free memory (CPU: `cpu_default`).

    Per row: the full-attention layers' keys/values over prompt + new tokens, the linear-attention
    states, the prefill's largest activation (MLP width x prompt) and one row of float32 logits.
    """
    import torch

    device = next(model.parameters()).device
    if device.type != "cuda":
        return cpu_default
    cfg = model.config.get_text_config()
    size = next(model.parameters()).element_size()
    types = list(getattr(cfg, "layer_types", None) or ["full_attention"] * cfg.num_hidden_layers)
    n_full = types.count("full_attention")
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    kv = 2 * n_full * cfg.num_key_value_heads * head_dim * (prompt_tokens + max_new_tokens) * size
    heads = getattr(cfg, "linear_num_value_heads", 0) or 0
    state = (
        (len(types) - n_full)
        * heads
        * (getattr(cfg, "linear_key_head_dim", 0) or 0)
        * (getattr(cfg, "linear_value_head_dim", 0) or 0)
        * 4
    )
    prefill = 3 * cfg.intermediate_size * prompt_tokens * size
    per_row = kv + state + prefill + 4 * cfg.vocab_size
    free, _ = torch.cuda.mem_get_info(device)
    return max(1, min(1024, int(free * fraction // per_row)))


def visual_token_count(processor, image: ImageArg) -> int:
    """Visual tokens the official processor expands this image into (resized as the processor would resize it)."""
    from art_lib.preprocess import num_visual_tokens

    pil = load_image(image)
    return num_visual_tokens(pil.height, pil.width, processor.image_processor, resize=True)


def evaluate(
    model,
    processor,
    examples: Sequence[dict],
    *,
    image: ImageArg = None,
    benchmark: str,
    batch_size: int | None = None,
    max_new_tokens: int = 512,
    greedy: bool = True,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int | None = None,
    enable_thinking: bool = False,
    progress: bool = True,
    label: str = "",
    allow_resize: bool = False,
    engine: Any = "hf",
    shared_prefix: bool = False,
) -> EvalResult:
    """Generate for every example (with the PNG/PIL image, or text only) and score the completions.

    `image`: a PNG path (opened with PIL, as a user's file would be), a PIL image, or None; its size
    must be one the processor keeps unless `allow_resize` (then the processor resizes it, and the
    score belongs to the resized image: Table 3's non-aligned artworks).
    `batch_size=None` picks the rows per `generate` call from free accelerator memory
    (`auto_batch_size`); `shared_prefix` runs the tokens all prompts share once (see
    `generate_completions`).
    `greedy=False` samples with `temperature`/`top_p`; `seed` makes sampling repeatable.
    `engine`: "hf" (batched `generate`, the reference), "vllm" (offline vLLM on this model, started once
    and cached on it) or an `art_lib.vllm_engine.VLLMEngine`; same prompts, decoding and scorer.
    """
    # Everything but `batch_size` and `shared_prefix` (HF `generate` only) means the same on every engine.
    common = dict(
        image=image,
        benchmark=benchmark,
        max_new_tokens=max_new_tokens,
        greedy=greedy,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        enable_thinking=enable_thinking,
        allow_resize=allow_resize,
        progress=progress,
        label=label,
    )
    if engine != "hf":
        from art_lib.vllm_engine import get_engine

        return evaluate_with_engine(get_engine(engine, model, processor), processor, examples, **common)
    return _evaluate_with_generate(
        model, processor, examples, batch_size=batch_size, shared_prefix=shared_prefix, **common
    )


def _evaluate_with_generate(
    model,
    processor,
    examples: Sequence[dict],
    *,
    image: ImageArg,
    benchmark: str,
    batch_size: int | None,
    max_new_tokens: int,
    greedy: bool,
    temperature: float,
    top_p: float,
    seed: int | None,
    enable_thinking: bool,
    progress: bool,
    label: str,
    allow_resize: bool,
    shared_prefix: bool,
) -> EvalResult:
    """`evaluate` on the model itself (engine "hf"): batched `generate_completions`, every argument as there."""
    import torch
    from tqdm.auto import tqdm

    from art_lib.rewards import get_scorer

    scorer = get_scorer(benchmark)  # unknown benchmark: ValueError before any generation
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    pil = load_image(image, processor, allow_resize=allow_resize)  # validated like training
    examples = list(examples)
    texts = [example_text(processor, ex, image=pil is not None, enable_thinking=enable_thinking) for ex in examples]
    lengths = prompt_lengths(processor, texts, visual_token_count(processor, pil) if pil is not None else 0)
    # Refused as training refuses it: a prompt past the context generates for minutes and scores 0.
    check_context(lengths, context_length(model), [ex.get("id", i) for i, ex in enumerate(examples)])
    if batch_size is None:
        batch_size = auto_batch_size(model, max(lengths, default=0), max_new_tokens)
    outs: list[dict] = []
    with torch.random.fork_rng(devices=[]) if seed is not None else nullcontext():
        if seed is not None:
            torch.manual_seed(seed)
        with tqdm(total=len(texts), disable=not progress, desc=label or f"eval {benchmark}", unit="ex") as bar:
            for start in range(0, len(texts), batch_size):
                chunk = texts[start : start + batch_size]
                outs += generate_completions(
                    model,
                    processor,
                    chunk,
                    pil,
                    max_new_tokens=max_new_tokens,
                    greedy=greedy,
                    temperature=temperature,
                    top_p=top_p,
                    shared_prefix=shared_prefix,
                )
                bar.update(len(chunk))
    config = _run_config(
        image, pil, max_new_tokens, greedy, enable_thinking, (temperature, top_p, seed), batch_size=batch_size
    )
    return score_outputs(examples, outs, benchmark, scorer=scorer, label=label, config=config)


def _run_config(
    image: ImageArg,
    pil,
    max_new_tokens: int,
    greedy: bool,
    enable_thinking: bool,
    sampling: tuple[float, float, int | None],
    **fields,
) -> dict:
    """An `EvalResult.config`: the image as given (its path, "PIL" or None), the decoding settings, `fields`, and
    when sampling (`greedy=False`) `sampling` = (temperature, top_p, seed)."""
    shown = os.fspath(image) if isinstance(image, (str, os.PathLike)) else ("PIL" if pil is not None else None)
    config = {"image": shown, "max_new_tokens": max_new_tokens, "greedy": greedy, "enable_thinking": enable_thinking}
    config |= fields
    if not greedy:
        temperature, top_p, seed = sampling
        config.update(temperature=temperature, top_p=top_p, seed=seed)
    return config


def evaluate_with_engine(
    engine: VLLMEngine,
    processor,
    examples: Sequence[dict],
    *,
    image=None,
    benchmark: str,
    max_new_tokens: int = 512,
    greedy: bool = True,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int | None = None,
    enable_thinking: bool = False,
    lora_request: Any = None,
    allow_resize: bool = False,
    progress: bool = True,
    label: str = "",
) -> EvalResult:
    """`evaluate` on a `vllm_engine.VLLMEngine`: same prompts, same decoding of the new tokens, same scorer."""
    from art_lib.rewards import get_scorer

    scorer = get_scorer(benchmark)
    pil = load_image(image, processor, allow_resize=allow_resize)  # validated as on the HF path
    examples = list(examples)
    texts = [example_text(processor, ex, image=pil is not None, enable_thinking=enable_thinking) for ex in examples]
    outs = engine.generate(
        texts,
        pil.convert("RGB") if pil is not None else None,
        max_tokens=max_new_tokens,
        temperature=0.0 if greedy else temperature,
        top_p=1.0 if greedy else top_p,
        seed=seed,
        lora_request=lora_request,
        suppress_token_ids=vision_token_ids(None, processor),
        progress=progress,
    )
    tok = processor.tokenizer
    ids = [o[0]["token_ids"] for o in outs]
    config = {"engine": "vllm", "model": engine.model_path} | _run_config(
        image, pil, max_new_tokens, greedy, enable_thinking, (temperature, top_p, seed)
    )
    return score_completions(
        examples,
        [tok.decode(i, skip_special_tokens=True) for i in ids],
        benchmark,
        scorer=scorer,
        label=label,
        config=config,
        extra={"completion_tokens": [len(i) for i in ids], "finish_reason": [o[0]["finish_reason"] for o in outs]},
    )
