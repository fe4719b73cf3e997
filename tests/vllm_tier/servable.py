"""A random Qwen3.5-architecture checkpoint that vLLM's CPU engine can serve (tests only).

vLLM's CPU gated-delta-net kernel needs linear-attention head dimensions of 64 (the kit's tiny default is 16)
and runs in bfloat16. Random weights give nonsense, but deterministic, greedy text: enough to compare vLLM
with the in-process evaluation token by token. ``initializer_range`` is raised from 0.02 to 0.05 so next-token
logits have clear winners (near-ties would let harmless bfloat16 rounding flip a greedy choice).
"""

from __future__ import annotations

from pathlib import Path

import torch

SERVABLE_TEXT = dict(linear_key_head_dim=64, linear_value_head_dim=64, initializer_range=0.05)
N_EXAMPLES = 40
MAX_NEW_TOKENS = 8  # the toy tasks' budget
SERVED_NAME = "art-toy"
ADAPTER_NAME = "art-lora"
MIN_PIXELS = 64 * 64  # a 64x64 artwork is a valid, unresized input (4 visual tokens), as in the toy world


def servable_model(seed: int = 0, **text):
    """(model in float32 with bfloat16-representable weights, processor with min_pixels 64x64); ``text``
    overrides more text-config sizes (e.g. ``hidden_size``, ``num_hidden_layers`` for a larger benchmark model)."""
    import json

    from transformers import AutoImageProcessor

    from art_lib.models import image_only_processor, reference_dir, tiny_model

    model, processor = tiny_model(seed=seed, text={**SERVABLE_TEXT, **text})
    folder = reference_dir()
    longest = json.loads((folder / "preprocessor_config.json").read_text())["size"]["longest_edge"]
    ip = AutoImageProcessor.from_pretrained(folder, size={"shortest_edge": MIN_PIXELS, "longest_edge": longest})
    processor = image_only_processor(ip, processor.tokenizer, processor.chat_template)
    with torch.no_grad():  # the engine runs bfloat16: round the weights so both engines hold the same ones
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    return model, processor


def save_servable(path: str | Path, seed: int = 0, **text) -> Path:
    """Save a servable random checkpoint folder (loadable by `load_frozen` and by vLLM)."""
    from art_lib.models import save_checkpoint

    model, processor = servable_model(seed, **text)
    return save_checkpoint(model, processor, path)


def same_fraction(a, b) -> float:
    """Fraction of rows whose completions are identical."""
    return float((a.rows["completion"].reset_index(drop=True) == b.rows["completion"].reset_index(drop=True)).mean())
