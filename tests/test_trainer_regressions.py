"""One RL step of the trainer, seen from outside: the sign of the advantages, the sampling temperature through
rollout, old log-probs and loss (against TRL 1.16's own log-softmax at a temperature), and the loss settings the
trainer uses (TRL's `GRPOConfig` defaults). Single-line mistakes in `steps.rl_step` used to pass every fast test."""

import inspect
import random

import pytest
import torch
from helpers import eos_biased_model, rel_err

from art_lib import losses, steps
from art_lib.config import TrainConfig
from art_lib.hf_generator import HFGenerator
from art_lib.methods import make_method
from art_lib.pixel_prompt import PixelPrompt
from art_lib.prompting import example_text
from art_lib.rollout import sample_rollout

EXAMPLES = [
    {"id": str(i), "prompt": f"What is {i} plus {i + 3}?", "answer": str(2 * i + 3), "meta": {}} for i in range(4)
]


def varied_reward(completions, examples):
    """Deterministic and different within a group whenever the completions differ."""
    return [len(set(c)) / 10 for c in completions]


@pytest.fixture()
def art():
    model, proc = eos_biased_model()
    m = make_method("art", model, proc, artwork=PixelPrompt.from_noise(256, seed=2))
    return m, proc, [example_text(proc, e) for e in EXAMPLES]


def _step(m, proc, texts, c: TrainConfig, monkeypatch) -> tuple[dict, list]:
    """One `rl_step` with fixed seeds; returns its metrics and the rollouts it sampled (the real ones, recorded)."""
    seen = []

    def recording(*args, **kw):
        seen.append(sample_rollout(*args, **kw))
        return seen[-1]

    monkeypatch.setattr(steps, "sample_rollout", recording)
    for p in m.parameters():
        p.grad = None
    torch.manual_seed(0)
    random.seed(0)
    out = steps.rl_step(m, proc, EXAMPLES, texts, [0, 1, 2], c, reward_fn=varied_reward, scale=1.0)
    return out, seen


def _config(**kw) -> TrainConfig:
    base = dict(method="art", objective="grpo", num_generations=4, max_completion_length=8, overlong_filter=False)
    return TrainConfig(**(base | kw)).resolved()


def _sequence_logps(m, r, temperature: float) -> torch.Tensor:
    from art_lib.forward import completion_logprobs

    with torch.no_grad():
        model, image, embeds = m.policy(grad=False)
        logps = completion_logprobs(model, r.batch, image, image_embeds=embeds, temperature=temperature)
    return (logps * r.batch.completion_mask).sum(1)  # (B,)


@pytest.mark.parametrize("loss_type", ["grpo", "dapo"])
def test_one_rl_step_raises_the_logprob_of_the_rewarded_completions(art, monkeypatch, loss_type):
    """A small step along the negative gradient of the step's loss makes completions with a positive advantage
    more likely and those with a negative one less likely (a flipped advantage sign does the opposite)."""
    m, proc, texts = art
    c = _config(loss_type=loss_type)
    _, (r,) = _step(m, proc, texts, c, monkeypatch)
    rewards = torch.tensor(varied_reward(r.completions, r.examples))
    adv = losses.group_advantages(rewards, c.num_generations)
    assert (adv > 0).any() and (adv < 0).any(), "the test needs groups with different rewards"
    before = _sequence_logps(m, r, c.temperature)
    (raw,) = m.parameters()
    with torch.no_grad():  # plain gradient descent, a small normalised step (the first-order regime)
        raw -= 1e-3 * raw.grad / raw.grad.norm()
    delta = _sequence_logps(m, r, c.temperature) - before
    assert float((adv * delta).sum()) > 0
    assert float(delta[adv > 0].mean()) > float(delta[adv < 0].mean())


def _trl_completion_logps(model, r, image, temperature: float) -> torch.Tensor:
    """TRL 1.16's `selective_log_softmax(logits, ids, temperature)` on a plain forward of the whole model: (B, C)."""
    from trl.trainer.utils import selective_log_softmax

    b = r.batch
    B = len(b)
    logits = model(  # every row shows the image: its patches once per row, as a processor would batch them
        input_ids=b.input_ids,
        attention_mask=b.attention_mask,
        mm_token_type_ids=b.mm_token_type_ids,
        pixel_values=image["pixel_values"].repeat(B, 1),
        image_grid_thw=image["image_grid_thw"].expand(B, 3),
    ).logits
    P = b.prompt_length
    logits = logits[:, P - 1 : -1]  # position t predicts token t + 1: the completion's C positions
    return selective_log_softmax(logits, b.completion_ids, temperature=temperature) * b.completion_mask


@pytest.mark.parametrize("temperature", [0.6, 1.7])
def test_rollout_old_logprobs_are_trls_at_the_sampling_temperature(art, temperature):
    m, proc, texts = art
    model, image, embeds = m.policy(grad=False)
    torch.manual_seed(0)
    kw = dict(num_generations=2, image=image, image_embeds=embeds, temperature=temperature)
    r = sample_rollout(HFGenerator(model, proc), model, proc, texts, EXAMPLES, **kw)
    with torch.no_grad():
        want = _trl_completion_logps(model, r, image, temperature)
        at_one = _trl_completion_logps(model, r, image, 1.0)
    assert rel_err(r.old_logps * r.batch.completion_mask, want) < 1e-5
    assert rel_err(at_one, want) > 1e-2  # the temperature matters for these logits


def test_sampling_temperature_reaches_generate(art):
    """Near temperature 0 sampling is greedy decoding; at the default 1 the same seed samples other tokens."""
    m, proc, texts = art
    model, image, embeds = m.policy(grad=False)
    kw = dict(num_generations=2, image=image, image_embeds=embeds, max_new_tokens=8, compute_logprobs=False)
    gen = HFGenerator(model, proc)
    greedy = sample_rollout(gen, model, proc, texts, EXAMPLES, greedy=True, **kw).completions
    torch.manual_seed(0)
    cold = sample_rollout(gen, model, proc, texts, EXAMPLES, temperature=1e-3, **kw).completions
    torch.manual_seed(0)
    warm = sample_rollout(gen, model, proc, texts, EXAMPLES, temperature=1.0, **kw).completions
    assert cold == greedy
    assert warm != greedy


@pytest.mark.parametrize("temperature", [0.6, 1.7])
def test_rl_step_at_a_temperature_is_on_policy_and_its_gradient_is_trls(art, monkeypatch, temperature):
    """Old log-probs and policy log-probs both divide the logits by the temperature: the step is on-policy
    (ratio 1) and its gradient is that of TRL's log-softmax at the temperature put through the same loss."""
    m, proc, texts = art
    c = _config(loss_type="dapo", temperature=temperature, micro_batch_size=5)
    out, (r,) = _step(m, proc, texts, c, monkeypatch)
    assert abs(out["ratio_mean"] - 1.0) < 1e-5
    assert out["clip_ratio/region_mean"] == 0.0
    (raw,) = m.parameters()
    grad = raw.grad.clone()
    raw.grad = None
    model, image, _ = m.policy()
    logps = _trl_completion_logps(model, r, image, temperature)
    adv = losses.group_advantages(torch.tensor(varied_reward(r.completions, r.examples)), c.num_generations)
    mask = r.batch.completion_mask
    loss = -(adv[:, None] * torch.exp(logps - logps.detach()) * mask).sum() / mask.sum()  # DAPO, on-policy
    loss.backward()
    assert float(grad.abs().max()) > 0
    assert rel_err(grad, raw.grad) < 1e-4


def test_rl_step_calls_the_loss_with_trls_default_settings(art, monkeypatch):
    """The settings `rl_step` leaves to `policy_loss` (and those it takes from TrainConfig's defaults) are
    TRL 1.16's GRPOConfig defaults: KL bias correction, token-level importance sampling, no delta clip, epsilon."""
    import dataclasses

    from trl import GRPOConfig

    m, proc, texts = art
    calls, policy_loss = [], losses.policy_loss

    def recording(*args, **kw):
        bound = inspect.signature(policy_loss).bind(*args, **kw)
        bound.apply_defaults()
        calls.append(bound.arguments)
        return policy_loss(*args, **kw)

    monkeypatch.setattr(losses, "policy_loss", recording)
    _step(m, proc, texts, _config(beta=0.04, micro_batch_size=5), monkeypatch)
    trl = {f.name: f.default for f in dataclasses.fields(GRPOConfig)}
    assert calls
    for got in calls:
        assert got["kl_bias_correction"] is trl["use_bias_correction_kl"] is True
        assert got["importance_sampling_level"] == trl["importance_sampling_level"] == "token"
        assert got["delta"] is trl["delta"] is None
        assert got["epsilon_low"] == got["epsilon_high"] == trl["epsilon"]  # GRPO: symmetric clip, as TRL
        assert got["loss_type"] == "grpo" and got["beta"] == 0.04


def test_rl_step_kl_term_is_bias_corrected_like_trl(art, monkeypatch):
    """With beta > 0 and the policy moved away from its reference, the step's gradient is that of the KL term
    multiplied by the importance ratio (TRL's `use_bias_correction_kl`); without the correction it differs."""
    m, proc, texts = art
    (raw,) = m.parameters()
    with torch.no_grad():  # another picture than the reference (the start), so the KL is far from 0
        raw.copy_(PixelPrompt.from_noise(256, seed=5).raw)
    c = _config(beta=1.0)
    _, (r,) = _step(m, proc, texts, c, monkeypatch)
    grad = raw.grad.clone()
    mask = r.batch.completion_mask
    adv = losses.group_advantages(torch.tensor(varied_reward(r.completions, r.examples)), c.num_generations)
    with torch.no_grad():
        ref_model, ref_image, _ = m.reference()
        ref = _trl_completion_logps(ref_model, r, ref_image, 1.0)
    grads = {}
    for corrected in (True, False):
        raw.grad = None
        model, image, _ = m.policy()
        logps = _trl_completion_logps(model, r, image, 1.0)
        ratio = torch.exp(logps - logps.detach())
        kl = torch.exp(ref - logps) - (ref - logps) - 1
        per_token = -adv[:, None] * ratio + c.beta * (kl * ratio if corrected else kl)
        (((per_token * mask).sum(1) / mask.sum(1)).mean()).backward()  # GRPO: sequence mean, then batch mean
        grads[corrected] = raw.grad.clone()
    print(f"step vs corrected: {rel_err(grad, grads[True]):.2e}; vs uncorrected: {rel_err(grad, grads[False]):.2e}")
    assert rel_err(grad, grads[True]) < 1e-5
    assert rel_err(grad, grads[False]) > 1e-4  # 6e-4 here: the tiny model barely depends on the image
