"""The vLLM tier's fixtures: one servable checkpoint, a learned PNG, a LoRA adapter, one server, one engine.

These tests run in the vLLM venv (``bash scripts/test_vllm.sh``); where vLLM is not installed every test in
this folder is skipped (each module starts with ``pytest.importorskip("vllm")``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

# Small KV cache (GiB) for the tiny model; the offline engine in this process, so its weights can be read.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

from servable import ADAPTER_NAME, N_EXAMPLES, SERVED_NAME  # noqa: E402


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    from servable import save_servable

    return save_servable(tmp_path_factory.mktemp("servable") / "ckpt")


@pytest.fixture(scope="session")
def examples() -> list[dict]:
    from art_lib.data import load_benchmark

    return load_benchmark("gsm8k", source=str(Path(__file__).parents[1] / "data" / "gsm8k"), split="test")[
        :N_EXAMPLES]


@pytest.fixture(scope="session")
def hf(checkpoint):
    """The in-process reference: the checkpoint in float32 through transformers."""
    from art_lib.models import load_frozen

    return load_frozen(checkpoint)


@pytest.fixture(scope="session")
def artwork_png(hf, examples, tmp_path_factory) -> Path:
    """A learned artwork (a few SFT steps from the math icon), saved as the PNG a user would send."""
    from art_lib.pixel_prompt import PixelPrompt
    from art_lib.train import train

    model, processor = hf
    res = train(model, processor, examples[:8], method="art", objective="sft", steps=3, batch_size=4, lr=0.05,
                artwork=PixelPrompt.from_icon("math", 64), progress=False)
    return res.artwork.save_png(tmp_path_factory.mktemp("art") / "artwork.png", model_id="servable", step=3)


@pytest.fixture(scope="session")
def lora(checkpoint, examples, tmp_path_factory):
    """(peft model trained a few SFT steps, its processor, the saved adapter folder)."""
    from art_lib.models import load_frozen
    from art_lib.train import train

    model, processor = load_frozen(checkpoint)  # its own copy: peft wraps the model in place
    res = train(model, processor, examples[:8], method="lora", objective="sft", steps=5, batch_size=4, lr=0.05,
                progress=False)
    folder = res.method.save(tmp_path_factory.mktemp("lora") / "adapter")
    return res.method.model, processor, folder


@pytest.fixture(scope="session")
def server(checkpoint, lora, tmp_path_factory):
    """One vLLM OpenAI-compatible server on 127.0.0.1 serving the base model and the adapter."""
    from art_lib.vllm_engine import VLLMServer

    log = tmp_path_factory.mktemp("server") / "vllm_server.log"
    with VLLMServer(checkpoint, served_model_name=SERVED_NAME, lora_modules={ADAPTER_NAME: lora[2]},
                    max_model_len=1024, log_path=log, extra=["--enforce-eager"],
                    env={"VLLM_ENABLE_V1_MULTIPROCESSING": "1"}) as srv:
        yield srv


@pytest.fixture(scope="session")
def engine(checkpoint):
    """One offline engine (LoRA enabled) for evaluation and rollouts."""
    from art_lib.vllm_engine import VLLMEngine

    return VLLMEngine(checkpoint, max_model_len=1024, enable_lora=True, enforce_eager=True)
