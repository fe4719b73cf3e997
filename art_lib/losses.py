"""Loss functions for ART, LoRA and soft-prompt RL training: GRPO and DAPO as pure tensor functions.

The SFT loss is `forward.sft_nll` (summed NLL of the completion tokens through the trainer's log-prob path).

Every function here takes tensors and returns tensors; none touches a model, an optimiser or a process group.
The RL maths follows TRL 1.16's `GRPOTrainer` (`_compute_loss` and the advantage computation in
`_generate_and_score_completions`) and is checked against it in `tests/test_losses.py`. Gradient accumulation
and multi-process scaling are the trainer's job: the losses returned here are for one micro-batch, unscaled.

Shapes: `B` sequences, `T` tokens (`C` completion tokens), `V` vocabulary, `N = num_groups * group_size`.
"""

from __future__ import annotations

import torch

# The `loss_type` values `policy_loss` accepts; they differ only in how the per-token losses are aggregated.
LOSS_TYPES = ("grpo", "dapo", "dr_grpo", "bnpo")
SCALE_REWARDS = ("group", "batch", "none")
IMPORTANCE_SAMPLING_LEVELS = ("token", "sequence")


# --------------------------------------------------------------------------------------------------------------
# Advantages
# --------------------------------------------------------------------------------------------------------------


def group_advantages(rewards: torch.Tensor, group_size: int, scale: str = "group", eps: float = 1e-4) -> torch.Tensor:
    """Group-relative advantages `(r - mean_group) / (std + eps)` as in TRL's GRPOTrainer: (N,).

    `rewards` (N,) holds `N / group_size` groups of `group_size` consecutive completions of one prompt.
    The baseline is always the group mean; `scale` picks the divisor, like TRL's `scale_rewards`:

    - `"group"`: the std of each group (GRPO, DeepSeekMath).
    - `"batch"`: one std over all `N` rewards (PPO-Lite); the baseline is still the *group* mean.
    - `"none"`: no division, `r - mean_group` (Dr. GRPO: std scaling biases towards easy/hard prompts).

    The std is the unbiased one (`torch.std`, Bessel's correction), as TRL's `nanstd`; with a single element
    there is no std and TRL uses 0, so the advantages are `0 / eps = 0`. `eps` = 1e-4, TRL's constant, keeps
    groups whose rewards are all equal at advantage 0 instead of NaN.
    """
    if scale not in SCALE_REWARDS:
        raise ValueError(f"Unknown scale {scale!r}: expected one of {SCALE_REWARDS}")
    if rewards.dim() != 1 or rewards.numel() % group_size != 0:
        raise ValueError(f"rewards must be 1-D with a length divisible by group_size={group_size}")
    grouped = rewards.view(-1, group_size)  # (G, group_size)
    baseline = grouped.mean(dim=1).repeat_interleave(group_size)  # (N,)
    advantages = rewards - baseline  # (N,)
    if scale == "none":
        return advantages
    if scale == "group":
        std = grouped.std(dim=1).repeat_interleave(group_size) if group_size > 1 else torch.zeros_like(rewards)
    else:  # "batch"
        std = rewards.std().expand_as(rewards) if rewards.numel() > 1 else torch.zeros_like(rewards)
    return advantages / (std + eps)  # (N,)


# --------------------------------------------------------------------------------------------------------------
# Clipped policy-gradient losses (GRPO family)
# --------------------------------------------------------------------------------------------------------------


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `x` over the active entries of `mask` (broadcast), 0 when none is active: scalar."""
    mask = mask.expand_as(x) if x.shape[1] != 1 else torch.ones_like(x)
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def policy_loss(
    per_token_logps: torch.Tensor,
    old_per_token_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    completion_mask: torch.Tensor,
    *,
    loss_type: str = "dapo",
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.28,
    beta: float = 0.0,
    ref_per_token_logps: torch.Tensor | None = None,
    max_completion_length: int | None = None,
    num_items_in_batch: torch.Tensor | float | None = None,
    importance_sampling_level: str = "token",
    kl_bias_correction: bool = True,
    delta: float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped surrogate loss of GRPO/DAPO on completion tokens, as TRL 1.16's `GRPOTrainer._compute_loss`.

    Args:
        per_token_logps: (B, C) log-probs of the completion tokens under the current policy (with grad).
        old_per_token_logps: (B, C) log-probs under the policy that sampled them; `None` means on-policy
            (one optimisation step per generation), taken as `per_token_logps.detach()`: ratio 1, same gradient.
        advantages: (B,) or (B, C) advantages, e.g. from `group_advantages`.
        completion_mask: (B, C) 1 on completion tokens that carry loss, 0 on padding (and masked completions).
        loss_type: how per-token losses `l` (masked by `m`) are aggregated into one scalar:

            - `"grpo"`: per-sequence mean, then batch mean: `mean_i(sum_t l m / sum_t m)` (DeepSeekMath).
              Length-biased: a token of a short completion weighs more than one of a long completion.
            - `"dapo"`: token-level mean over every active token of the batch: `sum(l m) / num_items_in_batch`
              (DAPO). `num_items_in_batch` defaults to the local `sum(m)`; TRL passes the active-token count
              of the whole generation batch, gathered over processes, divided by `num_processes` and multiplied
              by `gradient_accumulation_steps / steps_per_generation`, so that summing the micro-batch losses
              of one accumulation window (and averaging over processes) gives the global token mean.
            - `"dr_grpo"`: `sum(l m) / (B * max_completion_length)`, a constant normaliser (Dr. GRPO);
              `max_completion_length` is required, the padded width `C` of a batch would not be constant.
            - `"bnpo"`: token-level mean over the active tokens of this (local) batch: `sum(l m) / sum(m)`.

            Anything else raises `ValueError`.
        epsilon_low, epsilon_high: the importance ratio is clipped to `[1 - epsilon_low, 1 + epsilon_high]`;
            `epsilon_high > epsilon_low` is DAPO's clip-higher (0.28). TRL's default is `epsilon_high =
            epsilon_low` (0.2).
        beta: weight of the per-token KL penalty to the frozen reference; 0 disables it (and the reference).
        ref_per_token_logps: (B, C) log-probs under the reference model; required when `beta != 0`.
        max_completion_length: the generation budget, for `"dr_grpo"`.
        num_items_in_batch: normaliser of `"dapo"` (see above).
        importance_sampling_level: `"token"` (one ratio per token) or `"sequence"` (GSPO: one ratio per
            sequence, the exp of the mean log-ratio over its active tokens).
        kl_bias_correction: multiply the KL term by the (differentiable) importance ratio, TRL's
            `use_bias_correction_kl` (default `True` in TRL 1.16, DeepSeek-V3.2). It changes the gradient
            even on-policy, where the ratio is 1 but its gradient is not 0.
        delta: optional upper bound on the unclipped ratio (two-sided clipping, INTELLECT-2); `None` disables.

    Returns:
        `(loss, metrics)`: the scalar loss and detached scalar tensors `clip_ratio/low_mean`,
        `clip_ratio/high_mean`, `clip_ratio/region_mean` (fraction of active tokens whose ratio the clip
        actually bounds: below `1 - epsilon_low` with a negative advantage, or above `1 + epsilon_high` with a
        positive one), `ratio_mean` (mean importance ratio) and, when `beta != 0`, `kl` (mean k3 KL).
    """
    _check_policy_loss_args(loss_type, importance_sampling_level, max_completion_length, beta, ref_per_token_logps)
    mask = completion_mask.to(per_token_logps.dtype)  # (B, C)
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)  # (B, 1): one advantage per sequence, broadcast over its tokens
    if old_per_token_logps is None:
        old_per_token_logps = per_token_logps.detach()  # on-policy: ratio 1, gradient of logp itself

    ratio = _importance_ratio(per_token_logps, old_per_token_logps, mask, importance_sampling_level)
    per_token_loss = _clipped_surrogate(ratio, advantages, epsilon_low, epsilon_high, delta)  # (B, C) or (B, 1)
    if beta != 0.0:
        per_token_kl = _k3_kl(per_token_logps, ref_per_token_logps, ratio if kl_bias_correction else None)
        per_token_loss = per_token_loss + beta * per_token_kl  # (B, C)
    loss = _aggregate(per_token_loss, mask, loss_type, max_completion_length, num_items_in_batch)

    metrics = _clip_metrics(ratio, advantages, mask, epsilon_low, epsilon_high)
    if beta != 0.0:
        with torch.no_grad():
            metrics["kl"] = _masked_mean(per_token_kl, mask)
    return loss, metrics


def _check_policy_loss_args(
    loss_type: str,
    importance_sampling_level: str,
    max_completion_length: int | None,
    beta: float,
    ref_per_token_logps: torch.Tensor | None,
) -> None:
    """Raise `ValueError` on a `policy_loss` setting it does not know or one missing what it needs."""
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"Unknown loss_type {loss_type!r}: expected one of {LOSS_TYPES}")
    if importance_sampling_level not in IMPORTANCE_SAMPLING_LEVELS:
        raise ValueError(
            f"Unknown importance_sampling_level {importance_sampling_level!r}: one of {IMPORTANCE_SAMPLING_LEVELS}"
        )
    if loss_type == "dr_grpo" and max_completion_length is None:
        raise ValueError("loss_type='dr_grpo' needs max_completion_length")
    if beta != 0.0 and ref_per_token_logps is None:
        raise ValueError("beta != 0 needs ref_per_token_logps")


def _importance_ratio(
    per_token_logps: torch.Tensor, old_per_token_logps: torch.Tensor, mask: torch.Tensor, level: str
) -> torch.Tensor:
    """`pi / pi_old` per token, (B, C), or per sequence (GSPO), (B, 1): the exp of the mean log-ratio over the
    active tokens of `mask` (B, C) of each sequence."""
    log_ratio = per_token_logps - old_per_token_logps  # (B, C)
    if level == "token":
        log_weights = log_ratio  # (B, C)
    else:
        log_weights = ((log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).unsqueeze(-1)  # (B, 1)
    return torch.exp(log_weights)  # (B, C) or (B, 1)


def _clipped_surrogate(
    ratio: torch.Tensor, advantages: torch.Tensor, epsilon_low: float, epsilon_high: float, delta: float | None
) -> torch.Tensor:
    """PPO's per-token loss `-min(r A, clip(r, 1 - epsilon_low, 1 + epsilon_high) A)`, with `r` first capped at
    `delta` when given: shape of `ratio * advantages`."""
    # PPO's pessimistic bound: the clipped term stops the gradient once the ratio has moved past the trust region
    # in the direction the advantage pushes it.
    clipped_ratio = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high)
    unclipped_ratio = ratio if delta is None else torch.clamp(ratio, max=delta)
    return -torch.min(unclipped_ratio * advantages, clipped_ratio * advantages)


def _k3_kl(
    per_token_logps: torch.Tensor, ref_per_token_logps: torch.Tensor, ratio: torch.Tensor | None
) -> torch.Tensor:
    """Per-token k3 estimate of KL(pi || pi_ref), times the importance `ratio` when given (bias correction): (B, C)."""
    # k3 estimator of KL(pi || pi_ref) (Schulman): unbiased, always >= 0, low variance.
    ref_log_ratio = ref_per_token_logps - per_token_logps  # (B, C)
    per_token_kl = torch.exp(ref_log_ratio) - ref_log_ratio - 1  # (B, C)
    if ratio is not None:
        per_token_kl = per_token_kl * ratio  # samples come from pi_old, so reweight to pi
    return per_token_kl


def _aggregate(
    per_token_loss: torch.Tensor,
    mask: torch.Tensor,
    loss_type: str,
    max_completion_length: int | None,
    num_items_in_batch: torch.Tensor | float | None,
) -> torch.Tensor:
    """One scalar from the per-token losses (B, C) or (B, 1) on the active tokens of `mask` (B, C), as
    `loss_type` says (see `policy_loss`)."""
    masked_sum = (per_token_loss * mask).sum()  # broadcasts (B, 1) to (B, C) in the sequence-level case
    if loss_type == "grpo":
        loss = ((per_token_loss * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    elif loss_type == "dapo":
        normaliser = mask.sum() if num_items_in_batch is None else torch.as_tensor(num_items_in_batch)
        loss = masked_sum / normaliser.to(masked_sum).clamp(min=1.0)
    elif loss_type == "dr_grpo":
        loss = masked_sum / (per_token_loss.size(0) * max_completion_length)
    else:  # "bnpo"
        loss = masked_sum / mask.sum().clamp(min=1.0)
    return loss


@torch.no_grad()
def _clip_metrics(
    ratio: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, epsilon_low: float, epsilon_high: float
) -> dict[str, torch.Tensor]:
    """`policy_loss`'s detached clip fractions and mean importance ratio over the active tokens of `mask`."""
    is_low = (ratio < 1 - epsilon_low) & (advantages < 0)
    is_high = (ratio > 1 + epsilon_high) & (advantages > 0)
    return {
        "clip_ratio/low_mean": _masked_mean(is_low.to(mask.dtype), mask),
        "clip_ratio/high_mean": _masked_mean(is_high.to(mask.dtype), mask),
        "clip_ratio/region_mean": _masked_mean((is_low | is_high).to(mask.dtype), mask),
        "ratio_mean": _masked_mean(ratio, mask),
    }


def micro_batch_weight(loss_type: str, rows: int, total_rows: int, tokens: float, total_tokens: float) -> float:
    """Factor turning `policy_loss` of a micro-batch of rows into its share of the whole batch's loss.

    The weighted micro-batch losses sum to the loss of all rows at once (so do their gradients):
    `"grpo"` and `"dr_grpo"` average over sequences (weight `rows / total_rows`); `"bnpo"` divides by
    the micro-batch's own tokens (weight `tokens / total_tokens`); `"dapo"` is already normalised by the
    whole batch when `num_items_in_batch` is its active-token count (weight 1).
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"Unknown loss_type {loss_type!r}: expected one of {LOSS_TYPES}")
    if loss_type in ("grpo", "dr_grpo"):
        return rows / total_rows
    if loss_type == "bnpo":
        return tokens / total_tokens if total_tokens else 0.0
    return 1.0


# --------------------------------------------------------------------------------------------------------------
# DAPO's other parts: dynamic sampling, overlong filtering, soft overlong punishment
# --------------------------------------------------------------------------------------------------------------


def dynamic_sampling_mask(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """Which groups to keep under DAPO's dynamic sampling: those whose rewards are not all equal: bool (G,).

    A group whose completions all get the same reward has zero advantage everywhere, so it adds no gradient but
    still dilutes the batch. DAPO drops such groups and samples more prompts until the batch is full again; that
    over-sampling loop lives in the trainer, this only decides which groups survive.
    """
    grouped = rewards.view(-1, group_size)  # (G, group_size)
    return grouped.amax(dim=1) != grouped.amin(dim=1)  # (G,)


def overlong_mask(completion_mask: torch.Tensor, truncated: torch.Tensor) -> torch.Tensor:
    """Zero the loss mask of truncated completions (DAPO's overlong filtering): (B, C), dtype of the mask.

    A completion cut at the length budget never reached its answer, so its reward is noise about its reasoning;
    TRL's `mask_truncated_completions` does the same.
    """
    keep = (~truncated.bool()).unsqueeze(1)  # (B, 1)
    return completion_mask * keep.to(completion_mask.dtype)  # (B, C)


def soft_overlong_penalty(lengths: torch.Tensor, max_completion_length: int, cache_length: int) -> torch.Tensor:
    """DAPO's soft overlong punishment (Eq. 13), a reward to add to the task reward: (B,).

    With `L` = `lengths`, `Lmax` = `max_completion_length`, `Lcache` = `cache_length`:
    0 if `L <= Lmax - Lcache`; `(Lmax - Lcache - L) / Lcache` in `(Lmax - Lcache, Lmax]` (0 to -1 linearly);
    -1 beyond `Lmax`. Same values as TRL's `trl.rewards.get_soft_overlong_punishment`.
    """
    lengths = lengths.to(torch.float32)  # (B,)
    threshold = max_completion_length - cache_length
    # cache_length = 0 has no buffer: the linear branch is empty, so guard its division.
    ramp = (threshold - lengths) / max(cache_length, 1)  # (B,)
    penalty = torch.where(lengths <= threshold, torch.zeros_like(lengths), ramp)
    return torch.where(lengths > max_completion_length, torch.full_like(lengths, -1.0), penalty)  # (B,)
