"""Whether rendered prompts fit a model's context: one check, shared by training and evaluation.

A prompt (its image's visual tokens included) that reaches the context length is truncated or run past
the positions the model was trained on: training on it learns nonsense, and evaluating it takes minutes
and scores 0. Both refuse it before any forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence


def context_length(model) -> int:
    """The language model's context in tokens (`max_position_embeddings`; unbounded when the config has none)."""
    config = getattr(model.config, "text_config", model.config)
    return int(getattr(config, "max_position_embeddings", None) or 2**62)


def prompt_lengths(processor, texts: Sequence[str], image_tokens: int = 0) -> list[int]:
    """Tokens of each rendered prompt (special tokens are in the template) plus the image's visual tokens."""
    return [len(processor.tokenizer(t, add_special_tokens=False)["input_ids"]) + image_tokens for t in texts]


def check_context(lengths: list[int], context: int, ids: list) -> None:
    """Prompts (image tokens included) must fit the model's context: a truncated prompt trains on nonsense."""
    over = [(i, n) for i, n in zip(ids, lengths) if n >= context]
    if over:
        i, n = max(over, key=lambda x: x[1])
        raise ValueError(
            f"{len(over)} prompt(s) do not fit the model's context of {context} tokens "
            f"(longest: example {i!r}, {n} tokens); shorten them or drop them"
        )
