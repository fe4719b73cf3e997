"""The toy models' recipe: architectures per size, the pretraining hyper-parameters, names and hashes."""

from __future__ import annotations

import hashlib
import json

import torch

from . import tasks as T

# Architectures: overrides of `models.tiny_config` (every other field keeps the real Qwen3.5 value;
# every 4th text layer is full attention, the others Gated DeltaNet, as in the real model).
# Linear-attention (Gated DeltaNet) heads are 64 wide in every size: vLLM's CPU kernel accepts 64 or 128
# only; full-attention heads are 32 wide (served by vLLM CPU as they are). Sizes differ in width, number
# of heads and vision depth, so the model-size table keeps its spread.
# fmt: off
SIZES = {
    "small": dict(
        text=dict(hidden_size=48, intermediate_size=128, num_hidden_layers=4, num_attention_heads=2,
                  num_key_value_heads=1, head_dim=32, linear_num_key_heads=1, linear_num_value_heads=1,
                  linear_key_head_dim=64, linear_value_head_dim=64),
        vision=dict(depth=1, hidden_size=48, intermediate_size=96, num_heads=2),
    ),
    "base": dict(
        text=dict(hidden_size=64, intermediate_size=192, num_hidden_layers=4, num_attention_heads=2,
                  num_key_value_heads=1, head_dim=32, linear_num_key_heads=1, linear_num_value_heads=1,
                  linear_key_head_dim=64, linear_value_head_dim=64),
        vision=dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=2),
    ),
    "large": dict(
        text=dict(hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=32, linear_num_key_heads=2, linear_num_value_heads=2,
                  linear_key_head_dim=64, linear_value_head_dim=64),
        vision=dict(depth=2, hidden_size=96, intermediate_size=192, num_heads=2),
    ),
    "xl": dict(
        text=dict(hidden_size=192, intermediate_size=576, num_hidden_layers=8, num_attention_heads=6,
                  num_key_value_heads=2, head_dim=32, linear_num_key_heads=3, linear_num_value_heads=3,
                  linear_key_head_dim=64, linear_value_head_dim=64),
        vision=dict(depth=3, hidden_size=128, intermediate_size=256, num_heads=4),
    ),
}
# fmt: on
DEFAULT_SIZE = "base"
PRETRAIN_THREADS = 1  # torch CPU threads used for pretraining (part of what makes it reproducible)

# The training recipe. Any change here changes `recipe_hash`.
RECIPE_VERSION = 2
TRAIN = dict(
    batch_size=64, lr=3e-3, min_lr_ratio=0.1, warmup_steps=100, weight_decay=0.0, betas=(0.9, 0.98), grad_clip=1.0
)
STEPS = {"small": 1200, "base": 1200, "large": 1200, "xl": 1200}  # same data stream for every size
# Relative corpus share of tasks per size (default 1 each, see `tasks.text_task_weights`). Every shipped
# checkpoint was pretrained with equal shares.
TASK_SHARE: dict[str, dict[str, float]] = {}
# Pretraining seed per toy name (default 0): the init and the data stream (see `pretrain.pretrain_toy_model`).
# `toy:base` is seed 9, the first of seeds 0-10 whose frozen model passed every check (README, "The toy
# world": every task and cue >= 95% in float32 and bfloat16, the tables' controls <= 30%, Table 2).
SEEDS: dict[str, int] = {"base": 9}


# The toy checkpoint's image processor: Qwen3.5's, with min_pixels lowered from 65536 (256x256) to
# 64x64 so a 64x64 picture is a valid, unresized input (4 visual tokens).
MIN_PIXELS = T.IMAGE_SIZE * T.IMAGE_SIZE
FAMILY, REFERENCE = "qwen3_5", "0.8B"


def toy_processor():
    """Qwen3.5's processor (chat template, image processor) with the tiny tokenizer and min_pixels 64x64."""
    from transformers import AutoImageProcessor

    from ..models import image_only_processor, reference_dir, tiny_tokenizer

    folder = reference_dir(FAMILY, REFERENCE)
    real = json.loads((folder / "preprocessor_config.json").read_text())["size"]
    image_processor = AutoImageProcessor.from_pretrained(
        folder, size={"shortest_edge": MIN_PIXELS, "longest_edge": real["longest_edge"]}
    )
    return image_only_processor(image_processor, tiny_tokenizer(), (folder / "chat_template.jinja").read_text())


def toy_model(size: str = DEFAULT_SIZE, seed: int = 0):
    """A freshly initialised (trainable) toy model of the given size, and its processor."""
    from transformers import AutoModelForImageTextToText

    from ..models import seeded, set_generation_defaults, tiny_config

    arch = _arch(size)
    processor = toy_processor()
    config = tiny_config(FAMILY, REFERENCE, text=arch["text"], vision=arch["vision"], tokenizer=processor.tokenizer)
    with seeded(seed):
        model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
    set_generation_defaults(model, processor.tokenizer)
    return model, processor


def default_seed(name: str) -> int:
    """The pretraining seed of toy `name` ("base", "base-texture", ...): `SEEDS`, else 0."""
    parse_spec(name)
    return SEEDS.get(name, 0)


def _arch(size: str) -> dict:
    if size not in SIZES:
        raise ValueError(f"unknown toy size {size!r}; known sizes: {tuple(SIZES)}")
    return SIZES[size]


def parse_spec(spec: str) -> tuple[str, str]:
    """A toy model name -> (size, picture kind): "base" -> ("base", "glyph"), "base-texture" -> ("base", "texture")."""
    size, _, pictures = spec.partition("-")
    pictures = pictures or "glyph"
    _arch(size)
    if pictures not in T.PICTURE_KINDS:
        raise ValueError(f"unknown toy picture kind {pictures!r} in {spec!r}; known: {T.PICTURE_KINDS}")
    return size, pictures


def toy_name(size: str, pictures: str = "glyph") -> str:
    """The inverse of `parse_spec`: ("base", "glyph") -> "base", ("base", "texture") -> "base-texture"."""
    return size if pictures == "glyph" else f"{size}-{pictures}"


def recipe(
    size: str = DEFAULT_SIZE, steps: int | None = None, pictures: str = "glyph", share: dict | None = None, **train
) -> dict:
    """Everything that determines the pretrained weights (with the seed and the CPU's arithmetic).

    `share`: relative task shares of the corpus (default: the size's `TASK_SHARE`).
    """
    unknown = set(train) - set(TRAIN)
    if unknown:
        raise ValueError(f"unknown training options {sorted(unknown)}; known: {sorted(TRAIN)}")
    if pictures not in T.PICTURE_KINDS:
        raise ValueError(f"unknown toy picture kind {pictures!r}; known: {T.PICTURE_KINDS}")
    # The default glyph pictures add no key (as in the recipes from before picture kinds existed).
    extra = {} if pictures == "glyph" else {"pictures": pictures}
    # Equal task shares add no key either (the recipes from before shares existed).
    share = TASK_SHARE.get(size, {}) if share is None else share
    T.text_task_weights(T.MIX, share)  # validates the names and values
    if share:
        extra["task_share"] = {t: float(share[t]) for t in sorted(share)}
    if steps is None:
        steps = STEPS[size]
    return {
        **extra,
        "version": RECIPE_VERSION,
        "size": size,
        "arch": _arch(size),
        "steps": int(steps),
        "train": {**TRAIN, **train},
        "min_pixels": MIN_PIXELS,
        "image_size": T.IMAGE_SIZE,
        "num_range": T.NUM_RANGE,
        "tasks": T.TASKS,
        "picture_tasks": T.PICTURE_TASKS,
        "instructions": T.INSTRUCTIONS,
        "mix": T.MIX,
        "no_cue_reply": T.NO_CUE_REPLY,
    }


def recipe_hash(rec: dict) -> str:
    """Short sha256 of a recipe (its JSON with sorted keys)."""
    return hashlib.sha256(json.dumps(rec, sort_keys=True).encode()).hexdigest()[:10]
