"""Micro-batched steps (rows per forward, backward per micro-batch, one vision-tower pass) equal the unchunked step."""

import random

import pytest
import torch
from helpers import eos_biased_model, rel_err

from art_lib.config import TrainConfig
from art_lib.methods import make_method
from art_lib.models import tiny_model
from art_lib.pixel_prompt import PixelPrompt
from art_lib.prompting import example_text
from art_lib.steps import rl_step, sft_step
from art_lib.train import train

# Ragged prompts and targets: left and right padding differ between micro-batches.
EXAMPLES = [
    {
        "id": str(i),
        "prompt": "Add these numbers, then explain. " * (i % 3) + f"What is {i} plus {i + 3}?",
        "answer": str(2 * i + 3),
        "meta": {"target": "Work: " + "carry " * i + f"Answer: {2 * i + 3}"},
    }
    for i in range(6)
]


def _method(name: str, seed: int = 0, eos_bias: float = 0.0):
    model, proc = eos_biased_model(seed=seed, bias=eos_bias) if eos_bias else tiny_model(seed=seed)
    art = PixelPrompt.from_noise(256, seed=2)
    m = make_method(name, model, proc, artwork=art, lora_rank=4, seed=0)
    if name == "lora":  # B = 0 at init would leave A without gradient: give the adapter a non-trivial start
        with torch.no_grad():
            for n, p in m.model.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, 0.02, generator=torch.Generator().manual_seed(1))
    return m, proc


def _grad_of(m, run) -> tuple[float, torch.Tensor]:
    for p in m.parameters():
        p.grad = None
    loss = run()
    grads = [p.grad.flatten() for p in m.parameters() if p.grad is not None]
    assert grads, "no gradient reached the trainable parameters"
    return loss, torch.cat(grads)


@pytest.mark.parametrize("name", ["art", "lora", "soft_prompt"])
def test_micro_batched_sft_equals_the_unchunked_step(name):
    m, proc = _method(name)
    texts = [example_text(proc, e, image=name != "lora") for e in EXAMPLES]
    results = {}
    for mb, ckpt in [(None, False), (1, False), (4, False), (2, True)]:
        c = TrainConfig(method=name, micro_batch_size=mb, gradient_checkpointing=ckpt).resolved()
        results[mb, ckpt] = _grad_of(m, lambda c=c: sft_step(m, proc, texts, EXAMPLES, c, scale=1.0)["loss"])
    loss0, grad0 = results[None, False]
    assert float(grad0.abs().max()) > 0
    for key, (loss, grad) in results.items():
        assert abs(loss - loss0) <= 1e-5 * abs(loss0), key
        assert rel_err(grad, grad0) < 1e-5, (key, rel_err(grad, grad0))


@pytest.mark.parametrize(
    "name, loss_type, beta",
    [
        ("art", "grpo", 0.0),
        ("art", "dapo", 0.0),
        ("art", "dapo", 0.04),
        ("art", "bnpo", 0.0),
        ("art", "dr_grpo", 0.0),
        ("lora", "grpo", 0.04),
        ("lora", "dapo", 0.0),
    ],
)
def test_micro_batched_rl_equals_the_unchunked_step(name, loss_type, beta, monkeypatch):
    """Completions of different lengths (1 to 8 tokens): micro-batches hold different numbers of tokens, so
    weighting them by rows instead of tokens (or the reverse) changes the step."""
    from art_lib import steps

    m, proc = _method(name, eos_bias=5.0)
    lengths = []

    def recording(*args, **kw):
        r = steps_generate(*args, **kw)
        lengths.append(r.batch.completion_mask.sum(1).tolist())
        return r

    steps_generate = steps.sample_rollout
    monkeypatch.setattr(steps, "sample_rollout", recording)
    texts = [example_text(proc, e, image=name != "lora") for e in EXAMPLES]

    def reward(completions, examples):  # deterministic and varied within groups
        return [len(set(c)) / 10 for c in completions]

    results = {}
    for mb, ckpt in [(None, False), (1, False), (3, False), (5, True)]:
        c = TrainConfig(
            method=name,
            objective="dapo" if loss_type == "dapo" else "grpo",
            loss_type=loss_type,
            beta=beta,
            num_generations=3,
            max_completion_length=8,
            micro_batch_size=mb,
            gradient_checkpointing=ckpt,
            overlong_filter=False,
        ).resolved()

        def run(c=c):
            torch.manual_seed(0)
            random.seed(0)  # the same rollouts for every micro-batch size
            return rl_step(m, proc, EXAMPLES, texts, [0, 3, 5], c, reward_fn=reward, scale=1.0)["loss"]

        results[mb, ckpt] = _grad_of(m, run)
    assert all(n == lengths[0] for n in lengths) and len(set(lengths[0])) >= 3, lengths  # same rollouts, ragged
    loss0, grad0 = results[None, False]
    assert float(grad0.abs().max()) > 0
    for key, (loss, grad) in results.items():
        assert abs(loss - loss0) <= 1e-5 * abs(loss0) + 1e-6, (key, loss, loss0)  # on-policy loss is ~0
        assert rel_err(grad, grad0) < 1e-5, (key, rel_err(grad, grad0))


def test_generation_in_prompt_batches_gives_a_valid_ragged_rollout():
    from art_lib.hf_generator import HFGenerator
    from art_lib.rollout import sample_rollout

    m, proc = _method("art")
    model, image, embeds = m.policy(grad=False)
    texts = [example_text(proc, e) for e in EXAMPLES[:3]]
    torch.manual_seed(0)
    r = sample_rollout(
        HFGenerator(model, proc, batch_size=1),
        model,
        proc,
        texts,
        EXAMPLES[:3],
        num_generations=2,
        image=image,
        max_new_tokens=6,
        micro_batch_size=2,
    )
    assert len(r.batch) == 6 and r.old_logps.shape == r.batch.completion_mask.shape
    from art_lib.forward import completion_logprobs

    full = completion_logprobs(model, r.batch, image)
    assert rel_err(r.old_logps, full) < 1e-5
    assert r.completions == proc.tokenizer.batch_decode(r.batch.completion_ids, skip_special_tokens=True)


def test_bfloat16_model_trains_with_float32_pixels():
    model, proc = tiny_model(seed=0, dtype="bfloat16")
    for objective in ("sft", "grpo"):
        art = PixelPrompt.from_noise(256, seed=0)
        start = art.pixels().detach().clone()
        res = train(
            model,
            proc,
            EXAMPLES,
            objective=objective,
            artwork=art,
            steps=2,
            batch_size=2,
            lr=0.05,
            num_generations=2,
            max_completion_length=6,
            micro_batch_size=2,
            progress=False,
            reward_fn=lambda cs, es: [len(set(c)) / 10 for c in cs],
        )
        trained = res.artwork  # train moves a copy: `art` stays the seed
        assert trained.raw.dtype == torch.float32 and trained.pixels().dtype == torch.float32
        assert all(p.dtype == torch.bfloat16 for p in model.parameters())
        assert res.history["loss"].map(lambda x: x == x and abs(x) < 1e6).all(), res.history
        assert not torch.equal(trained.pixels().detach(), start), objective


def test_gradient_checkpointing_recomputes_the_decoder_layers_and_is_switched_off_after(monkeypatch):
    m, proc = _method("art")
    layer = m.model.model.language_model.layers[0]
    mlp_forward, calls = type(layer.mlp).forward, []
    monkeypatch.setattr(type(layer.mlp), "forward", lambda self, x: calls.append(1) or mlp_forward(self, x))
    texts = [example_text(proc, e) for e in EXAMPLES[:2]]
    n_layers = len(m.model.model.language_model.layers)
    for ckpt in (False, True):
        calls.clear()
        c = TrainConfig(gradient_checkpointing=ckpt).resolved()
        sft_step(m, proc, texts, EXAMPLES[:2], c, scale=1.0)
        assert len(calls) == (2 if ckpt else 1) * n_layers  # forward, then the recompute in backward
    assert not layer.training and not layer.gradient_checkpointing and not m.model.training
