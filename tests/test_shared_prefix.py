"""The shared image prefix (run once, its cache broadcast to the rows) equals the full batch, values and gradients."""

import pytest
import torch
from helpers import QUESTIONS, ragged_batch, rel_err

from art_lib import losses
from art_lib.forward import (
    _lm_parts,
    completion_hidden,
    completion_logprobs,
    forward_hidden,
    prefilled_cache,
    shared_batch_prefix,
    shared_prefix_length,
    vision_embeds,
)
from art_lib.hf_generator import HFGenerator
from art_lib.models import gradient_checkpointing
from art_lib.pixel_prompt import PixelPrompt
from art_lib.preprocess import num_visual_tokens, preprocess_image
from art_lib.prompting import chat_text, encode
from art_lib.rollout import sample_rollout
from art_lib.train import train


def test_prefix_covers_template_opening_and_image(tiny):
    model, proc = tiny
    batch = ragged_batch(proc, 3)
    S = shared_prefix_length(batch)
    start = batch.prompt_length - int(batch.attention_mask[0, : batch.prompt_length].sum())
    n_img = num_visual_tokens(256, 256, proc)
    assert int(batch.mm_token_type_ids[0, start : start + S].sum()) == n_img
    # a shared system turn is shared too
    assert shared_prefix_length(ragged_batch(proc, 3, system="You are a careful solver.")) > S
    # one row: everything but the last prompt token
    one = ragged_batch(proc, 1)
    assert shared_prefix_length(one) == one.prompt_length - 1


@pytest.mark.parametrize("system", [None, "You are a careful solver."])
@pytest.mark.parametrize("B", [1, 3, 8])
def test_logits_and_pixel_gradient_equal_unshared(tiny, B, system):
    model, proc = tiny
    batch = ragged_batch(proc, B, system)
    mask = batch.completion_mask.bool()
    outs, grads = [], []
    for shared in (False, True):
        art = PixelPrompt.from_noise(256, seed=1)
        image = preprocess_image(art.pixels(), proc.image_processor)
        logits = _lm_parts(model)[1](completion_hidden(model, batch, image, shared_prefix=shared))
        logits[mask].square().mean().backward()
        outs.append(logits[mask].detach())
        grads.append(art.raw.grad)
    assert rel_err(outs[1], outs[0]) < 1e-5
    assert rel_err(grads[1], grads[0]) < 1e-5
    assert bool((grads[1] != 0).any())


@pytest.mark.parametrize("loss_type", ["grpo", "dapo"])
@pytest.mark.parametrize("B", [1, 3, 8])
def test_sft_and_rl_losses_and_pixel_gradient_equal_unshared(tiny, B, loss_type):
    model, proc = tiny
    batch = ragged_batch(proc, B)
    cmask = batch.completion_mask
    adv = torch.linspace(-1, 2, B)  # not symmetric: the RL loss is not ~0
    results = []
    for shared in (False, True):
        art = PixelPrompt.from_noise(256, seed=2)
        image = preprocess_image(art.pixels(), proc.image_processor)
        with torch.no_grad():
            old = completion_logprobs(model, batch, image, shared_prefix=shared, micro_batch_size=2)
        logps = completion_logprobs(model, batch, image, shared_prefix=shared)
        sft = -(logps * cmask).sum() / cmask.sum()
        rl, _ = losses.policy_loss(
            logps,
            old + 0.01 * cmask,
            adv,
            cmask,
            loss_type=loss_type,
            epsilon_low=0.2,
            epsilon_high=0.28,
            beta=0.0,
            max_completion_length=cmask.shape[1],
            num_items_in_batch=float(cmask.sum()) if loss_type == "dapo" else None,
        )
        (g_sft,) = torch.autograd.grad(sft, art.raw, retain_graph=True)
        (g_rl,) = torch.autograd.grad(rl, art.raw)
        results.append((old, sft.detach(), rl.detach(), g_sft, g_rl))
    for ref, got in zip(*results):
        assert rel_err(got, ref) < 1e-5


def test_shared_prefix_under_gradient_checkpointing(tiny):
    """Recomputed layers read the same (read-only) shared cache: values and pixel gradient unchanged."""
    model, proc = tiny
    batch = ragged_batch(proc, 3)
    outs = []
    for shared, ckpt in ((False, False), (True, True)):
        art = PixelPrompt.from_noise(256, seed=1)
        image = preprocess_image(art.pixels(), proc.image_processor)
        with gradient_checkpointing(model, ckpt):
            logps = completion_logprobs(model, batch, image, shared_prefix=shared)
            (logps * batch.completion_mask).sum().backward()
        outs.append((logps.detach(), art.raw.grad))
    assert rel_err(outs[1][0], outs[0][0]) < 1e-5
    assert rel_err(outs[1][1], outs[0][1]) < 1e-5
    layer = _lm_parts(model)[0].language_model.layers[0]
    assert "_can_checkpoint_with_cache" not in vars(layer) and not layer.gradient_checkpointing


def _image_passes(model):
    """A counter of decoder calls that carry the image (the prefix passes), and the hook's handle."""
    calls = []
    hook = _lm_parts(model)[0].register_forward_pre_hook(
        lambda mod, args, kwargs: calls.append(1) if kwargs.get("mm_encoder_outputs") else None, with_kwargs=True
    )
    return calls, hook


@pytest.mark.parametrize("micro", [1, 2, 3, 6])
def test_step_prefix_runs_once_and_gives_the_unshared_loss_and_gradient(tiny, micro):
    """A training step's prefix (template + image + system turn) runs once for all micro-batches, each
    continuing it with its own shared tokens (G = 2 samples per prompt share the whole prompt); the
    accumulated gradient goes back through it once. Values and pixel gradient equal the unshared batch."""
    model, proc = tiny
    batch = ragged_batch(proc, 3, system="You are a careful solver.")
    idx = torch.arange(3).repeat_interleave(2)  # G = 2 rows per prompt, as in a rollout batch
    batch = type(batch)(
        input_ids=batch.input_ids[idx],
        attention_mask=batch.attention_mask[idx],
        mm_token_type_ids=batch.mm_token_type_ids[idx],
        prompt_length=batch.prompt_length,
        completion_mask=batch.completion_mask[idx],
        truncated=batch.truncated[idx],
    )
    results = []
    for mode in ("unshared", "step prefix"):
        art = PixelPrompt.from_noise(256, seed=5)
        image = preprocess_image(art.pixels(), proc.image_processor)
        embeds = vision_embeds(model, image["pixel_values"], image["image_grid_thw"])
        leaf = embeds.detach().requires_grad_()
        calls, hook = _image_passes(model)
        prefix = shared = None
        if mode == "step prefix":
            prefix = shared_batch_prefix(model, batch, image, leaf)
            shared = prefix.leaf()
            assert shared is not prefix and prefix.length == shared_prefix_length(batch)
        parts = []
        for a in range(0, len(batch), micro):
            sub = batch.rows(a, a + micro)
            logps = completion_logprobs(model, sub, image, image_embeds=leaf, shared_prefix=shared or False)
            (-(logps * sub.completion_mask).sum()).backward()
            parts.append(logps.detach())
        if prefix is not None:
            prefix.backward(shared)
        embeds.backward(leaf.grad)
        hook.remove()
        results.append((torch.cat([p.flatten() for p in parts]), art.raw.grad, len(calls)))
    (ref, g_ref, n_ref), (got, g_got, n_got) = results
    assert rel_err(got, ref) < 1e-5
    assert rel_err(g_got, g_ref) < 1e-5 and bool((g_got != 0).any())
    assert n_ref == -(-len(batch) // micro)  # the full batch: the image in every micro-batch's forward
    assert n_got == 1  # the step prefix: one pass with the image, micro-batches only continue it


@pytest.mark.parametrize("extra", [1, 2, 9])
def test_a_continued_prefix_equals_the_prefix_run_at_once(tiny, extra):
    """Continuing a prefix by 1 token (the decode kernel's in-place case), 2 or 9 gives the states of one
    pass over all the tokens, and leaves the prefix it continued unchanged."""
    from art_lib.prefix import prompt_starts, run_prefix

    model, proc = tiny
    batch = ragged_batch(proc, 3)
    image = preprocess_image(PixelPrompt.from_noise(256, seed=7).pixels(), proc.image_processor)
    grid = image["image_grid_thw"]
    embeds = vision_embeds(model, image["pixel_values"], grid)
    decoder = _lm_parts(model)[0]
    base = shared_batch_prefix(model, batch, image, embeds)
    before = [t.clone() for t in base.states()]
    s0, n = int(prompt_starts(batch)[0]), base.length + extra
    positions, _ = decoder.get_rope_index(
        batch.input_ids[:1],
        mm_token_type_ids=batch.mm_token_type_ids[:1],
        image_grid_thw=grid,
        attention_mask=batch.attention_mask[:1],
    )
    ids, mm, pos = batch.input_ids[0, s0 : s0 + n], batch.mm_token_type_ids[0, s0 : s0 + n], positions[..., s0 : s0 + n]
    with torch.no_grad():
        once = run_prefix(decoder, ids, mm, pos, grid, embeds)
        continued = run_prefix(decoder, ids, mm, pos, grid, embeds, base=base)
    assert continued.length == once.length == n
    for a, b in zip(continued.states(), once.states(), strict=True):
        assert a.shape == b.shape and rel_err(a, b) < 1e-5
    for a, b in zip(base.states(), before, strict=True):
        assert torch.equal(a, b)


EXAMPLES = [
    {
        "id": str(i),
        "prompt": "Add these numbers, then explain. " * (i % 3) + f"What is {i} plus {i + 3}?",
        "answer": str(2 * i + 3),
        "meta": {"target": "Work: " + "carry " * i + f"Answer: {2 * i + 3}"},
    }
    for i in range(6)
]


@pytest.mark.parametrize("micro", [4, 1])
@pytest.mark.parametrize("method,objective", [("art", "sft"), ("art", "dapo"), ("soft_prompt", "grpo")])
def test_short_run_trains_the_same_with_and_without_sharing(tiny, method, objective, micro):
    model, proc = tiny
    states = []
    for shared in (False, True):
        res = train(
            model,
            proc,
            EXAMPLES,
            method=method,
            objective=objective,
            steps=2,
            batch_size=3,
            lr=0.05,
            num_generations=2,
            max_completion_length=5,
            micro_batch_size=micro,
            beta=0.04,
            progress=False,
            reward_fn=lambda cs, es: [len(set(c)) / 10 for c in cs],
            shared_prefix=shared,
        )
        states.append((res.history["loss"].to_numpy(), res.method.state_dict()))
    (loss0, s0), (loss1, s1) = states
    assert abs(loss1 - loss0).max() <= 1e-5 * max(1.0, abs(loss0).max())
    key = "raw" if method == "art" else "embeds"
    # Adam divides each coordinate's gradient by its own magnitude, so float noise (1e-7 relative) in the
    # gradient moves a parameter by up to ~1e-3 of a step: compare at that scale, not at 1e-5.
    assert rel_err(s1[key], s0[key]) < 1e-3


@pytest.mark.parametrize("B", [1, 3, 8])
def test_greedy_rollouts_from_the_shared_cache_are_token_identical(tiny, B):
    model, proc = tiny
    image = preprocess_image(PixelPrompt.from_noise(256, seed=4).pixels(), proc.image_processor)
    texts = [chat_text(proc, q) for q in QUESTIONS[:B]]
    runs = [
        sample_rollout(
            HFGenerator(model, proc, shared_prefix=shared),
            model,
            proc,
            texts,
            [{}] * B,
            num_generations=2,
            image=image,
            max_new_tokens=12,
            greedy=True,
            shared_prefix=shared,
        )
        for shared in (False, True)
    ]
    assert torch.equal(runs[1].batch.input_ids, runs[0].batch.input_ids)
    assert torch.equal(runs[1].batch.completion_mask, runs[0].batch.completion_mask)
    assert runs[1].completions == runs[0].completions
    assert rel_err(runs[1].old_logps, runs[0].old_logps) < 1e-5


@pytest.mark.parametrize("B", [1, 3, 8])
def test_prefilled_cache_continues_like_the_full_prompt(tiny, B):
    """The last prompt token run on the prefilled cache (G = 2 copies) has the full batch's hidden state."""
    model, proc = tiny
    image = preprocess_image(PixelPrompt.from_noise(256, seed=4).pixels(), proc.image_processor)
    texts = [chat_text(proc, q) for q in QUESTIONS[:B]]
    batch = encode(proc, texts, num_image_tokens=num_visual_tokens(256, 256, proc))
    ref = forward_hidden(model, batch, image)[:, -1].repeat_interleave(2, 0)
    cache = prefilled_cache(model, batch, image, repeats=2)
    decoder = _lm_parts(model)[0]
    rep = {
        k: v.repeat_interleave(2, 0)
        for k, v in (("ids", batch.input_ids), ("mask", batch.attention_mask), ("mm", batch.mm_token_type_ids))
    }
    positions, _ = decoder.get_rope_index(
        rep["ids"],
        mm_token_type_ids=rep["mm"],
        image_grid_thw=image["image_grid_thw"].expand(2 * B, 3),
        attention_mask=rep["mask"],
    )
    with torch.no_grad():
        got = decoder(
            input_ids=rep["ids"][:, -1:],
            attention_mask=rep["mask"],
            position_ids=positions[:, :, -1:],
            past_key_values=cache,
            use_cache=True,
        ).last_hidden_state[:, 0]
    assert rel_err(got, ref) < 1e-5


def test_evaluation_generates_the_same_with_the_shared_prefix(tiny):
    from art_lib.evaluate import auto_batch_size, generate_completions

    model, proc = tiny
    pil = PixelPrompt.from_noise(256, seed=6).to_pil()
    texts = [chat_text(proc, q) for q in QUESTIONS[:5]]
    runs = [generate_completions(model, proc, texts, pil, max_new_tokens=10, shared_prefix=s) for s in (False, True)]
    assert runs[1] == runs[0]
    assert auto_batch_size(model, 300, 512) == 32  # CPU: the default, no memory probe
