"""Tiny and full-size models built from the real Qwen3.5 configs, and loading like a real checkpoint."""

import json

import pytest
import torch

from art_lib.models import (FAMILIES, count_parameters, load_frozen, meta_model, reference_dir, save_checkpoint,
                            tiny_model)
from art_lib.prompting import chat_text


@pytest.fixture(scope="module")
def tiny():
    return tiny_model(seed=0)


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
