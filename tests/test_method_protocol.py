"""The `Method` protocol is the whole interface: no code outside methods.py dispatches on a method's name, each
method's saved artifact scores exactly as the trained method does in memory, and `train` leaves the caller's
artwork as it was."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from art_lib.config import METHODS
from art_lib.data import load_benchmark_once
from art_lib.evaluate import evaluate
from art_lib.hf_generator import HFGenerator
from art_lib.methods import make_method
from art_lib.models import load_frozen
from art_lib.pixel_prompt import PixelPrompt
from art_lib.prompting import example_text
from art_lib.rollout import sample_rollout
from art_lib.runtime import resolve_model
from art_lib.train import train

ROOT = Path(__file__).resolve().parents[1]
EVAL = dict(benchmark="toy_add", max_new_tokens=8, batch_size=8)

# A comparison of a method's name (or of anything with a method's name as a literal), or a type test against one of
# the classes: the dispatch the protocol replaces. `for method in methods` (iteration) is not one.
NAMES = "|".join(METHODS)
DISPATCH = re.compile(
    "|".join(
        [
            r"\bmethod\s*(==|!=)",
            r"\b(m|method)\.name\s*(==|!=)",
            r"\bmethod\s+(not\s+)?in\s+[A-Z(\[{]",
            rf"(==|!=)\s*[\"']({NAMES})[\"']",
            rf"[\"']({NAMES})[\"']\s*(==|!=)",
            r"\b(ArtMethod|LoraMethod|SoftPromptMethod)\b",
        ]
    )
)
# methods.py is where the dispatch lives; everything else asks a method (or `methods.spec(name)`) what it does.
DISPATCH_ALLOWED = {"art_lib/methods.py"}


def test_no_code_outside_methods_dispatches_on_a_method_name():
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in sorted((ROOT / "art_lib").rglob("*.py"))
        if str(path.relative_to(ROOT)) not in DISPATCH_ALLOWED
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if DISPATCH.search(line.split("#")[0])
    ]
    assert not found, "dispatch on a method name outside methods.py (call the Method protocol):\n" + "\n".join(found)


def test_the_dispatch_pattern_sees_the_forms_it_forbids():
    forbidden = ('if method == "lora":', 'x = m.name != "art"', "if method not in SERVED:", 'ok = "soft_prompt" == k')
    for line in (*forbidden, "isinstance(m, ArtMethod)"):
        assert DISPATCH.search(line), line
    allowed = ("for method in methods:", 'if name == "brightness":', "root.name != stem", "spec(method).adapter")
    for line in allowed:
        assert not DISPATCH.search(line), line


def _examples(split: str) -> list[dict]:
    return load_benchmark_once("toy_add", split=split, limit=8, seed=0)


def _toy():
    return load_frozen(resolve_model("toy:base")[0])


def _trained(method: str):
    """The toy model (it answers toy_add when shown the right image) after 10 SFT steps: they change its answers."""
    model, proc = _toy()
    art = PixelPrompt.from_icon("math", 64)
    res = train(
        model, proc, _examples("train"), method=method, benchmark="toy_add", artwork=art, steps=10, batch_size=4,
        lr=0.5 if method == "soft_prompt" else 0.1, lora_rank=4, progress=False,
    )  # fmt: skip
    return model, proc, art, res


def _completions(result) -> list[str]:
    return list(result.rows["completion"])


def _in_memory(m, proc, examples: list[dict]) -> list[str]:
    """Greedy completions of method `m` as it is in memory (ART: the 8-bit image a sampler is sent)."""
    if m.servable:
        image = m.sampler_inputs(None)[0] if m.shows_image else None
        return _completions(evaluate(m.model, proc, examples, image=image, progress=False, **EVAL))
    policy, image, embeds = m.policy(grad=False)
    texts = [example_text(proc, e) for e in examples]
    out = sample_rollout(
        HFGenerator(policy, proc), policy, proc, texts, examples, num_generations=1, image=image, image_embeds=embeds,
        max_new_tokens=EVAL["max_new_tokens"], greedy=True, compute_logprobs=False,
    )  # fmt: skip
    return out.completions


@pytest.mark.parametrize("method", METHODS)
def test_the_saved_artifact_scores_as_the_trained_method_does_in_memory(method, tmp_path):
    _, proc, art, res = _trained(method)
    test = _examples("test")
    expected = _in_memory(res.method, proc, test)
    path = res.method.save(tmp_path / "artifact", model_id="tiny")
    assert _completions(res.method.score_saved(path, test, **EVAL)) == expected, method
    # The comparison can tell: the untrained start (seed image, adapter off, seed embeddings) answers otherwise.
    start = make_method(method, _toy()[0], proc, artwork=art, lora_rank=4)
    assert _in_memory(start, proc, test) != expected, method


def test_train_leaves_the_callers_artwork_as_it_was():
    _, _, art, res = _trained("art")
    assert torch.equal(art.pixels(), PixelPrompt.from_icon("math", 64).pixels())
    assert res.artwork is not art
    assert not torch.equal(res.artwork.pixels().detach().cpu(), art.pixels())
