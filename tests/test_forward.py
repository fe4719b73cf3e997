"""The pixel path end to end: the official processor fed the PNG vs the differentiable path fed the artwork."""

import numpy as np
import pytest
import torch
from helpers import QUESTIONS, ragged_batch, rel_err
from PIL import Image

from art_lib.experiments import sft_eval_loss
from art_lib.forward import completion_logprobs, forward_hidden, sft_nll
from art_lib.hf_generator import HFGenerator
from art_lib.models import tiny_model
from art_lib.pixel_prompt import PixelPrompt
from art_lib.preprocess import num_visual_tokens, preprocess_image
from art_lib.prompting import chat_text, encode
from art_lib.registry import default_sft_target
from art_lib.rollout import sample_rollout
from art_lib.train import train


def forward_logits(model, batch, image=None, *, naive=False):
    """Logits (B, T, V) of the kit's forward pass: `forward_hidden` then the (plain) model's own lm_head."""
    return model.lm_head(forward_hidden(model, batch, image, naive=naive))


@pytest.mark.parametrize("size", [(256, 256), (256, 320)])
def test_logits_from_png_equal_logits_from_pixel_prompt(tiny, tmp_path, size):
    model, proc = tiny
    art = PixelPrompt.from_noise(size, seed=3)
    png = art.save_png(tmp_path / "art.png", model_id="tiny")
    texts = [chat_text(proc, QUESTIONS[1])]
    official = proc(text=texts, images=[Image.open(png)], return_tensors="pt")
    ours_image = preprocess_image(PixelPrompt.from_png(png).pixels(), proc.image_processor)
    batch = encode(proc, texts, num_image_tokens=num_visual_tokens(*size, proc.image_processor))
    assert torch.equal(batch.input_ids, official["input_ids"])
    assert torch.equal(batch.mm_token_type_ids, official["mm_token_type_ids"])
    a = model(**official).logits
    b = forward_logits(model, batch, ours_image)
    assert torch.equal(a, b)


def test_gradients_reach_every_pixel_and_weights_stay_bit_identical(tiny):
    model, proc = tiny
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    art = PixelPrompt.from_icon("math", 256)
    opt = torch.optim.Adam(art.parameters(), lr=0.01)
    texts = [chat_text(proc, q) for q in QUESTIONS[:2]]
    batch = encode(proc, texts, ["Answer: 5", "Answer: 21"], num_image_tokens=num_visual_tokens(256, 256, proc))
    logps = completion_logprobs(model, batch, preprocess_image(art.pixels(), proc.image_processor))
    (-(logps * batch.completion_mask).sum()).backward()
    assert art.raw.grad is not None and bool((art.raw.grad != 0).all()), "some pixel got no gradient"
    opt.step()
    assert all(p.grad is None for p in model.parameters())
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]), f"model weight {n} changed"
    assert not torch.equal(art.pixels(), PixelPrompt.from_icon("math", 256).pixels())


@pytest.mark.parametrize("B", [1, 3, 8])
def test_shared_image_forward_equals_naive_per_row(tiny, B):
    model, proc = tiny
    batch = ragged_batch(proc, B)
    grads, outs = [], []
    for naive in (True, False):
        art = PixelPrompt.from_noise(256, seed=1)
        image = preprocess_image(art.pixels(), proc.image_processor)
        logits = forward_logits(model, batch, image, naive=naive)
        mask = batch.attention_mask.bool()
        (logits[mask].float().square().mean()).backward()
        outs.append(logits[mask].detach())
        grads.append(art.raw.grad)
    assert rel_err(outs[1], outs[0]) < 1e-5
    assert rel_err(grads[1], grads[0]) < 1e-5


def test_generate_with_precomputed_image_equals_generate_with_pixels(tiny):
    """Rollouts hand the encoded image to `generate`; greedy output must equal the official path."""
    model, proc = tiny
    art = PixelPrompt.from_noise(256, seed=5)
    image = preprocess_image(art.pixels(), proc.image_processor)
    texts = [chat_text(proc, q) for q in QUESTIONS[:3]]
    r = sample_rollout(
        HFGenerator(model, proc),
        model,
        proc,
        texts,
        [{}] * 3,
        num_generations=2,
        image=image,
        max_new_tokens=6,
        greedy=True,
        compute_logprobs=False,
    )
    proc.tokenizer.padding_side = "left"
    official = proc(
        text=[t for t in texts for _ in range(2)], images=[art.to_pil()] * 6, return_tensors="pt", padding=True
    )
    out = model.generate(**official, max_new_tokens=6, do_sample=False)
    ref = proc.tokenizer.batch_decode(out[:, official["input_ids"].shape[1] :], skip_special_tokens=True)
    assert r.completions == ref


def test_image_placeholder_and_image_must_agree(tiny):
    model, proc = tiny
    with_image = chat_text(proc, "hello")
    with pytest.raises(ValueError, match="no image"):
        encode(proc, [with_image], num_image_tokens=0)
    text_only = encode(proc, [chat_text(proc, "hello", image=False)])
    with pytest.raises(ValueError, match="no image"):
        forward_logits(model, encode(proc, [with_image], num_image_tokens=64), None)
    assert forward_logits(model, text_only, None).shape[0] == 1


def test_random_model_uses_the_image():
    """Sanity of the harness: different artworks give different logits on the same prompt."""
    model, proc = tiny_model(seed=1)
    batch = encode(proc, [chat_text(proc, "What is 1 + 1?")], num_image_tokens=num_visual_tokens(256, 256, proc))
    outs = [
        forward_logits(model, batch, preprocess_image(PixelPrompt.from_noise(256, seed=s).pixels(), proc))
        for s in (0, 1)
    ]
    assert not torch.allclose(outs[0], outs[1])


def test_png_without_metadata_loads_with_warning(tmp_path):
    path = tmp_path / "plain.png"
    Image.fromarray(np.zeros((256, 256, 3), dtype=np.uint8)).save(path)
    with pytest.warns(UserWarning, match="metadata"):
        art = PixelPrompt.from_png(path)
    assert art.size == (256, 256)


def test_sft_nll_is_the_summed_cross_entropy_of_the_completion_tokens(tiny):
    """Against a naive reference: full logits, cross-entropy at the positions that predict completion tokens."""
    model, proc = tiny
    image = preprocess_image(PixelPrompt.from_noise(256, seed=4).pixels(), proc.image_processor)
    batch = encode(
        proc,
        [chat_text(proc, q) for q in QUESTIONS[:3]],
        ["Answer: 5", "17 + 4 = 21", "Hello there"],
        num_image_tokens=num_visual_tokens(256, 256, proc),
    )
    P, C = batch.prompt_length, batch.completion_ids.shape[1]
    logits = forward_logits(model, batch, image)[:, P - 1 : P + C - 1].float()  # position t predicts token t + 1
    ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), batch.completion_ids, reduction="none")
    expected = (ce * batch.completion_mask).sum()
    assert abs(float(sft_nll(model, batch, image).detach()) - float(expected)) < 1e-4 * float(expected)


def test_sft_eval_loss_equals_the_trainers_loss_before_its_first_update():
    """`experiments.sft_eval_loss` and the trainer's SFT step share `forward.sft_nll`: the same number."""
    model, proc = tiny_model(seed=0)
    examples = [{"id": str(i), "prompt": q, "answer": str(i), "meta": {}} for i, q in enumerate(QUESTIONS[:4])]
    art = PixelPrompt.from_noise(256, seed=6)
    before = sft_eval_loss(model, proc, examples, art.pixels().detach(), batch_size=3)  # two batches: 3 + 1
    res = train(
        model,
        proc,
        examples,
        method="art",
        objective="sft",
        artwork=art,
        steps=1,
        batch_size=4,
        micro_batch_size=2,
        progress=False,
    )
    assert default_sft_target(examples[0]) == "Answer: 0"  # no benchmark: both score the default target
    assert abs(res.history["loss"].iloc[0] - before) < 1e-5 * before
