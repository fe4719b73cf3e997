"""Tests of art_lib.losses: naive references, hand-made cases, and parity with TRL 1.16's GRPOTrainer."""

from __future__ import annotations

import warnings
from collections import defaultdict

import numpy as np
import pytest
import torch

from art_lib import losses

# --------------------------------------------------------------------------------------------------------------
# Advantages
# --------------------------------------------------------------------------------------------------------------


def _numpy_advantages(rewards: np.ndarray, group_size: int, scale: str, eps: float = 1e-4) -> np.ndarray:
    out = np.empty_like(rewards)
    batch_std = np.std(rewards, ddof=1)
    for start in range(0, len(rewards), group_size):
        group = rewards[start : start + group_size]
        centred = group - group.mean()  # baseline: the group mean, whatever the scale
        if scale == "group":
            centred = centred / (np.std(group, ddof=1) + eps)
        elif scale == "batch":
            centred = centred / (batch_std + eps)
        out[start : start + group_size] = centred
    return out


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_group_advantages_vs_numpy(scale):
    rewards = np.array([1.0, 0.0, 0.5, 0.25, 2.0, 2.0, 2.0, 2.0, -1.0, 3.0, 0.0, 1.0], dtype=np.float64)
    got = losses.group_advantages(torch.from_numpy(rewards), group_size=4, scale=scale)
    np.testing.assert_allclose(got.numpy(), _numpy_advantages(rewards, 4, scale), rtol=1e-12, atol=1e-12)
    # The all-equal group has zero advantage, not NaN.
    assert torch.all(got[4:8] == 0)


def test_group_advantages_std_is_unbiased_like_trl():
    from trl.trainer.utils import nanstd

    # float32 like TRL's rewards: TRL's nanstd computes Bessel's factor count / (count - 1) in the default
    # dtype (float32) even for float64 input, so in float64 the two only agree to ~1e-8.
    rewards = torch.tensor([0.0, 1.0, 1.0, 3.0, 5.0, 1.0])
    grouped = rewards.view(-1, 3)
    trl_std = nanstd(grouped, dim=1).repeat_interleave(3)  # what GRPOTrainer divides by for scale="group"
    want = (rewards - grouped.mean(1).repeat_interleave(3)) / (trl_std + 1e-4)
    torch.testing.assert_close(losses.group_advantages(rewards, 3), want, rtol=0, atol=1e-6)
    trl_batch_std = nanstd(rewards)
    want = (rewards - grouped.mean(1).repeat_interleave(3)) / (trl_batch_std + 1e-4)
    torch.testing.assert_close(losses.group_advantages(rewards, 3, scale="batch"), want, rtol=0, atol=1e-6)


def test_group_advantages_errors_and_singletons():
    with pytest.raises(ValueError):
        losses.group_advantages(torch.zeros(4), 2, scale="std")
    with pytest.raises(ValueError):
        losses.group_advantages(torch.zeros(5), 2)
    # group_size 1: no std, TRL uses 0, so the advantage is 0 / eps = 0.
    assert torch.all(losses.group_advantages(torch.tensor([1.0, 2.0]), 1) == 0)


# --------------------------------------------------------------------------------------------------------------
# DAPO's other parts
# --------------------------------------------------------------------------------------------------------------


def test_dynamic_sampling_mask():
    rewards = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.5, 0.5, 0.5, 0.5000001])
    keep = losses.dynamic_sampling_mask(rewards, group_size=3)
    assert keep.dtype == torch.bool
    assert keep.tolist() == [False, False, True, True]


def test_overlong_mask():
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0]])
    truncated = torch.tensor([False, True, False])
    got = losses.overlong_mask(mask, truncated)
    assert got.dtype == mask.dtype
    assert got.tolist() == [[1, 1, 1, 0], [0, 0, 0, 0], [1, 1, 0, 0]]
    fmask = mask.float()
    assert losses.overlong_mask(fmask, truncated.long()).tolist() == got.float().tolist()


def test_soft_overlong_penalty_hand_made_and_vs_trl():
    from trl.rewards import get_soft_overlong_punishment

    lengths = torch.tensor([0, 50, 80, 81, 90, 99, 100, 101, 500])
    got = losses.soft_overlong_penalty(lengths, max_completion_length=100, cache_length=20)
    want = [0.0, 0.0, 0.0, -0.05, -0.5, -0.95, -1.0, -1.0, -1.0]
    torch.testing.assert_close(got, torch.tensor(want), rtol=0, atol=1e-7)
    for cache in (20, 1, 0):
        trl_fn = get_soft_overlong_punishment(max_completion_len=100, soft_punish_cache=cache)
        trl_vals = trl_fn([[1] * int(n) for n in lengths])
        torch.testing.assert_close(
            losses.soft_overlong_penalty(lengths, 100, cache), torch.tensor(trl_vals), rtol=0, atol=1e-7
        )


# --------------------------------------------------------------------------------------------------------------
# Policy loss: errors and hand-checkable properties
# --------------------------------------------------------------------------------------------------------------


def _rl_inputs(seed: int = 0, B: int = 6, C: int = 9, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    logps = -torch.rand(B, C, generator=g, dtype=dtype) * 3
    # Old policy differs by up to +-0.6 nats per token so that plenty of ratios fall outside [0.8, 1.28].
    old = logps + (torch.rand(B, C, generator=g, dtype=dtype) - 0.5) * 1.2
    ref = logps + (torch.rand(B, C, generator=g, dtype=dtype) - 0.5) * 0.8
    advantages = torch.randn(B, generator=g, dtype=dtype)
    lengths = torch.tensor([9, 3, 7, 1, 5, 0])[:B]  # one empty completion (fully masked)
    mask = (torch.arange(C)[None, :] < lengths[:, None]).long()
    return logps, old, ref, advantages, mask


def test_policy_loss_unknown_loss_type_raises():
    logps, old, _, adv, mask = _rl_inputs()
    with pytest.raises(ValueError, match="loss_type"):
        losses.policy_loss(logps, old, adv, mask, loss_type="ppo")
    with pytest.raises(ValueError):
        losses.policy_loss(logps, old, adv, mask, loss_type="dr_grpo")  # no max_completion_length
    with pytest.raises(ValueError):
        losses.policy_loss(logps, old, adv, mask, beta=0.1)  # no reference
    with pytest.raises(ValueError):
        losses.policy_loss(logps, old, adv, mask, importance_sampling_level="batch")


def test_policy_loss_on_policy_is_minus_mean_advantage():
    logps, _, _, adv, mask = _rl_inputs()
    logps = logps.clone().requires_grad_()
    loss, metrics = losses.policy_loss(logps, None, adv, mask, loss_type="bnpo")
    m = mask.double()
    want = -(adv[:, None] * m).sum() / m.sum()
    torch.testing.assert_close(loss, want, rtol=0, atol=1e-12)
    loss.backward()
    # On-policy the ratio is 1 and its gradient is the REINFORCE one: -A * mask / N.
    torch.testing.assert_close(logps.grad, -adv[:, None] * m / m.sum(), rtol=0, atol=1e-12)
    assert metrics["ratio_mean"].item() == 1.0
    assert metrics["clip_ratio/region_mean"].item() == 0.0


def test_policy_loss_masks_padding():
    logps, old, ref, adv, mask = _rl_inputs()
    for loss_type in losses.LOSS_TYPES:
        kwargs = dict(loss_type=loss_type, beta=0.05, ref_per_token_logps=ref, max_completion_length=9)
        base, _ = losses.policy_loss(logps, old, adv, mask, **kwargs)
        junk = torch.where(mask.bool(), logps, logps + 7.0)
        changed, _ = losses.policy_loss(junk, old, adv, mask, **kwargs)
        assert changed == base, loss_type


# --------------------------------------------------------------------------------------------------------------
# Parity with TRL 1.16's GRPOTrainer._compute_loss
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trl_trainer_factory(tmp_path_factory):
    """Build GRPOTrainer objects without __init__: only the attributes `_compute_loss` reads, on a real config."""
    import trl
    from accelerate import Accelerator
    from trl import GRPOConfig, GRPOTrainer

    # The parity below is with this exact version's loss; another TRL may aggregate differently.
    assert trl.__version__ == "1.16.0"
    output_dir = str(tmp_path_factory.mktemp("grpo"))

    def make(
        *,
        loss_type,
        beta,
        epsilon_low,
        epsilon_high,
        max_completion_length,
        importance_sampling_level,
        use_bias_correction_kl,
        logps_leaf,
        delta=None,
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            args = GRPOConfig(
                output_dir=output_dir,
                report_to="none",
                use_cpu=True,
                bf16=False,
                loss_type=loss_type,
                beta=beta,
                epsilon=epsilon_low,
                epsilon_high=epsilon_high,
                max_completion_length=max_completion_length,
                importance_sampling_level=importance_sampling_level,
                use_bias_correction_kl=use_bias_correction_kl,
                delta=delta,
                per_device_train_batch_size=logps_leaf.size(0),
                num_generations=2,
                steps_per_generation=1,
                gradient_accumulation_steps=1,
            )
        trainer = GRPOTrainer.__new__(GRPOTrainer)
        trainer.args = args
        # A real single-process accelerator (gather/reduce are identities). Built after the config: building a
        # TrainingArguments resets accelerate's shared state, which would break an older Accelerator.
        trainer.accelerator = Accelerator(cpu=True)
        trainer.model = torch.nn.Linear(1, 1)  # only `.training` is read: True -> "train" mode
        trainer.loss_type = args.loss_type
        trainer.beta = args.beta
        trainer.epsilon_low = args.epsilon
        trainer.epsilon_high = args.epsilon_high
        trainer.importance_sampling_level = args.importance_sampling_level
        trainer.max_completion_length = args.max_completion_length
        trainer.current_gradient_accumulation_steps = 1
        trainer.top_entropy_quantile = args.top_entropy_quantile  # 1.0: no entropy mask
        trainer.off_policy_mask_threshold = args.off_policy_mask_threshold  # None
        trainer.use_vllm = False
        trainer.vllm_importance_sampling_correction = False
        trainer.aux_loss_enabled = False
        trainer._entropy_bonus_enabled = False
        trainer._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}

        def fake_logps(model, input_ids, attention_mask, logits_to_keep, **kwargs):
            assert logits_to_keep == logps_leaf.size(1)
            return logps_leaf, torch.zeros_like(logps_leaf.detach()), None  # logps, entropies, aux loss

        # Only the model forward is replaced; every line of the loss maths is TRL's.
        trainer._get_per_token_logps_and_entropies = fake_logps
        return trainer

    return make


def _trl_loss(make, logps, old, ref, adv, mask, num_items, **cfg):
    leaf = logps.clone().requires_grad_()
    trainer = make(logps_leaf=leaf, **cfg)
    B, C = mask.shape
    inputs = {
        "prompt_ids": torch.zeros(B, 2, dtype=torch.long),
        "prompt_mask": torch.ones(B, 2, dtype=torch.long),
        "completion_ids": torch.zeros(B, C, dtype=torch.long),
        "completion_mask": mask,
        "advantages": adv,
        "old_per_token_logps": old,
        "num_items_in_batch": num_items,
    }
    if cfg["beta"] != 0.0:
        inputs["ref_per_token_logps"] = ref
    loss = trainer._compute_loss(trainer.model, inputs)
    loss.backward()
    return loss.detach(), leaf.grad, {k: v[-1] for k, v in trainer._metrics["train"].items()}


def _ours(logps, old, ref, adv, mask, num_items, **cfg):
    leaf = logps.clone().requires_grad_()
    loss, metrics = losses.policy_loss(
        leaf,
        old,
        adv,
        mask,
        loss_type=cfg["loss_type"],
        epsilon_low=cfg["epsilon_low"],
        epsilon_high=cfg["epsilon_high"],
        beta=cfg["beta"],
        ref_per_token_logps=ref if cfg["beta"] else None,
        max_completion_length=cfg["max_completion_length"],
        num_items_in_batch=num_items,
        importance_sampling_level=cfg["importance_sampling_level"],
        kl_bias_correction=cfg["use_bias_correction_kl"],
        delta=cfg.get("delta"),
    )
    loss.backward()
    return loss.detach(), leaf.grad, metrics


# (loss_type, beta, use_bias_correction_kl, importance_sampling_level); TRL's default bias correction is True.
PARITY_CASES = [
    (loss_type, beta, bias, "token")
    for loss_type in ("grpo", "dapo", "bnpo", "dr_grpo")
    for beta, bias in ((0.0, True), (0.04, True), (0.04, False))
] + [("grpo", 0.04, True, "sequence"), ("dapo", 0.0, True, "sequence")]


@pytest.mark.parametrize(("loss_type", "beta", "bias_correction", "level"), PARITY_CASES)
def test_policy_loss_parity_with_trl(trl_trainer_factory, loss_type, beta, bias_correction, level):
    logps, old, ref, adv, mask = _rl_inputs(seed=1)
    # dapo's normaliser is the *global* active-token count: make it differ from the local one so the argument
    # is really exercised (a second process holding 13 more tokens).
    num_items = mask.sum() + 13 if loss_type == "dapo" else mask.sum()
    cfg = dict(
        loss_type=loss_type,
        beta=beta,
        epsilon_low=0.2,
        epsilon_high=0.28,
        max_completion_length=12,
        importance_sampling_level=level,
        use_bias_correction_kl=bias_correction,
    )
    trl_loss, trl_grad, trl_metrics = _trl_loss(trl_trainer_factory, logps, old, ref, adv, mask, num_items, **cfg)
    loss, grad, metrics = _ours(logps, old, ref, adv, mask, num_items, **cfg)

    assert abs(loss.item() - trl_loss.item()) <= 1e-6
    assert (grad - trl_grad).abs().max().item() <= 1e-6
    assert trl_grad.abs().max() > 0
    for key in ("clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean"):
        assert abs(metrics[key].item() - trl_metrics[key]) <= 1e-6, key
    if beta:
        assert abs(metrics["kl"].item() - trl_metrics["kl"]) <= 1e-6
    if level == "token":
        # Clipping is really active on both sides, so the clipped branch of the min is tested.
        assert metrics["clip_ratio/low_mean"] > 0 and metrics["clip_ratio/high_mean"] > 0


def test_policy_loss_parity_with_trl_float32_and_delta(trl_trainer_factory):
    logps, old, ref, adv, mask = (x.float() if x.is_floating_point() else x for x in _rl_inputs(seed=2))
    cfg = dict(
        loss_type="dapo",
        beta=0.1,
        epsilon_low=0.2,
        epsilon_high=0.28,
        max_completion_length=12,
        importance_sampling_level="token",
        use_bias_correction_kl=True,
        delta=1.1,
    )
    trl_loss, trl_grad, _ = _trl_loss(trl_trainer_factory, logps, old, ref, adv, mask, mask.sum(), **cfg)
    loss, grad, _ = _ours(logps, old, ref, adv, mask, mask.sum(), **cfg)
    assert abs(loss.item() - trl_loss.item()) <= 1e-6
    assert (grad - trl_grad).abs().max().item() <= 1e-6


def test_policy_loss_on_policy_parity_with_trl(trl_trainer_factory):
    """old_per_token_logps=None: both sides fall back to the detached current log-probs."""
    logps, _, ref, adv, mask = _rl_inputs(seed=3)
    cfg = dict(
        loss_type="grpo",
        beta=0.04,
        epsilon_low=0.2,
        epsilon_high=0.28,
        max_completion_length=12,
        importance_sampling_level="token",
        use_bias_correction_kl=True,
    )
    trl_loss, trl_grad, _ = _trl_loss(trl_trainer_factory, logps, None, ref, adv, mask, mask.sum(), **cfg)
    loss, grad, _ = _ours(logps, None, ref, adv, mask, mask.sum(), **cfg)
    assert abs(loss.item() - trl_loss.item()) <= 1e-6
    assert (grad - trl_grad).abs().max().item() <= 1e-6


def _one_rl_step(monkeypatch, **fields):
    """One GRPO step of ART on a tiny model whose artwork starts away from its reference (so the KL term is not
    0); returns the final pixels and the tensors and settings of each `policy_loss` call of the step."""
    from art_lib.models import tiny_model
    from art_lib.pixel_prompt import PixelPrompt
    from art_lib.train import train

    calls, policy_loss = [], losses.policy_loss

    def recording(logps, old, adv, mask, **kw):
        loss, metrics = policy_loss(logps, old, adv, mask, **kw)
        calls.append((logps.detach().clone(), old, adv, mask, kw, loss.detach()))
        return loss, metrics

    model, proc = tiny_model(seed=0)
    examples = [{"id": str(i), "prompt": f"What is {i} plus 3?", "answer": str(i + 3), "meta": {}} for i in range(4)]
    with monkeypatch.context() as patch:
        patch.setattr(losses, "policy_loss", recording)
        res = train(
            model,
            proc,
            examples,
            method="art",
            objective="grpo",
            artwork=PixelPrompt.from_noise(256, seed=0),
            init_state={"raw": PixelPrompt.from_noise(256, seed=5).raw, "eot": None},
            steps=1,
            batch_size=2,
            num_generations=4,
            max_completion_length=8,
            reward_fn=lambda completions, _: [len(set(c)) / 10 for c in completions],
            lr=0.05,
            beta=0.5,
            progress=False,
            **fields,
        )
    return res.artwork.pixels().detach(), calls


def test_a_one_step_gspo_run_differs_from_token_level_and_its_loss_is_trls(trl_trainer_factory, monkeypatch):
    """`TrainConfig.importance_sampling_level` / `delta` reach the trainer's loss: the step's loss and gradient are
    TRL's GSPO ones on the step's own tensors, and the step differs from the token-level one (same rollouts).
    On-policy the two levels give the same policy gradient; they differ through the KL term's importance
    weight, hence a policy that starts away from its reference."""
    token_pixels, token_calls = _one_rl_step(monkeypatch)
    gspo_pixels, gspo_calls = _one_rl_step(monkeypatch, importance_sampling_level="sequence", delta=4.0)
    assert token_calls and len(gspo_calls) == len(token_calls)
    for (_, old_t, adv_t, _, kw_t, _), (_, old_s, adv_s, _, kw_s, _) in zip(token_calls, gspo_calls):
        assert torch.equal(old_t, old_s) and torch.equal(adv_t, adv_s)  # the same rollouts: only the loss differs
        assert (kw_t["importance_sampling_level"], kw_t["delta"]) == ("token", None)  # the defaults: as before
        assert (kw_s["importance_sampling_level"], kw_s["delta"]) == ("sequence", 4.0)
    assert (gspo_pixels - token_pixels).abs().max() > 1e-3  # measured 0.022: Adam's first step scales the change
    logps, old, adv, mask, kw, loss = gspo_calls[0]
    cfg = dict(
        loss_type=kw["loss_type"],
        beta=kw["beta"],
        epsilon_low=kw["epsilon_low"],
        epsilon_high=kw["epsilon_high"],
        max_completion_length=kw["max_completion_length"],
        use_bias_correction_kl=True,
        delta=4.0,
    )
    ref, num_items = kw["ref_per_token_logps"], mask.sum()
    trl_loss, trl_grad, _ = _trl_loss(
        trl_trainer_factory, logps, old, ref, adv, mask, num_items, importance_sampling_level="sequence", **cfg
    )
    _, ours_grad, _ = _ours(logps, old, ref, adv, mask, None, importance_sampling_level="sequence", **cfg)
    _, token_grad, _ = _trl_loss(
        trl_trainer_factory, logps, old, ref, adv, mask, num_items, importance_sampling_level="token", **cfg
    )
    assert abs(loss.item() - trl_loss.item()) <= 1e-6
    assert (ours_grad - trl_grad).abs().max().item() <= 1e-6
    # Measured: parity to 0.0; the token level's gradient is 6.7e-6 away (of a largest entry of 2.1e-2).
    assert (token_grad - trl_grad).abs().max().item() > 1e-6  # TRL's token level is another gradient


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "dr_grpo", "bnpo"])
def test_weighted_micro_batch_losses_sum_to_the_whole_batch_loss(loss_type):
    from art_lib.losses import micro_batch_weight, policy_loss

    g = torch.Generator().manual_seed(0)
    B, C = 10, 7
    logps = (torch.randn(B, C, generator=g) * 0.1 - 1).requires_grad_()
    old = logps.detach() + torch.randn(B, C, generator=g) * 0.05
    ref = logps.detach() + torch.randn(B, C, generator=g) * 0.05
    adv = torch.randn(B, generator=g)
    lengths = torch.tensor([7, 1, 3, 0, 5, 7, 2, 6, 4, 1])  # ragged, one row fully masked (e.g. overlong)
    mask = (torch.arange(C)[None] < lengths[:, None]).long()
    kw = dict(loss_type=loss_type, epsilon_low=0.2, epsilon_high=0.28, beta=0.04, max_completion_length=C)
    total = float(mask.sum())
    full, _ = policy_loss(logps, old, adv, mask, ref_per_token_logps=ref, num_items_in_batch=total, **kw)
    (full_grad,) = torch.autograd.grad(full, logps)
    parts, grad = 0.0, torch.zeros_like(logps)
    for a, b in [(0, 3), (3, 4), (4, 9), (9, 10)]:
        loss, _ = policy_loss(
            logps[a:b],
            old[a:b],
            adv[a:b],
            mask[a:b],
            ref_per_token_logps=ref[a:b],
            num_items_in_batch=total if loss_type == "dapo" else None,
            **kw,
        )
        w = micro_batch_weight(loss_type, b - a, B, float(mask[a:b].sum()), total)
        (g_part,) = torch.autograd.grad(loss * w, logps)
        parts, grad = parts + float(loss * w), grad + g_part
    assert abs(parts - float(full)) < 1e-6
    assert torch.allclose(grad, full_grad, atol=1e-7)
