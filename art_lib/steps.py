"""One optimisation step's loss, backpropagated: SFT on target completions, or GRPO / DAPO on sampled groups.

`train.train` is the loop around these; each function here computes the loss of one micro-step of the
batch (`scale` = 1 / grad_accum) in micro-batches of `micro_batch_size` rows, running the vision tower
once and backpropagating into it once (`_shared_leaf` / `_backward_shared`), and returns its metrics.
"""

from __future__ import annotations

import dataclasses
import math
import random

import numpy as np
import torch

from . import losses
from .config import TrainConfig
from .forward import completion_logprobs, sft_nll, shared_batch_prefix
from .hf_generator import HFGenerator
from .models import gradient_checkpointing
from .preprocess import image_tokens
from .prompting import encode, pad_batch
from .registry import default_sft_target, get_benchmark
from .rollout import Rollout, row_token_ids, sample_rollout


def reward_tensor(values, n: int) -> torch.Tensor:
    """A reward function's output as a float32 tensor of `n` values; wrong types or counts raise."""
    values = list(values) if not isinstance(values, torch.Tensor) else values.detach().reshape(-1).tolist()
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, (int, float, np.number))]
    if bad:
        raise TypeError(f"the reward function must return numbers, got {type(bad[0]).__name__} {bad[0]!r}")
    if len(values) != n:
        raise ValueError(f"the reward function returned {len(values)} rewards for {n} completions")
    return torch.tensor([float(v) for v in values], dtype=torch.float32)


def _detached(image: dict | None) -> dict | None:
    return None if image is None else {k: (v.detach() if isinstance(v, torch.Tensor) else v) for k, v in image.items()}


def _shared_leaf(embeds: torch.Tensor | None) -> torch.Tensor | None:
    """The step's image embeddings as a leaf: micro-batch backwards stop here and accumulate its `.grad`."""
    if embeds is None or not embeds.requires_grad:
        return embeds
    return embeds.detach().requires_grad_()


def _backward_shared(embeds: torch.Tensor | None, leaf: torch.Tensor | None) -> None:
    """Backpropagate the accumulated gradient of the image embeddings once, through the vision tower to the pixels."""
    if leaf is not embeds and leaf.grad is not None:
        embeds.backward(leaf.grad)


def _step_prefix(model, batch, image, leaf, c: TrainConfig):
    """With `c.shared_prefix`: the tokens all the step's rows share, run once, and the leaf micro-batches use.

    Returns (prefix, what to pass as `shared_prefix=`); `prefix.backward(leaf)` after the micro-batches
    sends their accumulated gradient through the prefix pass once (into the image leaf's `.grad`).
    """
    prefix = shared_batch_prefix(model, batch, image, leaf) if c.shared_prefix else None
    if prefix is None:
        return None, c.shared_prefix
    return prefix, prefix.leaf()


def _row_chunks(n: int, size: int | None) -> list[tuple[int, int]]:
    size = size or n
    return [(i, min(i + size, n)) for i in range(0, n, size)]


def sft_step(
    m, processor, texts: list[str], exs: list[dict], c: TrainConfig, *, scale: float, accelerator=None
) -> dict:
    """Mean completion-token NLL of the rows, backpropagated `c.micro_batch_size` rows at a time."""
    model, image, embeds = m.policy()  # the vision tower runs here, once for all micro-batches
    target = get_benchmark(c.benchmark).sft_target if c.benchmark else default_sft_target  # the benchmark's own
    batch = encode(
        processor, texts, [target(e) for e in exs], num_image_tokens=image_tokens(image, processor.image_processor)
    )
    batch = batch.to(next(model.parameters()).device)
    local = batch.completion_mask.sum().float()
    tokens, world = local, 1
    if accelerator is not None:  # normalise by the tokens of the whole batch, on every process
        tokens = accelerator.reduce(local.to(accelerator.device), reduction="sum")
        world = accelerator.num_processes
    norm = tokens.clamp(min=1).to(batch.input_ids.device) / world
    leaf, total = _shared_leaf(embeds), 0.0
    prefix, shared = _step_prefix(model, batch, image, leaf, c)
    for a, b in _row_chunks(len(batch), c.micro_batch_size):
        sub = batch.rows(a, b)
        with gradient_checkpointing(model, c.gradient_checkpointing):
            part = sft_nll(model, sub, image, image_embeds=leaf, shared_prefix=shared) / norm
        if part.requires_grad:  # a micro-batch without completion tokens has no graph
            (part * scale).backward()
        total += float(part.detach())
    if prefix is not None:
        prefix.backward(shared)
    _backward_shared(embeds, leaf)
    return {"loss": total, "tokens": float(local)}


def rl_step(
    m, processor, examples, texts, idx, c: TrainConfig, *, reward_fn, scale: float, accelerator=None, engine=None
) -> dict:
    """One RL micro-step: sample groups for the prompts `idx` (HF, or `engine`), reward them, keep the informative
    groups (DAPO's dynamic sampling), then the policy loss, backpropagated in micro-batches of rows."""
    model, image, embeds = m.policy()  # the vision tower runs here, once for the whole step
    rollout = _rollout_fn(model, m, processor, examples, texts, c, reward_fn, engine, _detached(image), embeds)
    r, rewards = rollout(idx)
    raw_reward = float(rewards.mean())
    if not torch.isfinite(rewards).all():  # a NaN reward would make every group look uninformative
        _join_token_count(accelerator, c)
        return {"loss": None, "reward": raw_reward, "nonfinite": "reward function"}
    if c.dynamic_sampling:
        r, rewards, skipped = _dynamic_sampling(rollout, processor, idx, len(examples), r, rewards, c)
        if skipped:
            _join_token_count(accelerator, c)
            return {"loss": None, "reward": raw_reward, **skipped}
    loss_sum, metrics, batch = _policy_backward(m, model, image, embeds, r, rewards, c, scale, accelerator)
    out = {
        "loss": loss_sum,
        "reward": raw_reward,
        "reward_kept": float(rewards.mean()),
        "completion_length": float(batch.completion_mask.sum(1).float().mean()),
        "truncated": float(batch.truncated.float().mean()),
    }
    out |= metrics
    if c.dynamic_sampling:
        out["groups_kept"] = float(len(rewards) // c.num_generations)
    return out


def _join_token_count(accelerator, c: TrainConfig) -> None:
    """A process that computes no loss this micro-step still adds its 0 tokens to DAPO's count of the whole batch's
    tokens (`_policy_backward`), so every process makes the same collective calls (else gloo/NCCL mismatch)."""
    if accelerator is not None and c.loss_type == "dapo":
        accelerator.reduce(torch.zeros((), device=accelerator.device), reduction="sum")


def _rollout_fn(model, m, processor, examples, texts, c: TrainConfig, reward_fn, engine, sample_image, embeds):
    """`rollout(ids) -> (Rollout, rewards)`: the prompts `ids` sampled `num_generations` times each and rewarded.

    Sampled by `engine` (a `generation.Generator`: vLLM samples the servable form, 8-bit artwork or adapter, its
    weights untouched) or, without one, by the HF backend on `model` (`hf_generator.HFGenerator`)."""
    generator = engine
    if generator is None:
        generator = HFGenerator(model, processor, batch_size=c.generation_batch_size, shared_prefix=c.shared_prefix)
    kw = dict(method=m, num_generations=c.num_generations, image=sample_image, max_new_tokens=c.max_completion_length)
    kw.update(image_embeds=None if embeds is None else embeds.detach(), temperature=c.temperature, top_p=c.top_p)
    kw.update(micro_batch_size=c.micro_batch_size, shared_prefix=c.shared_prefix)

    def rollout(ids: list[int]) -> tuple[Rollout, torch.Tensor]:
        r = sample_rollout(generator, model, processor, [texts[i] for i in ids], [examples[i] for i in ids], **kw)
        rew = reward_tensor(reward_fn(r.completions, r.examples), len(r.completions))
        if c.overlong_cache:
            lengths = r.batch.completion_mask.sum(1)
            rew = rew + losses.soft_overlong_penalty(lengths.cpu(), c.max_completion_length, c.overlong_cache)
        return r, rew

    return rollout


def _dynamic_sampling(rollout, processor, idx: list[int], n_examples: int, r, rewards, c: TrainConfig):
    """DAPO's dynamic sampling: keep the groups whose rewards differ, sampling more prompts (at most
    `max_resample_rounds` rounds) until the micro-step has as many as it asked for. Returns (rollout, rewards, {})
    or (None, None, why the step is skipped)."""
    G = c.num_generations
    keep = losses.dynamic_sampling_mask(rewards, G)
    ids, rolls, rews = [i for i, k in zip(idx, keep) if k], [r], [rewards]
    kept = [keep]
    for _ in range(c.max_resample_rounds):
        if len(ids) >= len(idx):
            break
        extra = [random.randrange(n_examples) for _ in range(len(idx) - len(ids))]
        r2, rew2 = rollout(extra)
        if not torch.isfinite(rew2).all():
            return None, None, {"nonfinite": "reward function"}
        k2 = losses.dynamic_sampling_mask(rew2, G)
        ids += [i for i, k in zip(extra, k2) if k]
        rolls.append(r2), rews.append(rew2), kept.append(k2)
    r, rewards = select_groups(processor, rolls, rews, kept, G, limit=len(idx))
    if r is None:  # every group had equal rewards: nothing to learn from at this step
        return None, None, {"groups_kept": 0.0}
    return r, rewards, {}


def _policy_backward(m, model, image, embeds, r, rewards, c: TrainConfig, scale: float, accelerator):
    """The policy loss of the rollout `r` (advantages from `rewards`), backpropagated in micro-batches of rows with
    the step's own normalisers, so the chunks add up to the unchunked loss. Returns (loss, metrics, batch)."""
    G, max_new, loss_type = c.num_generations, c.max_completion_length, c.loss_type
    device = next(model.parameters()).device
    adv = losses.group_advantages(rewards, G, scale=c.scale_rewards).to(device)
    batch = r.batch.to(device)
    old = r.old_logps.to(device)
    cmask = batch.completion_mask
    if c.overlong_filter:
        cmask = losses.overlong_mask(cmask, batch.truncated)
    # Normalisers of the whole step, so that micro-batches add up to the unchunked loss.
    tokens = float(cmask.sum())
    num_items = tokens
    if accelerator is not None and loss_type == "dapo":
        # DAPO normalises by the active tokens of the whole batch; gradients are then averaged.
        total = accelerator.reduce(cmask.sum().float().to(accelerator.device), reduction="sum").cpu()
        num_items = float(total) / accelerator.num_processes
    ref_model = ref_image = ref_embeds = None
    if c.beta:
        with torch.no_grad():
            ref_model, ref_image, ref_embeds = m.reference()
    leaf, loss_sum, metrics = _shared_leaf(embeds), 0.0, {}
    prefix, shared = _step_prefix(model, batch, image, leaf, c)
    for a, b in _row_chunks(len(batch), c.micro_batch_size):
        sub = batch.rows(a, b)
        with gradient_checkpointing(model, c.gradient_checkpointing):
            logps = completion_logprobs(
                model, sub, image, image_embeds=leaf, temperature=c.temperature, shared_prefix=shared
            )
        ref = None
        if c.beta:
            with torch.no_grad():
                ref = completion_logprobs(
                    ref_model,
                    sub,
                    ref_image,
                    image_embeds=ref_embeds,
                    temperature=c.temperature,
                    shared_prefix=c.shared_prefix,
                )
        loss, parts = losses.policy_loss(
            logps,
            old[a:b],
            adv[a:b],
            cmask[a:b],
            loss_type=loss_type,
            epsilon_low=c.epsilon_low,
            epsilon_high=c.epsilon_high,
            beta=c.beta,
            ref_per_token_logps=ref,
            max_completion_length=max_new,
            num_items_in_batch=num_items if loss_type == "dapo" else None,
            importance_sampling_level=c.importance_sampling_level or "token",
            delta=c.delta,
        )
        chunk_tokens = float(cmask[a:b].sum())
        loss = loss * losses.micro_batch_weight(loss_type, b - a, len(batch), chunk_tokens, tokens)
        if loss.requires_grad:
            (loss * scale).backward()
        loss_sum += float(loss.detach())
        for k, v in parts.items():  # token-weighted means over the micro-batches
            metrics[k] = metrics.get(k, 0.0) + float(v) * chunk_tokens / max(tokens, 1.0)
    if prefix is not None:
        prefix.backward(shared)
    _backward_shared(embeds, leaf)
    return loss_sum, metrics, batch


def select_groups(
    processor, rolls: list[Rollout], rews: list[torch.Tensor], kept: list[torch.Tensor], G: int, limit: int
):
    """Concatenate the informative groups of several rollout rounds into one batch (at most `limit` groups)."""
    prompt_ids, comp_ids, trunc, comps, exs, old, rewards = [], [], [], [], [], [], []
    for r, rew, keep in zip(rolls, rews, kept):
        for g, k in enumerate(keep.tolist()):
            if not k or len(rewards) >= limit * G:
                continue
            for j in range(g * G, (g + 1) * G):
                p, comp = row_token_ids(r.batch, j)
                n = len(comp)
                prompt_ids.append(p), comp_ids.append(comp)
                trunc.append(bool(r.batch.truncated[j]))
                comps.append(r.completions[j]), exs.append(r.examples[j])
                old.append(r.old_logps[j, :n]), rewards.append(float(rew[j]))
    if not rewards:
        return None, None
    batch = pad_batch(processor, prompt_ids, comp_ids, trunc)
    C = batch.completion_ids.shape[1]
    old_t = torch.zeros(len(old), C)
    for i, o in enumerate(old):
        old_t[i, : len(o)] = o
    return Rollout(batch=batch, completions=comps, examples=exs, old_logps=old_t), torch.tensor(rewards)


# ---------------------------------------------------------------------- several processes (accelerate)


class ShareSeeds:
    """A generator for one process's share of each micro-batch, which starts at prompt `first` of the whole.

    `Sampling.seed` seeds prompt i with seed + i * n; shifting it by `first * n` seeds each prompt as a
    one-process run seeds it, so the rollouts (and the run) do not depend on the number of processes.
    """

    def __init__(self, generator, first: int) -> None:
        self.generator, self.first, self.adapters = generator, first, generator.adapters

    def generate(self, prompts, *, image=None, adapter=None, sampling):
        if sampling.seed is not None:
            sampling = dataclasses.replace(sampling, seed=sampling.seed + self.first * sampling.n)
        return self.generator.generate(prompts, image=image, adapter=adapter, sampling=sampling)

    def close(self) -> None:
        self.generator.close()


def reduce_across_processes(params, logs: list[dict], bad_source: str | None, computed: bool, accelerator):
    """Average gradients, the logged losses and rewards (each process's share of the batch is the same size), and
    agree on the step: returns (what went wrong on any process or None, whether any process computed a loss).
    Every process then steps or skips alike: one whose groups all tied (DAPO) still applies the others' average."""
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        p.grad = accelerator.reduce(p.grad, reduction="mean")
    flags = torch.tensor([float(bad_source is not None), float(computed)], device=accelerator.device)
    bad_anywhere, computed_anywhere = (float(x) for x in accelerator.reduce(flags, reduction="sum"))
    if bad_anywhere and bad_source is None:
        bad_source = "reward function"  # it happened on another process
    for log in logs:  # report the whole batch's loss and reward, not this process's share
        for key in ("loss", "reward") if "reward" in log else ("loss",):  # every process logs the same keys
            # a process without a loss (its DAPO groups all tied: NaN in the log) adds 0, the share it had of the
            # whole batch's normalised loss; the loss is NaN only when no process had one
            absent = key == "loss" and not math.isfinite(log[key])
            pair = [0.0 if absent else log[key] / accelerator.num_processes, float(not absent)]
            total, present = accelerator.reduce(torch.tensor(pair, device=accelerator.device), reduction="sum").tolist()
            log[key] = total if present else float("nan")
    return bad_source, bool(computed_anywhere)


def non_finite_loss(computed: list[float]) -> str | None:
    """ "loss" when a micro-batch's loss was not finite, else None."""
    return "loss" if not all(math.isfinite(x) for x in computed) else None


def non_finite_gradient(params: list[torch.Tensor]) -> str | None:
    """ "gradient" when the step's gradient is missing or not finite, else None."""
    grads = [p.grad for p in params if p.grad is not None]
    return None if grads and all(torch.isfinite(g).all() for g in grads) else "gradient"
