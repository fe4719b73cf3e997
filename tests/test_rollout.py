"""Rollouts and evaluation never sample a vision special token, even from a model that prefers one."""

import pytest
import torch

from art_lib.evaluate import generate_completions
from art_lib.forward import completion_logprobs
from art_lib.hf_generator import HFGenerator
from art_lib.models import tiny_model
from art_lib.pixel_prompt import PixelPrompt
from art_lib.preprocess import preprocess_image
from art_lib.prompting import chat_text, encode, eos_token_ids, vision_token_ids
from art_lib.rollout import sample_rollout

VISION_TOKENS = ("<|image_pad|>", "<|vision_start|>", "<|vision_end|>", "<|video_pad|>")


@pytest.fixture()
def image_pad_lover():
    """The tiny model with an lm_head bias of +30 on <|image_pad|>: unsuppressed, it samples almost nothing else."""
    model, proc = tiny_model(seed=0)
    pad = proc.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    bias = torch.zeros(model.config.text_config.vocab_size)
    bias[pad] = 30.0
    handle = model.lm_head.register_forward_hook(lambda mod, args, out: out + bias.to(out))
    yield model, proc, pad
    handle.remove()


def test_vision_token_ids_are_read_from_the_model_and_processor():
    model, proc = tiny_model(seed=0)
    expected = sorted(proc.tokenizer.convert_tokens_to_ids(list(VISION_TOKENS)))
    assert vision_token_ids(model, proc) == expected
    assert expected == sorted(
        [
            model.config.image_token_id,
            model.config.video_token_id,
            model.config.vision_start_token_id,
            model.config.vision_end_token_id,
        ]
    )


def test_rollouts_never_sample_a_vision_token_and_the_next_forward_runs(image_pad_lover):
    model, proc, pad = image_pad_lover
    image = preprocess_image(PixelPrompt.from_noise(256, seed=0).pixels(), proc.image_processor)
    texts = [chat_text(proc, "What is 2 + 3?"), chat_text(proc, "Hi")]
    # The harness works: without suppression the model does emit image pads.
    batch = encode(proc, texts[:1], num_image_tokens=64)
    raw = model.generate(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        mm_token_type_ids=batch.mm_token_type_ids,
        pixel_values=image["pixel_values"],
        image_grid_thw=image["image_grid_thw"],
        max_new_tokens=8,
        do_sample=True,
    )
    assert (raw[:, batch.input_ids.shape[1] :] == pad).any()
    torch.manual_seed(0)
    r = sample_rollout(
        HFGenerator(model, proc), model, proc, texts, [{}, {}], num_generations=4, image=image, max_new_tokens=12
    )
    banned = torch.tensor(vision_token_ids(model, proc))
    assert not torch.isin(r.batch.completion_ids, banned).any()
    logps = completion_logprobs(model, r.batch, image)  # the forward that crashed on a sampled image pad
    assert torch.isfinite(logps).all() and r.old_logps is not None


@pytest.mark.parametrize("greedy", [True, False])
def test_evaluation_generate_never_emits_a_vision_token(image_pad_lover, greedy):
    model, proc, _ = image_pad_lover
    art = PixelPrompt.from_noise(256, seed=1).to_pil()
    generate, seen = model.generate, []
    model.generate = lambda **k: seen.append((k["input_ids"].shape[1], generate(**k))) or seen[-1][1]  # raw ids
    try:
        generate_completions(model, proc, [chat_text(proc, "What is 2 + 3?")], art, max_new_tokens=8, greedy=greedy)
    finally:
        del model.generate
    banned = torch.tensor(vision_token_ids(model, proc))
    prompt_len, out = seen[0]
    assert out.shape[1] > prompt_len and not torch.isin(out[:, prompt_len:], banned).any()


def test_eos_token_ids_are_the_generation_configs_then_the_tokenizers_then_im_end(tiny, monkeypatch):
    """One rule for rollouts and evaluation: the union, so a config naming only `<|endoftext|>` still stops at
    `<|im_end|>` (the token SFT targets end on; rollouts used to miss it) and none names it twice."""
    model, proc = tiny
    tok = proc.tokenizer
    im_end, eot = tok.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    assert tok.eos_token_id == im_end  # the tokenizer's own eos, as in the real Qwen3.5 checkpoints
    assert eos_token_ids(model, proc) == [im_end, eot]  # the config lists both: nothing added
    cases = [([eot], [eot, im_end]), (eot, [eot, im_end]), (None, [im_end]), ([7, eot], [7, eot, im_end])]
    for config_eos, expected in cases:
        monkeypatch.setattr(model.generation_config, "eos_token_id", config_eos)
        assert eos_token_ids(model, proc) == expected, config_eos
    monkeypatch.setattr(model.generation_config, "eos_token_id", [7])
    tok.eos_token = "<|endoftext|>"  # a tokenizer whose eos is another token
    try:
        assert tok.eos_token_id == eot
        assert eos_token_ids(model, proc) == [7, eot, im_end]
    finally:
        tok.eos_token = "<|im_end|>"


def test_completion_mask_keeps_the_first_end_of_turn_token_and_flags_rows_that_never_end(tiny):
    """The first end-of-turn token is inside the mask (the policy learns to stop there, as TRL's
    `completion_mask` does); tokens after it are not; a row without one is all ones and truncated. Checked on
    rollouts of the tiny model with its <|im_end|> logit raised, so rows end at different lengths."""
    from helpers import eos_biased_model

    from art_lib.rollout import completion_mask_from_ids

    model, proc = eos_biased_model()
    eos = eos_token_ids(model, proc)
    ids = torch.tensor([[5, 6, eos[0], 7, eos[1]], [eos[1], 5, 6, 7, 8], [5, 6, 7, 8, 9]])
    mask, truncated = completion_mask_from_ids(ids, eos)
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]]
    assert truncated.tolist() == [False, False, True]
    torch.manual_seed(0)
    texts = [chat_text(proc, q, image=False) for q in ("What is 2 + 3?", "Hi")]
    kw = dict(num_generations=4, max_new_tokens=8, compute_logprobs=False)
    r = sample_rollout(HFGenerator(model, proc), model, proc, texts, [{}, {}], **kw)
    lengths = r.batch.completion_mask.sum(1)
    assert len(set(lengths.tolist())) >= 3, lengths  # ragged: some rows ended early
    last = r.batch.completion_ids.gather(1, (lengths - 1)[:, None]).squeeze(1)
    ended = ~r.batch.truncated
    assert ended.any() and torch.isin(last[ended], torch.tensor(eos)).all()  # each ended row's last token is eos
    assert r.completions == proc.tokenizer.batch_decode(r.batch.completion_ids, skip_special_tokens=True)
