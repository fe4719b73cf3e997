"""Shared test data and comparisons (fixtures live in conftest.py)."""

import torch

from art_lib.preprocess import num_visual_tokens
from art_lib.prompting import Batch, chat_text, encode

# Ragged prompts: different lengths exercise left padding and the shared prefix.
QUESTIONS = [
    "What is 2 + 3?",
    "A farmer has 17 cows and buys 4 more. How many cows now?",
    "Hi",
    "Compute 12 * 12, then subtract 4.",
    "Name a prime.",
    "Is 91 prime? Explain briefly.",
    "Add 1000 and 24.",
    "What is the capital of a country with 3 letters?",
]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference relative to the largest magnitude of the reference `b`."""
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))


def ragged_batch(proc, B: int, system: str | None = None, size: int = 256) -> Batch:
    """B prompts of different lengths (left padding) with completions of different lengths (right padding)."""
    texts = [chat_text(proc, q, system=system) for q in QUESTIONS[:B]]
    comps = [f"Answer: {7 * i}{' and more' * i}" for i in range(B)]
    return encode(proc, texts, comps, num_image_tokens=num_visual_tokens(size, size, proc))


def eos_biased_model(seed: int = 0, bias: float = 5.0):
    """The tiny Qwen3.5 with `bias` added to its <|im_end|> logit: sampled completions end after 1 to 8 tokens
    instead of always running to the limit (a real model: only its head's output is shifted)."""
    from art_lib.models import tiny_model

    model, proc = tiny_model(seed=seed)
    eos = proc.tokenizer.convert_tokens_to_ids("<|im_end|>")
    shift = torch.zeros(model.config.text_config.vocab_size)
    shift[eos] = bias
    model.lm_head.register_forward_hook(lambda mod, args, out: out + shift.to(out))
    return model, proc
