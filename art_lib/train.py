"""One training loop for ART, LoRA and soft prompts, with SFT, GRPO or DAPO objectives.

The methods differ only in which parameters are trainable (see `methods.py`): data order,
batching, objective, rewards, optimiser, schedule and evaluation hook are the same code for all,
so an ART-vs-LoRA comparison is fair by construction.

Deliberate departures from the papers we follow:
1. One policy update per rollout batch (TRL's default `num_iterations=1`): the importance ratio is
   computed against the log-probs recorded at sampling time, so it is 1 up to numerical noise.
2. The KL reference of every method is its own starting point (seed image, initial soft prompt,
   LoRA switched off), so `beta > 0` pulls each method back to where it began.
3. DAPO's dynamic sampling draws its extra prompts at random from the training set (seeded), with a
   cap on the rounds; if the cap is hit, the step uses the informative groups it has.
"""

from __future__ import annotations

import math
import random
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from . import losses
from .checkpoint import Checkpointer
from .checkpoint import rng_state as _rng_state
from .checkpoint import set_rng_state as _set_rng_state
from .forward import completion_logprobs
from .methods import METHODS, make_method, trainable_parameter_count
from .pixel_prompt import PixelPrompt
from .preprocess import num_visual_tokens
from .prompting import encode, example_text, pad_batch
from .rollout import Rollout, generate_rollouts
from .style import style_active, style_loss

OBJECTIVES = ("sft", "grpo", "dapo")


@dataclass
class TrainResult:
    """What a run returns: its history, the trained method (artwork / adapter) and its size."""

    history: pd.DataFrame
    method: object
    trainable_parameters: int
    config: dict = field(default_factory=dict)

    @property
    def artwork(self) -> PixelPrompt | None:
        return getattr(self.method, "artwork", None)


class NonFiniteLossError(RuntimeError):
    """Raised when too many consecutive steps have a non-finite reward, loss or gradient."""


def reward_tensor(values, n: int) -> torch.Tensor:
    """A reward function's output as a float32 tensor of `n` values; wrong types or counts raise."""
    values = list(values) if not isinstance(values, torch.Tensor) else values.detach().reshape(-1).tolist()
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, (int, float, np.number))]
    if bad:
        raise TypeError(f"the reward function must return numbers, got {type(bad[0]).__name__} {bad[0]!r}")
    if len(values) != n:
        raise ValueError(f"the reward function returned {len(values)} rewards for {n} completions")
    return torch.tensor([float(v) for v in values], dtype=torch.float32)


def check_positive_ints(**counts) -> None:
    """Counts such as `grad_accum=0` fail here, by name, instead of deep inside the loop."""
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_context(lengths: list[int], context: int, ids: list) -> None:
    """Prompts (image tokens included) must fit the model's context: a truncated prompt trains on nonsense."""
    over = [(i, n) for i, n in zip(ids, lengths) if n >= context]
    if over:
        i, n = max(over, key=lambda x: x[1])
        raise ValueError(f"{len(over)} prompt(s) do not fit the model's context of {context} tokens "
                         f"(longest: example {i!r}, {n} tokens); shorten them or drop them")


def _releases_checkpoint(fn):
    """Release the checkpoint folder's lock when `train` returns or raises (unless the caller opened it)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, checkpoint: Checkpointer | None = None, **kw):
        opened_by_caller = checkpoint is not None and checkpoint.is_open
        try:
            return fn(*args, checkpoint=checkpoint, **kw)
        finally:
            if checkpoint is not None and not opened_by_caller:
                checkpoint.close()
    return wrapper


def sft_completion(example: dict) -> str:
    """The SFT target: `meta["target"]` when the loader gives one, else `Answer: <answer>`."""
    meta = example.get("meta") or {}
    return meta["target"] if "target" in meta else f"Answer: {example['answer']}"


def batch_indices(step: int, micro: int, *, n: int, batch_size: int, grad_accum: int, seed: int) -> list[int]:
    """Example indices of one micro-batch: a pure function of (step, micro), so resuming needs no sampler state."""
    start = (step * grad_accum + micro) * batch_size
    out = []
    for pos in range(start, start + batch_size):
        epoch, i = divmod(pos, n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        out.append(int(perm[i]))
    return out


def _lr_lambda(schedule: str, steps: int, warmup: int):
    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        if schedule == "cosine":
            t = (step - warmup) / max(1, steps - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
        if schedule == "linear":
            return max(0.0, 1 - (step - warmup) / max(1, steps - warmup))
        raise ValueError(f"unknown lr_schedule {schedule!r}; choose constant, cosine or linear")
    return f


def _default_reward(benchmark: str | None):
    if benchmark is None:
        raise ValueError("an RL objective needs reward_fn=... or benchmark=<name> to pick its scorer")
    from .rewards import get_scorer

    scorer = get_scorer(benchmark)
    return lambda completions, examples: [float(scorer(c, e)) for c, e in zip(completions, examples)]


@_releases_checkpoint
def train(model, processor, examples: list[dict], *, method: str = "art", objective: str = "sft",
          artwork: PixelPrompt | None = None, image_size: int | tuple[int, int] = 256, seed_icon: str = "math",
          steps: int = 100, batch_size: int = 8, grad_accum: int = 1, lr: float | None = None,
          lr_schedule: str = "constant", warmup_steps: int = 0, max_grad_norm: float | None = 1.0,
          weight_decay: float = 0.0, lora_rank: int = 8, lora_alpha: float | None = None, lora_dropout: float = 0.0,
          num_generations: int = 8, max_completion_length: int = 256, temperature: float = 1.0,
          top_p: float = 1.0, loss_type: str | None = None, beta: float = 0.0, epsilon_low: float = 0.2,
          epsilon_high: float | None = None, scale_rewards: str = "group", dynamic_sampling: bool | None = None,
          max_resample_rounds: int = 3, overlong_filter: bool | None = None, overlong_cache: int = 0,
          reward_fn=None, benchmark: str | None = None, seed: int = 0, eval_fn=None, eval_every: int = 0,
          checkpoint: Checkpointer | None = None, max_nonfinite: int = 3, accelerator=None,
          style_l2: float = 0.0, style_tv: float = 0.0, style_ssim: float = 0.0,
          style_mask: torch.Tensor | None = None, freeze_mask: torch.Tensor | None = None, eot=None,
          init_state: dict | None = None, progress: bool = True) -> TrainResult:
    """Train one method on `examples` with one objective; returns history and the trained method.

    Style terms (ART only; `style.py`) pull the artwork toward its seed icon: `style_l2` (pixel L2),
    `style_tv` (total variation), `style_ssim` (1 - SSIM), optionally within `style_mask`;
    `freeze_mask` keeps a region of the seed fixed; `eot` (a `transforms.EOT`) trains on random
    transformations of the artwork (robustness to JPEG, resizing, colour). All off by default.

    `examples` are `{"id", "prompt", "answer", "meta"}` dicts (see `data.py`). ART and soft prompts
    show the image with every prompt; LoRA sees the same prompts without it. `eval_fn(method, step)`
    may return a dict of metrics added to the history. With `checkpoint`, state is saved every N
    steps and a rerun resumes from the newest checkpoint, ending bit-identical to an uninterrupted run.

    `init_state` (a trained method's `state_dict()`, e.g. from an SFT warm start) sets the trainable
    parameters before the first step; the optimiser starts fresh, and the KL reference stays the
    method's untrained start (seed image, LoRA off, seed embeddings).
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose one of {OBJECTIVES}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    if not examples:
        raise ValueError("no training examples")
    check_positive_ints(steps=steps, batch_size=batch_size, grad_accum=grad_accum, num_generations=num_generations,
                        max_nonfinite=max_nonfinite)
    rl = objective != "sft"
    loss_type = loss_type or ("dapo" if objective == "dapo" else "grpo")
    if loss_type not in losses.LOSS_TYPES:
        raise ValueError(f"unknown loss_type {loss_type!r}; choose one of {losses.LOSS_TYPES}")
    epsilon_high = epsilon_high if epsilon_high is not None else (0.28 if objective == "dapo" else epsilon_low)
    dynamic_sampling = (objective == "dapo") if dynamic_sampling is None else dynamic_sampling
    overlong_filter = (objective == "dapo") if overlong_filter is None else overlong_filter
    lr = lr if lr is not None else {"art": 1e-2, "soft_prompt": 1e-2, "lora": 1e-3}[method]
    reward_fn = reward_fn or (_default_reward(benchmark) if rl else None)
    config = {k: v for k, v in locals().items() if isinstance(v, (int, float, str, bool, type(None)))}
    if checkpoint is not None:  # what a resume must match; computed before any adapter is attached
        config["model_fingerprint"] = model_fingerprint(model)
        config["examples_fingerprint"] = _examples_fingerprint(examples)

    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    if artwork is None and method != "lora":
        artwork = PixelPrompt.from_icon(seed_icon, image_size)
    m = make_method(method, model, processor, artwork=artwork, lora_rank=lora_rank, lora_alpha=lora_alpha,
                    lora_dropout=lora_dropout, seed=seed,
                    eot=eot, freeze_mask=freeze_mask)
    if init_state is not None:
        m.load_state_dict(init_state)
    styled = style_active(style_l2, style_tv, style_ssim)
    if styled and method != "art":
        raise ValueError("style terms act on pixels: they apply to method 'art' only")
    params = m.parameters()
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(lr_schedule, steps, warmup_steps))
    with_image = method != "lora"
    texts = [example_text(processor, ex, image=with_image) for ex in examples]
    world, rank = (accelerator.num_processes, accelerator.process_index) if accelerator else (1, 0)
    if batch_size % world:
        raise ValueError(f"batch_size {batch_size} must be divisible by the {world} processes")
    image_tokens = num_visual_tokens(*artwork.size, processor.image_processor) if with_image else 0
    check_context([len(processor.tokenizer(t, add_special_tokens=False)["input_ids"]) + image_tokens for t in texts],
                  _context_length(model), [e.get("id", i) for i, e in enumerate(examples)])

    history: list[dict] = []
    start, nonfinite = 0, 0
    if checkpoint is not None and rank == 0:
        checkpoint.open()  # this run owns the folder; an unwritable one fails here, before any step
    check = (lambda saved: _check_resumable(saved, config, checkpoint.folder))  # noqa: E731
    if checkpoint is not None and (state := checkpoint.latest(check=check)) is not None:
        m.load_state_dict(state["method"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        history, start, nonfinite = state["history"], state["step"], state["nonfinite"]

    def micro_step(idx: list[int]) -> dict:
        idx = idx[rank * len(idx) // world:(rank + 1) * len(idx) // world]  # this process's share
        exs = [examples[i] for i in idx]
        if not rl:
            out = _sft_step(m, processor, [texts[i] for i in idx], exs)
            tokens = torch.tensor(out["tokens"])
            if accelerator is not None:  # normalise by the tokens of the whole batch, on every process
                tokens = accelerator.reduce(tokens.to(accelerator.device), reduction="sum").cpu()
            out["loss"] = out.pop("nll_sum") / tokens.clamp(min=1) * world
            return out
        return _rl_step(m, processor, examples, texts, idx, reward_fn=reward_fn, G=num_generations,
                        max_new=max_completion_length, temperature=temperature, top_p=top_p, loss_type=loss_type,
                        beta=beta, eps_low=epsilon_low, eps_high=epsilon_high, scale=scale_rewards,
                        dynamic=dynamic_sampling, rounds=max_resample_rounds, overlong=overlong_filter,
                        cache=overlong_cache, accelerator=accelerator)

    bar = _progress(range(start, steps), progress and rank == 0, initial=start, total=steps, desc=f"{method}/{objective}")
    for step in bar:
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        logs: list[dict] = []
        bad_source, computed = None, []  # what gave a non-finite value; losses of micro-batches that had one
        for micro in range(grad_accum):
            idx = batch_indices(step, micro, n=len(examples), batch_size=batch_size, grad_accum=grad_accum, seed=seed)
            out = micro_step(idx)
            bad_source = bad_source or out.pop("nonfinite", None)
            if styled and out["loss"] is not None:
                extra, terms = style_loss(m.artwork.pixels(), m.initial, l2=style_l2, tv=style_tv, ssim=style_ssim,
                                          mask=style_mask)
                out = out | terms | {"loss": out["loss"] + extra}
            if out["loss"] is not None:
                (out["loss"] / grad_accum).backward()
                computed.append(_item(out["loss"]))
            logs.append({k: v for k, v in out.items() if k != "loss"} | {"loss": _item(out["loss"])})
        if accelerator is not None:
            _all_reduce_grads(params, accelerator)
            flag = torch.tensor(float(bad_source is not None), device=accelerator.device)
            if float(accelerator.reduce(flag, reduction="sum")) and bad_source is None:
                bad_source = "reward function"  # on another process: every process must skip the same steps
            for log in logs:  # report the whole batch's loss, not this process's share
                loss_t = torch.tensor(log["loss"] / world, device=accelerator.device)
                log["loss"] = float(accelerator.reduce(loss_t, reduction="sum"))
        row = {"step": step + 1, "method": method, "objective": objective, "lr": sched.get_last_lr()[0]}
        row |= {k: float(np.mean([l[k] for l in logs if l.get(k) is not None] or [np.nan])) for k in logs[0]}
        grads = [p.grad for p in params if p.grad is not None]
        if bad_source is None and computed and not all(math.isfinite(x) for x in computed):
            bad_source = "loss"
        if bad_source is None and computed and not (grads and all(torch.isfinite(g).all() for g in grads)):
            bad_source = "gradient"
        if bad_source is None and not computed:
            # Nothing to learn from (e.g. every DAPO group had equal rewards): not an error.
            row["grad_norm"], row["skipped"] = float("nan"), True
        elif bad_source is None:
            norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm if max_grad_norm else float("inf"))
            opt.step()
            m.after_step()
            row["grad_norm"], nonfinite, row["skipped"] = float(norm), 0, False
        else:
            # Keep the last good parameters; a run of bad steps means the setup is broken.
            nonfinite += 1
            row["grad_norm"], row["skipped"], row["nonfinite"] = float("nan"), True, bad_source
            if nonfinite >= max_nonfinite:
                raise NonFiniteLossError(
                    f"{nonfinite} consecutive steps with a non-finite value (last at step {step + 1}, from the "
                    f"{bad_source}); " + ("check the reward function" if bad_source == "reward function" else
                                          "lower the learning rate or check the data"))
        with warnings.catch_warnings():  # a skipped first step makes torch warn about the call order
            warnings.simplefilter("ignore", UserWarning)
            sched.step()
        row["seconds"] = time.perf_counter() - t0
        if eval_fn is not None and eval_every and ((step + 1) % eval_every == 0 or step + 1 == steps):
            row |= dict(eval_fn(m, step + 1) or {})
        history.append(row)
        if progress and rank == 0 and hasattr(bar, "set_postfix"):
            bar.set_postfix({k: f"{row[k]:.3g}" for k in ("loss", "reward") if k in row and row[k] == row[k]})
        if checkpoint is not None and rank == 0 and checkpoint.due(step + 1, last=step + 1 == steps):
            state = {"method": m.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                     "rng": _rng_state(), "history": history, "step": step + 1, "nonfinite": nonfinite,
                     "config": config}
            checkpoint.save(step + 1, state, method=m, config=config, objective=objective, method_name=method)
    return TrainResult(history=pd.DataFrame(history), method=m, trainable_parameters=trainable_parameter_count(m),
                       config=config)


# Settings a run may change when it resumes: how long it runs and what it shows.
_RESUME_MAY_CHANGE = {"steps", "progress", "eval_every", "max_nonfinite"}


def model_fingerprint(model) -> str:
    """A cheap, exact identity of a model's weights: names, shapes and the first and last 256 values of each.

    Unlike `toy.weights_hash` (every byte), it costs next to nothing for billions of parameters.
    """
    import hashlib

    h = hashlib.sha256()
    with torch.no_grad():
        for name, p in model.named_parameters():
            flat = p.detach().reshape(-1)
            h.update(f"{name}:{tuple(p.shape)}".encode())
            h.update(torch.cat([flat[:256], flat[-256:]]).float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def _examples_fingerprint(examples: list[dict]) -> str:
    import hashlib
    import json

    payload = [[e.get("id"), e.get("prompt"), e.get("answer")] for e in examples]
    return hashlib.sha256(json.dumps(payload, default=str).encode()).hexdigest()[:16]


def _check_resumable(saved: dict, current: dict, folder) -> None:
    """A checkpoint written by another model, data or settings must not be resumed silently."""
    keys = (set(saved) | set(current)) - _RESUME_MAY_CHANGE
    diff = sorted(k for k in keys if saved.get(k) != current.get(k))
    if diff:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in diff)
        raise ValueError(f"the checkpoint in {folder} was written by a run with other settings ({detail}); "
                         "resume with the same model, data and settings, or use a new or empty folder")


def _context_length(model) -> int:
    config = getattr(model.config, "text_config", model.config)
    return int(getattr(config, "max_position_embeddings", None) or 2**62)


def _item(x) -> float:
    return float(x.detach()) if isinstance(x, torch.Tensor) else (float("nan") if x is None else float(x))


def _progress(it, enabled: bool, **kw):
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, **kw)


def _all_reduce_grads(params, accelerator) -> None:
    """Average gradients across data-parallel processes (each saw its share of the batch)."""
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        p.grad = accelerator.reduce(p.grad, reduction="mean")


def _detached(image: dict | None) -> dict | None:
    return None if image is None else {k: (v.detach() if isinstance(v, torch.Tensor) else v) for k, v in image.items()}


def _num_image_tokens(m, image) -> int:
    return 0 if image is None else int(image["image_grid_thw"].prod()) // m.processor.image_processor.merge_size ** 2


def _sft_step(m, processor, texts: list[str], exs: list[dict]) -> dict:
    """Summed negative log-likelihood of the completion tokens (the caller normalises by token count)."""
    model, image, embeds = m.policy()
    batch = encode(processor, texts, [sft_completion(e) for e in exs], num_image_tokens=_num_image_tokens(m, image))
    batch = batch.to(next(model.parameters()).device)
    logps = completion_logprobs(model, batch, image, image_embeds=embeds)  # (B, C)
    mask = batch.completion_mask.float()
    return {"nll_sum": -(logps * mask).sum(), "tokens": float(mask.sum())}


def _rl_step(m, processor, examples, texts, idx, *, reward_fn, G, max_new, temperature, top_p, loss_type, beta,
             eps_low, eps_high, scale, dynamic, rounds, overlong, cache, accelerator=None) -> dict:
    model, image, embeds = m.policy()  # the vision tower runs here, once for the whole step
    sample_model, sample_image, sample_embeds = model, image, (None if embeds is None else embeds.detach())

    def rollout(ids: list[int]) -> tuple[Rollout, torch.Tensor]:
        r = generate_rollouts(sample_model, processor, [texts[i] for i in ids], [examples[i] for i in ids],
                              num_generations=G, image=_detached(sample_image), image_embeds=sample_embeds, max_new_tokens=max_new, temperature=temperature,
                              top_p=top_p)
        rew = reward_tensor(reward_fn(r.completions, r.examples), len(r.completions))
        if cache:
            lengths = r.batch.completion_mask.sum(1)
            rew = rew + losses.soft_overlong_penalty(lengths, max_new, cache)
        return r, rew

    r, rewards = rollout(idx)
    raw_reward = float(rewards.mean())
    if not torch.isfinite(rewards).all():  # a NaN reward would make every group look uninformative
        return {"loss": None, "reward": raw_reward, "nonfinite": "reward function"}
    if dynamic:
        keep = losses.dynamic_sampling_mask(rewards, G)
        ids, rolls, rews = [i for i, k in zip(idx, keep) if k], [r], [rewards]
        kept = [keep]
        for _ in range(rounds):
            if len(ids) >= len(idx):
                break
            extra = [random.randrange(len(examples)) for _ in range(len(idx) - len(ids))]
            r2, rew2 = rollout(extra)
            if not torch.isfinite(rew2).all():
                return {"loss": None, "reward": raw_reward, "nonfinite": "reward function"}
            k2 = losses.dynamic_sampling_mask(rew2, G)
            ids += [i for i, k in zip(extra, k2) if k]
            rolls.append(r2), rews.append(rew2), kept.append(k2)
        r, rewards = _select_groups(processor, rolls, rews, kept, G, limit=len(idx))
        if r is None:  # every group had equal rewards: nothing to learn from at this step
            return {"loss": None, "reward": raw_reward, "groups_kept": 0.0}
    adv = losses.group_advantages(rewards, G, scale=scale)
    batch = r.batch.to(next(model.parameters()).device)
    cmask = batch.completion_mask
    if overlong:
        cmask = losses.overlong_mask(cmask, batch.truncated)
    logps = completion_logprobs(model, batch, image, image_embeds=embeds, temperature=temperature)
    ref = None
    if beta:
        with torch.no_grad():
            rmodel, rimage, rembeds = m.reference()
            ref = completion_logprobs(rmodel, batch, rimage, image_embeds=rembeds, temperature=temperature)
    num_items = None
    if accelerator is not None and loss_type == "dapo":
        # DAPO normalises by the active tokens of the whole batch; gradients are then averaged.
        total = accelerator.reduce(cmask.sum().float().to(accelerator.device), reduction="sum").cpu()
        num_items = float(total) / accelerator.num_processes
    loss, metrics = losses.policy_loss(
        logps, r.old_logps, adv.to(logps.device), cmask, loss_type=loss_type, epsilon_low=eps_low,
        epsilon_high=eps_high, beta=beta, ref_per_token_logps=ref, max_completion_length=max_new,
        num_items_in_batch=num_items)
    out = {"loss": loss, "reward": raw_reward, "reward_kept": float(rewards.mean()),
           "completion_length": float(batch.completion_mask.sum(1).float().mean()),
           "truncated": float(batch.truncated.float().mean())}
    out |= {k: float(v) for k, v in metrics.items()}
    if dynamic:
        out["groups_kept"] = float(len(rewards) // G)
    return out


def _select_groups(processor, rolls: list[Rollout], rews: list[torch.Tensor], kept: list[torch.Tensor], G: int, limit: int):
    """Concatenate the informative groups of several rollout rounds into one batch (at most `limit` groups)."""
    prompt_ids, comp_ids, trunc, comps, exs, old, rewards = [], [], [], [], [], [], []
    for r, rew, keep in zip(rolls, rews, kept):
        P = r.batch.prompt_length
        for g, k in enumerate(keep.tolist()):
            if not k or len(rewards) >= limit * G:
                continue
            for j in range(g * G, (g + 1) * G):
                am = r.batch.attention_mask[j, :P].bool()
                prompt_ids.append(r.batch.input_ids[j, :P][am].tolist())
                n = int(r.batch.completion_mask[j].sum())
                comp_ids.append(r.batch.input_ids[j, P:P + n].tolist())
                trunc.append(bool(r.batch.truncated[j]))
                comps.append(r.completions[j]), exs.append(r.examples[j])
                old.append(r.old_logps[j, :n]), rewards.append(float(rew[j]))
    if not rewards:
        return None, None
    batch = pad_batch(processor, prompt_ids, comp_ids, trunc)
    C = batch.completion_ids.shape[1]
    old_t = torch.zeros(len(old), C)
    for i, o in enumerate(old):
        old_t[i, :len(o)] = o
    return Rollout(batch=batch, completions=comps, examples=exs, old_logps=old_t), torch.tensor(rewards)
