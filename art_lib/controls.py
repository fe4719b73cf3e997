"""Controls that put an artwork's accuracy in context: no image, the seed icon, noise, random text.

Each control is scored with the same `evaluate` (PNG through the official processor, same scorer) as
the artwork itself. The random-text control prepends a string of random ordinary tokens exactly as long
as the image is in visual tokens, so it tests whether any input of that length would do.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from .evaluate import evaluate, load_image, visual_token_count

__all__ = ["CONTROLS", "control_images", "random_token_text", "evaluate_controls"]

#: Every control, in the order tables show them.
CONTROLS = ("text_only", "seed", "noise", "random_text")


def control_images(size: int | tuple[int, int] = 256, seed_icon_name: str = "math", seed: int = 0) -> dict:
    """The image controls as 8-bit PIL images: `{"seed": seed icon, "noise": uniform noise}`."""
    from art_lib.pixel_prompt import PixelPrompt

    # Through PixelPrompt so the controls are exactly what training would start from at this size.
    return {
        "seed": PixelPrompt.from_icon(seed_icon_name, size).to_pil(),
        "noise": PixelPrompt.from_noise(size, seed).to_pil(),
    }


def _normal_token_ids(tokenizer) -> list[int]:
    """Ids of ordinary vocabulary tokens: no special/added tokens, no partial UTF-8 bytes."""
    added = set(tokenizer.added_tokens_decoder)
    ids = [i for i in sorted(set(tokenizer.get_vocab().values())) if i not in added]
    texts = tokenizer.batch_decode([[i] for i in ids])
    # A lone byte of a multi-byte character decodes to U+FFFD and would not survive a round trip.
    return [i for i, t in zip(ids, texts) if t and "\ufffd" not in t]


def random_token_text(tokenizer, n_tokens: int, seed: int = 0, max_tries: int = 100) -> str:
    """A string of random ordinary tokens that re-tokenises to exactly `n_tokens` tokens.

    Ids are drawn uniformly (`random.Random(seed)`) from the normal vocabulary, decoded, and the
    text is re-encoded; tokens are redrawn until `encode(text)` has exactly `n_tokens` ids and
    decodes back to `text` (BPE may merge neighbours, so the draw is repaired, not trusted).
    """
    import random

    if n_tokens <= 0:
        return ""
    rng = random.Random(seed)
    vocab = _normal_token_ids(tokenizer)

    def enc(s: str) -> list[int]:
        return tokenizer(s, add_special_tokens=False)["input_ids"]

    ids = [rng.choice(vocab) for _ in range(n_tokens)]
    for _ in range(max_tries):
        text = tokenizer.decode(ids)
        back = enc(text)
        if len(back) == n_tokens and tokenizer.decode(back) == text:
            return text
        # Keep the stable re-encoded prefix and redraw the rest.
        ids = back[: max(0, min(len(back), n_tokens) - 1)]
        ids += [rng.choice(vocab) for _ in range(n_tokens - len(ids))]
    raise RuntimeError(f"could not draw {n_tokens} random tokens that round-trip after {max_tries} tries")


def evaluate_controls(
    model,
    processor,
    examples: Sequence[dict],
    *,
    benchmark: str,
    artwork: str | os.PathLike | None = None,
    size: int | tuple[int, int] | None = None,
    seed_icon_name: str = "math",
    seed: int = 0,
    controls: Sequence[str] = CONTROLS,
    return_results: bool = False,
    **evaluate_kwargs: Any,
):
    """Evaluate the controls (and the artwork PNG, if given) with one scorer; one tidy row per run.

    * `artwork`: the learned PNG (row first, for comparison);
    * `text_only`: the prompt with no image;
    * `seed`: the seed icon `seed_icon_name` at `size` (the usual starting point of training);
    * `noise`: uniform 8-bit noise at `size` (`PixelPrompt.from_noise(size, seed)`);
    * `random_text`: no image; instead a string of random ordinary tokens, exactly as many as the
      image's visual tokens (<|image_pad|> count of the seed icon at `size`; see
      `random_token_text`), is prepended to the user text, i.e. placed exactly where
      `<|vision_start|>...<|vision_end|>` would be, with no separator (the template puts none after
      the image either). The count is exact for the string alone; BPE merges across the boundary
      with the prompt can shift it by a token.

    `size` defaults to the artwork's size (else 256). Extra keyword arguments go to `evaluate`.
    Returns a DataFrame (`control, n, correct, accuracy, ci_low, ci_high, visual_tokens`), and the
    per-run `EvalResult` dict too with `return_results=True`.
    """
    import pandas as pd

    evaluate_kwargs.pop("label", None)  # each run is labelled with its control name
    unknown = [c for c in controls if c not in CONTROLS]
    if unknown:
        raise ValueError(f"unknown controls {unknown}; valid: {list(CONTROLS)}")
    if size is None:
        art = load_image(artwork, processor) if artwork is not None else None
        size = (art.height, art.width) if art is not None else 256
    if isinstance(size, (tuple, list)) and size[0] == size[1]:
        size = int(size[0])
    images = control_images(size, seed_icon_name, seed)
    n_visual = visual_token_count(processor, images["seed"])
    examples = list(examples)
    runs: list[tuple[str, list[dict], Any]] = []
    if artwork is not None:
        runs.append(("artwork", examples, artwork))
    for name in controls:
        if name == "text_only":
            runs.append((name, examples, None))
        elif name in ("seed", "noise"):
            runs.append((name, examples, images[name]))
        else:
            prefix = random_token_text(processor.tokenizer, n_visual, seed=seed)
            runs.append((name, [{**ex, "prompt": prefix + ex["prompt"]} for ex in examples], None))
    results, table = {}, []
    for name, exs, image in runs:
        res = evaluate(model, processor, exs, image=image, benchmark=benchmark, label=name, **evaluate_kwargs)
        results[name] = res
        tokens = (
            visual_token_count(processor, image) if image is not None else (n_visual if name == "random_text" else 0)
        )
        table.append(
            {
                "control": name,
                "n": res.n,
                "correct": res.k,
                "accuracy": res.accuracy,
                "ci_low": res.ci_low,
                "ci_high": res.ci_high,
                "visual_tokens": tokens,
            }
        )
    df = pd.DataFrame(table)
    return (df, results) if return_results else df
