"""Suite-wide settings and fixtures."""

import pytest
import torch

from art_lib.models import tiny_model

# The tiny models are too small to gain from intra-op threads, and on a 2-core machine two threads
# per test process fight over the cores (generate became 30-100x slower under load).
torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    """`gpu` tests need a CUDA device: skipped (with the reason shown) where there is none."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (marker `gpu`)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def tiny():
    """The random tiny Qwen3.5 (real architecture) and its processor, one per test module (tests may wrap it)."""
    return tiny_model(seed=0)
