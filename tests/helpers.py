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
