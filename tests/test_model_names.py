"""Model names of a registered scheme ("toy:base") load wherever a checkpoint folder does."""

import torch

from art_lib.models import load_frozen
from art_lib.registry import resolve_model


def test_load_frozen_resolves_a_registered_scheme_to_the_same_checkpoint_as_its_folder():
    by_name, proc = load_frozen("toy:base", device="cpu", dtype="float32")
    folder = resolve_model("toy:base")[0]
    by_folder, _ = load_frozen(folder, device="cpu", dtype="float32")
    a, b = by_name.state_dict(), by_folder.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not any(p.requires_grad for p in by_name.parameters())  # frozen, as any checkpoint
    assert proc.tokenizer("3 and 7")["input_ids"]  # its own processor came with it
