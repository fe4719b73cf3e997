"""Frozen models and processors: real checkpoints, and tiny random ones built offline from real configs.

`load_frozen` is what a user runs on a real checkpoint. `tiny_model` builds the same transformers
classes (Qwen3_5ForConditionalGeneration + Qwen3VLProcessor with the real chat template) from the
published Qwen3.5 config shrunk to a few hundred thousand parameters, so every code path of the kit
runs on CPU without downloading weights. The shrunk model keeps the real structure: the
linear-attention / full-attention layer pattern, the vision tower and its patch merger, and the
special-token layout of the Qwen tokenizer (specials appended after the byte-level BPE vocabulary
in the same order as in the real vocabulary).

The configs and chat templates under `assets/qwen3_5/` are byte-identical copies of the published
Hugging Face files (see `assets/qwen3_5/SOURCE.txt`).
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from .kernels import check_kernels, linear_attention_kernels, runtime_info  # noqa: F401  (the notebooks import them from here)

# Families whose real configs ship with the package, and their checkpoint sizes.
FAMILIES = {"qwen3_5": ("0.8B", "2B", "4B", "9B")}

# Qwen's special tokens in vocabulary order (they follow the BPE vocabulary; for Qwen3.5 the first
# is id 248044 = <|endoftext|>, and <|vision_start|>, <|image_pad|> land on the ids in config.json).
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# Added (non-special) tokens that follow: they are plain text to the chat template but single ids.
ADDED_TOKENS = (
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
    "<tool_response>",
    "</tool_response>",
    "<think>",
    "</think>",
)

# The shrunk architecture: every field not named here keeps the real checkpoint's value.
TINY_TEXT = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=4,
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=64,
    linear_num_key_heads=2,
    linear_num_value_heads=2,
    linear_key_head_dim=16,
    linear_value_head_dim=16,
    max_position_embeddings=4096,
)
TINY_VISION = dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=2, num_position_embeddings=64)


def _asset(*parts: str) -> Path:
    return Path(str(resources.files("art_lib").joinpath("assets", *parts)))


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; known families: {sorted(FAMILIES)}")


def reference_dir(family: str = "qwen3_5", size: str = "0.8B") -> Path:
    """Folder with the published config.json, preprocessor_config.json and chat_template.jinja."""
    _check_family(family)
    if size not in FAMILIES[family]:
        raise ValueError(f"unknown {family} size {size!r}; known sizes: {FAMILIES[family]}")
    return _asset(family, size)


def real_config(family: str = "qwen3_5", size: str = "0.8B"):
    """The published model config of a checkpoint (no weights)."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(reference_dir(family, size))


def meta_model(family: str = "qwen3_5", size: str = "0.8B"):
    """The full-size architecture on the meta device: parameter counts without memory or weights."""
    from transformers import AutoModelForImageTextToText

    with torch.device("meta"):
        return AutoModelForImageTextToText.from_config(real_config(family, size))


def tiny_tokenizer():
    """Byte-level BPE tokenizer (Qwen3.5 pre-tokenizer, real special-token layout), built offline."""
    from tokenizers import AddedToken
    from transformers.models.qwen3_5.tokenization_qwen3_5 import Qwen3_5Tokenizer

    folder = _asset("tiny_tokenizer")
    vocab = json.loads((folder / "vocab.json").read_text())
    merges = [tuple(m.split(" ")) for m in (folder / "merges.txt").read_text().splitlines() if m]
    n_bpe = len(vocab)
    # Reserve the ids first: the constructor would otherwise add eos/pad in its own order.
    vocab.update({t: n_bpe + i for i, t in enumerate(SPECIAL_TOKENS + ADDED_TOKENS)})
    tok = Qwen3_5Tokenizer(
        vocab=vocab,
        merges=merges,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        model_max_length=4096,
    )
    tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS], special_tokens=True)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in ADDED_TOKENS])
    ids = tok.convert_tokens_to_ids(list(SPECIAL_TOKENS + ADDED_TOKENS))
    assert ids == list(range(n_bpe, n_bpe + len(ids))), "special tokens must follow the vocabulary"
    return tok


def tiny_processor(family: str = "qwen3_5", size: str = "0.8B", tokenizer=None):
    """A real Qwen3VLProcessor: the checkpoint's image processor and chat template, the tiny tokenizer."""
    from transformers import AutoImageProcessor

    folder = reference_dir(family, size)
    image_processor = AutoImageProcessor.from_pretrained(folder)
    tokenizer = tokenizer if tokenizer is not None else tiny_tokenizer()
    return image_only_processor(image_processor, tokenizer, (folder / "chat_template.jinja").read_text())


def image_only_processor(image_processor, tokenizer, chat_template: str):
    """Qwen3VLProcessor without its video processor, which needs torchvision (images do not)."""
    from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor

    class _ImageOnly(Qwen3VLProcessor):
        # transformers validates every attribute's class, and without torchvision the video
        # class cannot even be looked up; the kit never sends videos, so None is accepted here.
        def check_argument_for_proper_class(self, argument_name, argument):
            if argument_name == "video_processor" and argument is None:
                return None
            return super().check_argument_for_proper_class(argument_name, argument)

    _ImageOnly.__name__ = _ImageOnly.__qualname__ = "Qwen3VLProcessor"
    return _ImageOnly(
        image_processor=image_processor, tokenizer=tokenizer, video_processor=None, chat_template=chat_template
    )


def tiny_config(
    family: str = "qwen3_5", size: str = "0.8B", text: dict | None = None, vision: dict | None = None, tokenizer=None
):
    """The real config with the sizes shrunk and the vocabulary/special ids of the tiny tokenizer."""
    from transformers import AutoConfig

    cfg = json.loads((reference_dir(family, size) / "config.json").read_text())
    tokenizer = tokenizer if tokenizer is not None else tiny_tokenizer()
    tc, vc = cfg["text_config"], cfg["vision_config"]
    tc.update(TINY_TEXT, **(text or {}))
    vc.update(TINY_VISION, **(vision or {}))
    n = tc["num_hidden_layers"]
    interval = tc["full_attention_interval"]
    # Same hybrid pattern as the real model: every `interval`-th layer is full attention.
    tc["layer_types"] = ["full_attention" if (i + 1) % interval == 0 else "linear_attention" for i in range(n)]
    rotary = int(tc["head_dim"] * tc["rope_parameters"]["partial_rotary_factor"]) // 2
    tc["rope_parameters"]["mrope_section"] = _split_mrope(rotary, tc["rope_parameters"]["mrope_section"])
    vc["out_hidden_size"] = tc["hidden_size"]
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    tc["vocab_size"] = len(tokenizer)
    tc["eos_token_id"] = ids["<|endoftext|>"]
    cfg["image_token_id"] = ids["<|image_pad|>"]
    cfg["video_token_id"] = ids["<|video_pad|>"]
    cfg["vision_start_token_id"] = ids["<|vision_start|>"]
    cfg["vision_end_token_id"] = ids["<|vision_end|>"]
    cfg.pop("transformers_version", None)
    model_type = cfg.pop("model_type")
    return AutoConfig.for_model(model_type, **cfg)


def _split_mrope(total: int, real: list[int]) -> list[int]:
    """Shrink the (t, h, w) rotary split to `total` frequencies in the real proportions."""
    parts = [max(1, round(total * r / sum(real))) for r in real]
    parts[0] += total - sum(parts)
    return parts


def tiny_model(
    family: str = "qwen3_5",
    seed: int = 0,
    size: str = "0.8B",
    text: dict | None = None,
    vision: dict | None = None,
    dtype: torch.dtype | str = torch.float32,
    device: str = "cpu",
):
    """A random-initialised, frozen Qwen3.5-architecture model and its processor, fully offline."""
    from transformers import AutoModelForImageTextToText

    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    _check_family(family)
    processor = tiny_processor(family, size)
    config = tiny_config(family, size, text=text, vision=vision, tokenizer=processor.tokenizer)
    with seeded(seed):
        model = AutoModelForImageTextToText.from_config(config, dtype=dtype)
    set_generation_defaults(model, processor.tokenizer)
    return freeze(model.to(device)), processor


def random_full_model(
    family: str = "qwen3_5",
    size: str = "0.8B",
    seed: int = 0,
    dtype: torch.dtype | str = torch.float32,
    device: str = "cpu",
):
    """A checkpoint's full architecture with random weights (for timing and memory, no download).

    The vocabulary keeps the real size; the special ids the model reads are remapped to the tiny
    tokenizer's, so prompts render with the real chat template.
    """
    from transformers import AutoModelForImageTextToText

    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    processor = tiny_processor(family, size)
    cfg = real_config(family, size)
    tok = processor.tokenizer
    for key, token in (
        ("image_token_id", "<|image_pad|>"),
        ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"),
        ("vision_end_token_id", "<|vision_end|>"),
    ):
        setattr(cfg, key, tok.convert_tokens_to_ids(token))
    with seeded(seed):
        model = AutoModelForImageTextToText.from_config(cfg, dtype=dtype)
    set_generation_defaults(model, tok)
    return freeze(model.to(device)), processor


def set_generation_defaults(model, tokenizer) -> None:
    """Stop at <|im_end|> (end of turn) or <|endoftext|>, as the real generation_config does."""
    gc = model.generation_config
    gc.eos_token_id = [tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")]
    gc.pad_token_id = tokenizer.pad_token_id
    gc.bos_token_id = None


class seeded:
    """Fork the global RNG for a block so model init is a function of `seed` alone."""

    def __init__(self, seed: int):
        self.seed = seed

    def __enter__(self):
        self._fork = torch.random.fork_rng(devices=[])
        self._fork.__enter__()
        torch.manual_seed(self.seed)

    def __exit__(self, *exc):
        return self._fork.__exit__(*exc)


def freeze(model):
    """Every weight `requires_grad=False`, eval mode (no dropout): the model is a fixed function."""
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """ "auto" = the first CUDA device when there is one, else CPU; asking for CUDA without one is an error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"device {device} was asked for but CUDA is not available on this machine "
            "(install a CUDA build of torch, or pass device='cpu' to run on CPU on purpose)"
        )
    return device


def resolve_dtype(dtype: str | torch.dtype = "auto", device: str | torch.device = "cpu") -> torch.dtype:
    """ "auto" = bfloat16 on CUDA, float32 elsewhere; names like "bfloat16" become torch dtypes."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    value = getattr(torch, str(dtype), None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}; use 'auto', 'bfloat16', 'float16' or 'float32'")
    return value


@contextmanager
def gradient_checkpointing(model, enabled: bool = True):
    """Within the block, the language model's decoder layers recompute their activations in the backward pass.

    transformers checkpoints a layer only when `layer.gradient_checkpointing and layer.training`; the
    frozen model stays in eval mode (no dropout anywhere), so only the layers' own `training` flags are
    set, not their children's. Non-reentrant checkpointing: gradients reach the pixels (or LoRA
    weights) through inputs and frozen weights alike. The vision tower runs once per step: not checkpointed.
    """
    if not enabled:
        yield model
        return
    from functools import partial

    from torch.utils.checkpoint import checkpoint
    from transformers.modeling_layers import GradientCheckpointingLayer

    layers = [
        mod
        for name, mod in model.named_modules()
        if isinstance(mod, GradientCheckpointingLayer) and "visual" not in name
    ]
    saved = [(mod.training, dict(mod.__dict__)) for mod in layers]
    for mod in layers:
        mod.gradient_checkpointing, mod.training = True, True
        mod._gradient_checkpointing_func = partial(checkpoint, use_reentrant=False)
    try:
        yield model
    finally:
        for mod, (training, attrs) in zip(layers, saved):
            mod.training = training
            for key in ("gradient_checkpointing", "_gradient_checkpointing_func"):
                if key in attrs:
                    setattr(mod, key, attrs[key])
                else:
                    mod.__dict__.pop(key, None)


@contextmanager
def _quiet_loading():
    """No "Loading weights" bar while a checkpoint loads (a notebook loads one per arm); restored afterwards."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


def load_frozen(
    model_id_or_path: str | Path,
    dtype: torch.dtype | str = "auto",
    device: str | torch.device = "auto",
    attn_implementation: str | None = "sdpa",
    allow_slow_kernels: bool | None = None,
    **kwargs: Any,
):
    """Load a checkpoint (hub id, local folder or registered name such as "toy:base"), frozen, with its
    processor, on `device` in `dtype`.

    "auto": CUDA in bfloat16 when a GPU is present, else CPU in float32 (see `runtime_info` for what ran).
    On CUDA, a model whose linear-attention layers would run the slow reference kernels is refused unless
    `allow_slow_kernels` (see `check_kernels`).
    """
    from transformers import AutoModelForImageTextToText

    from .registry import resolve_model

    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    if not Path(model_id_or_path).exists():  # "<scheme>:<spec>" of a registered scheme: its checkpoint folder
        model_id_or_path = resolve_model(str(model_id_or_path))[0]
    path = Path(model_id_or_path)
    if path.exists() and not (path / "config.json").exists():
        raise FileNotFoundError(f"{path} exists but holds no config.json: not a checkpoint folder")
    with _quiet_loading():
        model = AutoModelForImageTextToText.from_pretrained(
            str(model_id_or_path), dtype=dtype, attn_implementation=attn_implementation, **kwargs
        )
    processor = load_processor(model_id_or_path)
    model = freeze(model.to(device))
    check_kernels(model, allow_slow_kernels)
    return model, processor


def load_processor(model_id_or_path: str | Path):
    """The checkpoint's processor; without torchvision the video processor is left out."""
    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer

    try:
        return AutoProcessor.from_pretrained(str(model_id_or_path))
    except (ImportError, AttributeError, TypeError, ValueError):
        # AutoProcessor also builds the video processor, which needs torchvision; images do not.
        tok = AutoTokenizer.from_pretrained(str(model_id_or_path))
        ip = AutoImageProcessor.from_pretrained(str(model_id_or_path))
        return image_only_processor(ip, tok, tok.chat_template)


def save_checkpoint(model, processor, path: str | Path, family: str = "qwen3_5", size: str = "0.8B") -> Path:
    """Save model + processor as a standard Hugging Face folder that `load_frozen` reads back."""
    import shutil

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    processor.tokenizer.save_pretrained(path)
    processor.image_processor.save_pretrained(path)
    (path / "chat_template.jinja").write_text(processor.chat_template)
    # The published video config, so AutoProcessor (with torchvision) loads the folder as a checkpoint.
    shutil.copy(reference_dir(family, size) / "video_preprocessor_config.json", path)
    return path


def weights_hash(weights: torch.nn.Module | dict) -> str:
    """sha256 of a module's state dict (or of a state dict): every tensor's name and raw bytes, in name order.

    The kit's one exact identity of weights: the toy checkpoints' recorded `weights_hash`, and what an engine
    compares to see whether weights changed. Any dtype (bfloat16 too) is hashed as stored, on any device.
    """
    import hashlib

    state = weights.state_dict() if isinstance(weights, torch.nn.Module) else weights
    h = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def weights_fingerprint(model: torch.nn.Module) -> str:
    """A cheap identity of a model's weights: names, shapes and the first and last 256 values of each parameter.

    What a training checkpoint records (`model_fingerprint`) so that a resume refuses other weights; it reads
    512 values per tensor, where `weights_hash` reads every byte (seconds per GB). Its values are those of the
    checkpoints already written, so they must not change.
    """
    import hashlib

    h = hashlib.sha256()
    with torch.no_grad():
        for name, p in model.named_parameters():
            flat = p.detach().reshape(-1)
            h.update(f"{name}:{tuple(p.shape)}".encode())
            h.update(torch.cat([flat[:256], flat[-256:]]).float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def count_parameters(module: torch.nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with requires_grad)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
