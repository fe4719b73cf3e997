"""Score a frozen model on a benchmark with the learned artwork loaded as any reader would load it.

The artwork is evaluated from its PNG file: the file is opened with PIL and handed to the model's
official processor (`processor(text=..., images=...)`), never taken from the float pixels that were
optimised. What is scored is therefore exactly what an unmodified engine (vLLM, `transformers`,
`art_lib.serve`) sees when a user attaches the PNG.

Prompts are the benchmark examples rendered by the model's own chat template (the image first, then
the text, thinking off by default); generation goes through a `generation.Generator` (by default
`hf_generator.HFGenerator`: batched HF `generate` with left padding; or vLLM, offline or served), and
only the new tokens are decoded. Scoring is `art_lib.scoring.score_completions`, shared by every backend (in-process, an
OpenAI-compatible server, vLLM), so all of them share one definition of accuracy.

Controls (no image, the seed icon, noise, token-matched random text) are in `controls.py`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Union

from .context import check_context, context_length, prompt_lengths
from .generation import Generator, ImageInputs, Sampling, closed_after
from .hf_generator import HFGenerator, generate_completions
from .png_metadata import check_still
from .prompting import example_text, vision_token_ids
from .scoring import EvalResult, score_outputs

if TYPE_CHECKING:  # heavy imports stay out of import time
    from PIL import Image

ImageArg = Union[str, os.PathLike, "Image.Image", None]

__all__ = ["load_image", "generate_completions", "evaluate", "visual_token_count"]

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
    image: ImageArg | ImageInputs = None,
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
    adapter: str | os.PathLike | None = None,
) -> EvalResult:
    """Generate for every example (with the PNG/PIL image, or text only) and score the completions.

    `image`: a PNG path (opened with PIL, as a user's file would be), a PIL image, or None; its size
    must be one the processor keeps unless `allow_resize` (then the processor resizes it, and the
    score belongs to the resized image: Table 3's non-aligned artworks). A `generation.ImageInputs`
    (a soft prompt's embeddings, float pixels) is shown as the trained model sees it (engine "hf" only).
    `batch_size=None` picks the rows per `generate` call from free accelerator memory
    (`auto_batch_size`); `shared_prefix` runs the tokens all prompts share once (both "hf" only).
    `greedy=False` samples with `temperature`/`top_p`; `seed` makes sampling repeatable.
    `engine`: what generates, as a `generation.Generator`: "hf" (`hf_generator.HFGenerator` on this model, the
    reference), "vllm" (offline vLLM on this model, started once and cached on it), a `vllm_engine.VLLMEngine`,
    vLLM server URLs, or a Generator; same prompts, decoding of the new tokens and scorer on all.
    `adapter`: a saved LoRA adapter folder an engine loads (on "hf", load it onto `model` instead).
    """
    from tqdm.auto import tqdm

    from art_lib.rewards import get_scorer

    scorer = get_scorer(benchmark)  # unknown benchmark: ValueError before any generation
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    shown = image if isinstance(image, ImageInputs) else load_image(image, processor, allow_resize=allow_resize)
    examples = list(examples)
    texts, lengths = _prompts(model, processor, examples, shown, enable_thinking)
    sampling = Sampling(
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        greedy=greedy,
        suppress_token_ids=tuple(vision_token_ids(model, processor)),
    )
    with tqdm(total=len(texts), disable=not progress, desc=label or f"eval {benchmark}", unit="ex") as bar:
        if engine == "hf":
            batch_size = batch_size or auto_batch_size(model, max(lengths, default=0), max_new_tokens)
            generator = HFGenerator(
                model, processor, batch_size=batch_size, shared_prefix=shared_prefix, progress=bar.update
            )
            engine_fields, fields = {}, {"batch_size": batch_size}
        else:
            generator = _engine_generator(engine, model, processor)
            engine_fields, fields = _engine_fields(generator), {}
        with closed_after(generator, engine):  # servers named by URL: the adapter it loaded is unloaded
            outs = generator.generate(texts, image=shown, adapter=adapter, sampling=sampling)
        bar.update(len(texts) - bar.n)
    tok = processor.tokenizer
    rows = [
        {
            "completion": tok.decode(c.token_ids, skip_special_tokens=True),
            # Counted like an OpenAI server's usage.completion_tokens: the stop token included.
            "completion_tokens": len(c.token_ids),
            "finish_reason": c.finish_reason,
        }
        for (c, *_) in outs
    ]
    sampled = (temperature, top_p, seed)
    config = engine_fields | _run_config(image, shown, max_new_tokens, greedy, enable_thinking, sampled, **fields)
    return score_outputs(examples, rows, benchmark, scorer=scorer, label=label, config=config)


def _prompts(model, processor, examples: list[dict], shown, enable_thinking: bool) -> tuple[list[str], list[int]]:
    """The examples rendered by the chat template (an image slot when `shown`), and their lengths in tokens, which
    must fit the context (refused as training refuses it: a prompt past the context generates for minutes)."""
    from .preprocess import image_tokens

    texts = [example_text(processor, ex, image=shown is not None, enable_thinking=enable_thinking) for ex in examples]
    if isinstance(shown, ImageInputs):
        visual = image_tokens(shown.image, processor.image_processor)
    else:
        visual = visual_token_count(processor, shown) if shown is not None else 0
    lengths = prompt_lengths(processor, texts, visual)
    check_context(lengths, context_length(model), [ex.get("id", i) for i, ex in enumerate(examples)])
    return texts, lengths


def _engine_generator(engine, model, processor) -> Generator:
    """`engine` (anything but "hf") as a Generator: see `vllm_engine.get_generator`."""
    from art_lib.vllm_engine import get_generator

    return get_generator(engine, model, processor)


def _engine_fields(generator) -> dict:
    """What an `EvalResult.config` says of the engine that generated: its kind and model or servers."""
    if hasattr(generator, "engine"):  # vllm_engine.EngineGenerator
        return {"engine": "vllm", "model": generator.engine.model_path}
    if hasattr(generator, "urls"):  # generation.ServerGenerator
        return {"engine": "server", "servers": list(generator.urls)}
    return {"engine": type(generator).__name__}


def _run_config(
    image: ImageArg,
    shown,
    max_new_tokens: int,
    greedy: bool,
    enable_thinking: bool,
    sampling: tuple[float, float, int | None],
    **fields,
) -> dict:
    """An `EvalResult.config`: the image as given (its path, "PIL", "ImageInputs" or None), the decoding settings,
    `fields`, and when sampling (`greedy=False`) `sampling` = (temperature, top_p, seed)."""
    if isinstance(image, (str, os.PathLike)):
        name = os.fspath(image)
    else:
        name = None if shown is None else ("ImageInputs" if isinstance(shown, ImageInputs) else "PIL")
    config = {"image": name, "max_new_tokens": max_new_tokens, "greedy": greedy, "enable_thinking": enable_thinking}
    config |= fields
    if not greedy:
        temperature, top_p, seed = sampling
        config.update(temperature=temperature, top_p=top_p, seed=seed)
    return config
