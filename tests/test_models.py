"""Tiny and full-size models built from the real Qwen3.5 configs, and loading like a real checkpoint."""

import json

import pytest
import torch

from art_lib.models import (
    FAMILIES,
    count_parameters,
    load_frozen,
    meta_model,
    reference_dir,
    save_checkpoint,
    tiny_model,
)
from art_lib.prompting import chat_text


def test_tiny_model_keeps_the_real_structure(tiny):
    model, proc = tiny
    real = json.loads((reference_dir() / "config.json").read_text())
    tc = model.config.text_config
    assert type(model).__name__ == real["architectures"][0]
    assert {"linear_attention", "full_attention"} <= set(tc.layer_types)
    assert tc.full_attention_interval == real["text_config"]["full_attention_interval"]
    assert len(model.model.visual.blocks) >= 1 and model.model.visual.merger is not None
    assert 1e5 < count_parameters(model) < 1e6
    # The special ids sit at the same offsets from <|endoftext|> as in the real vocabulary.
    eot_real, eot_tiny = real["text_config"]["eos_token_id"], tc.eos_token_id
    for key in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id"):
        assert getattr(model.config, key) - eot_tiny == real[key] - eot_real, key
    assert proc.tokenizer.convert_tokens_to_ids("<|endoftext|>") == eot_tiny


def test_tiny_model_is_frozen_and_deterministic():
    m1, _ = tiny_model(seed=0)
    m2, _ = tiny_model(seed=0)
    m3, _ = tiny_model(seed=1)
    assert not any(p.requires_grad for p in m1.parameters()) and not m1.training
    assert all(torch.equal(a, b) for a, b in zip(m1.parameters(), m2.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(m1.parameters(), m3.parameters()))


def test_chat_template_is_the_real_one_with_thinking_off(tiny):
    _, proc = tiny
    text = chat_text(proc, "What is 2 + 2?")
    assert text.startswith("<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>What is 2 + 2?")
    assert text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert proc.chat_template == (reference_dir() / "chat_template.jinja").read_text()


def test_saved_checkpoint_loads_frozen_with_identical_logits(tiny, tmp_path):
    model, proc = tiny
    save_checkpoint(model, proc, tmp_path / "ck")
    m2, p2 = load_frozen(tmp_path / "ck")
    assert not any(p.requires_grad for p in m2.parameters()) and not m2.training
    enc = proc(text=[chat_text(proc, "hello", image=False)], return_tensors="pt")
    assert torch.equal(model(**enc).logits, m2(**enc).logits)
    assert p2.chat_template == proc.chat_template


@pytest.mark.parametrize("size,lo,hi", [("0.8B", 0.7e9, 1.0e9), ("2B", 1.7e9, 2.5e9)])
def test_full_size_architecture_parameter_count_on_meta(size, lo, hi):
    model = meta_model(size=size)
    n = count_parameters(model)
    assert lo < n < hi, n
    assert next(model.parameters()).device.type == "meta"


def test_unknown_family_and_bad_paths_give_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown model family"):
        tiny_model(family="llama")
    with pytest.raises(ValueError, match="known sizes"):
        reference_dir("qwen3_5", "70B")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_frozen(tmp_path / "empty")
    assert "qwen3_5" in FAMILIES


def test_device_and_dtype_reach_the_model_and_runtime_info_reports_them(tiny, tmp_path):
    from art_lib.kernels import runtime_info
    from art_lib.models import resolve_device, resolve_dtype

    model, proc = tiny
    save_checkpoint(model, proc, tmp_path / "ck")
    auto, _ = load_frozen(tmp_path / "ck")  # "auto" on a machine without CUDA: CPU, float32
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert next(auto.parameters()).device.type == expected
    assert next(auto.parameters()).dtype == (torch.bfloat16 if expected == "cuda" else torch.float32)
    half, _ = load_frozen(tmp_path / "ck", device="cpu", dtype="bfloat16")
    info = runtime_info(half)
    assert (info["device"], info["dtype"]) == ("cpu", "bfloat16")
    assert all(p.dtype == torch.bfloat16 and not p.requires_grad for p in half.parameters())
    assert info["linear_attention"] in ("fast", "torch", "mixed") and len(info["linear_attention_kernels"]) == 4
    assert resolve_dtype("auto", "cuda") == torch.bfloat16 and resolve_dtype("auto", "cpu") == torch.float32
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("bf16")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            load_frozen(tmp_path / "ck", device="cuda")


def test_linear_attention_kernel_report_matches_what_is_importable():
    import importlib.util

    from art_lib.kernels import linear_attention_kernels

    kernels = linear_attention_kernels()
    fla = importlib.util.find_spec("fla") is not None
    conv = importlib.util.find_spec("causal_conv1d") is not None
    assert (kernels["torch_chunk_gated_delta_rule"] == "fla") == fla
    assert (kernels["causal_conv1d_fn"] == "causal_conv1d") == conv


@pytest.mark.gpu
def test_load_frozen_auto_picks_cuda_bfloat16_and_a_training_step_runs(tmp_path):
    from art_lib.train import train

    model, proc = tiny_model(seed=0)
    model, proc = load_frozen(save_checkpoint(model, proc, tmp_path / "tiny"))  # device="auto", dtype="auto"
    p = next(model.parameters())
    assert (p.device.type, p.dtype) == ("cuda", torch.bfloat16)
    examples = [{"id": str(i), "prompt": f"What is {i} plus 3?", "answer": str(i + 3), "meta": {}} for i in range(4)]
    res = train(model, proc, examples, method="art", objective="sft", steps=2, batch_size=2, lr=0.05, progress=False)
    assert res.artwork.raw.device.type == "cuda"
    assert res.history["loss"].notna().all() and not res.history["skipped"].any(), res.history
