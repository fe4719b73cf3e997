"""Behaviour that `scripts/mutation_check.py` found unguarded: each test here fails under one of its mutations."""

import warnings

import pytest
import torch

from art_lib.checkpoint import Checkpointer, safe_load
from art_lib.models import tiny_model
from art_lib.pixel_prompt import PixelPrompt
from art_lib.preprocess import nearest_valid_sizes, valid_size
from art_lib.train import train


def test_nearest_valid_sizes_are_the_nearest_of_all_valid_sizes_above_and_below(tiny):
    """Against a brute-force search over every multiple of the patch factor: the suggestions are the nearest valid
    sizes (as many as the search around the two sides finds, at least 3 here), neighbours above included."""
    _, proc = tiny
    factor = 32  # Qwen3.5: patch 16 x merge 2
    every = [(a, b) for a in range(factor, 641, factor) for b in range(factor, 641, factor) if valid_size(a, b, proc)]
    for h, w in [(260, 260), (250, 300), (300, 470)]:
        got = nearest_valid_sizes(h, w, proc, limit=4)
        distance = sorted(abs(a - h) + abs(b - w) for a, b in every)
        assert len(got) >= 3 and [abs(a - h) + abs(b - w) for a, b in got] == distance[: len(got)], (h, w, got)
        assert any(a > h or b > w for a, b in got), (h, w, got)  # a size above is among the nearest here


def test_a_loadable_but_altered_checkpoint_fails_its_checksum(tmp_path):
    """A newest state.pt that still loads but is not what was saved (bit rot, a partial copy from another run)
    is refused by its sha256 in meta.json; training resumes from the one before."""
    model, proc = tiny_model(seed=0)
    exs = [{"id": str(i), "prompt": f"What is {i} + {i}?", "answer": str(2 * i), "meta": {}} for i in range(6)]
    kw = dict(method="art", objective="sft", batch_size=2, lr=0.05, progress=False)
    train(
        model,
        proc,
        exs,
        artwork=PixelPrompt.from_icon("tools", 256),
        steps=2,
        checkpoint=Checkpointer(tmp_path, every=1),
        **kw,
    )
    saved = Checkpointer(tmp_path).checkpoints()
    assert len(saved) >= 2, saved
    newest = saved[-1] / "state.pt"
    state = safe_load(newest)
    before = safe_load(saved[-2] / "state.pt")["step"]
    state["step"] = 7  # a different payload, still a valid file
    torch.save(state, newest)
    with pytest.warns(UserWarning, match="checksum mismatch"):
        resumed = Checkpointer(tmp_path).latest()
    assert resumed["step"] == before
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert len(safe_load(newest)) == len(state)  # the altered file itself is intact: only the checksum saw it
