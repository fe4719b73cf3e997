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

import copy
import dataclasses
import math
import random
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from .checkpoint import Checkpointer, check_train_state
from .checkpoint import rng_state as _rng_state
from .checkpoint import set_rng_state as _set_rng_state
from .config import RESULT_NEUTRAL, TrainConfig, check_field_names
from .context import check_context, context_length, prompt_lengths
from .generation import closed_after
from .methods import Method, check_method, make_method, spec, trainable_parameter_count
from .models import weights_fingerprint
from .pixel_prompt import PixelPrompt
from .preprocess import num_visual_tokens
from .prompting import example_text
from .steps import ShareSeeds, non_finite_gradient, non_finite_loss, reduce_across_processes, rl_step, sft_step
from .style import style_active
from .transforms import EOT
from .vllm_engine import get_generator


@dataclass
class TrainResult:
    """What a run returns: its history, the trained method (artwork / adapter) and its size."""

    history: pd.DataFrame
    method: Method
    trainable_parameters: int
    config: dict = field(default_factory=dict)

    @property
    def artwork(self) -> PixelPrompt | None:
        """The trained artwork (ART: a copy of the one `train` was given, which stays as it was), else None."""
        return getattr(self.method, "artwork", None)


class NonFiniteLossError(RuntimeError):
    """Raised when too many consecutive steps have a non-finite reward, loss or gradient."""


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
def train(
    model,
    processor,
    examples: list[dict],
    config: TrainConfig | dict | None = None,
    *,
    artwork: PixelPrompt | None = None,
    reward_fn=None,
    eval_fn=None,
    checkpoint: Checkpointer | None = None,
    accelerator=None,
    style_mask: torch.Tensor | None = None,
    freeze_mask: torch.Tensor | None = None,
    eot=None,
    init_state: dict | None = None,
    rollout_engine="hf",
    quantize_8bit: bool | None = None,
    progress: bool = True,
    **fields,
) -> TrainResult:
    """Train one method on `examples` with one objective; returns history and the trained method.

    Settings come from `config` (a `TrainConfig`, or a dict of its fields) with any keyword `fields`
    overriding it, so `train(model, proc, examples, steps=10, lr=0.05)` works as well; an unknown
    name is a TypeError naming the nearest field.

    Style terms (ART only; `style.py`) pull the artwork toward its seed icon: `style_l2` (pixel L2),
    `style_tv` (total variation), `style_ssim` (1 - SSIM), optionally within `style_mask`;
    `freeze_mask` keeps a region of the seed fixed; `eot` (a `transforms.EOT`, else TypeError) trains on random
    transformations of the artwork (robustness to JPEG, resizing, colour). All off by default.

    `examples` are `{"id", "prompt", "answer", "meta"}` dicts (see `data.py`). ART and soft prompts
    show the image with every prompt; LoRA sees the same prompts without it. `eval_fn(method, step)`
    may return a dict of metrics added to the history. With `checkpoint`, state is saved every N
    steps and a rerun resumes from the newest checkpoint, ending bit-identical to an uninterrupted run.

    `init_state` (a trained method's `state_dict()`, e.g. from an SFT warm start) sets the trainable
    parameters before the first step; the optimiser starts fresh, and the KL reference stays the
    method's untrained start (seed image, LoRA off, seed embeddings).

    Memory: `micro_batch_size` rows go through each forward/backward (old and reference log-probs too) and
    gradients accumulate, with the loss normalised by the whole step (the same gradient as all rows at once); the
    vision tower runs once per step; `generation_batch_size` prompts share one `generate` call;
    `gradient_checkpointing` recomputes the language model's layers in backward. `shared_prefix` (ART, soft
    prompt) runs the tokens all rows start with (template, image) once per step and per `generate` call (`prefix.py`).

    `rollout_engine`: "hf" (transformers `generate`, the default and reference), "vllm" (an offline vLLM engine
    on this model, weights loaded once), a `vllm_engine.VLLMEngine`, running vLLM servers (a URL such as
    "http://127.0.0.1:8000/v1" or a list of them; see `generation.py`) or any `generation.Generator`.
    `quantize_8bit` trains ART on the 8-bit image (straight-through), the image vLLM samples with; None: on with
    an engine.
    """
    c = _resolved_config(config, fields)
    _check_inputs(examples, eot)
    run = _set_up(
        model, processor, examples, c, artwork=artwork, reward_fn=reward_fn, checkpoint=checkpoint,
        accelerator=accelerator, style_mask=style_mask, freeze_mask=freeze_mask, eot=eot, init_state=init_state,
        rollout_engine=rollout_engine, quantize_8bit=quantize_8bit,
    )  # fmt: skip
    _resume(run, checkpoint)
    shown = progress and run.rank == 0
    bar = _progress(
        range(run.start, c.steps), shown, initial=run.start, total=c.steps, desc=f"{c.method}/{c.objective}"
    )
    with closed_after(run.engine, rollout_engine):  # servers named by URL: the run's adapters unloaded at the end
        for step in bar:
            row = _step(run, step)
            if eval_fn is not None and c.eval_every and ((step + 1) % c.eval_every == 0 or step + 1 == c.steps):
                row |= dict(eval_fn(run.m, step + 1) or {})
            run.history.append(row)
            if shown and hasattr(bar, "set_postfix"):
                bar.set_postfix({k: f"{row[k]:.3g}" for k in ("loss", "reward") if k in row and row[k] == row[k]})
            if checkpoint is not None and run.rank == 0 and checkpoint.due(step + 1, last=step + 1 == c.steps):
                _save(run, checkpoint, step + 1)
    return TrainResult(pd.DataFrame(run.history), run.m, trainable_parameter_count(run.m), run.config)


@dataclass
class _Run:
    """What a training run holds between steps: the method, its optimiser and schedule, the data as rendered, the
    rollout generator, this process's place, and the history so far (what a checkpoint saves)."""

    c: TrainConfig
    m: Method
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    processor: object
    examples: list[dict]
    texts: list[str]
    reward_fn: object
    engine: object
    accelerator: object
    world: int
    rank: int
    config: dict
    history: list[dict] = field(default_factory=list)
    start: int = 0
    nonfinite: int = 0


def _resolved_config(config: TrainConfig | dict | None, fields: dict) -> TrainConfig:
    """`config` (a TrainConfig or a dict of its fields) with `fields` on top, every None default filled in."""
    if isinstance(config, dict):
        check_field_names(config)
        config = TrainConfig(**config)
    return (config or TrainConfig()).replace(**fields).resolved()


def _check_inputs(examples: list[dict], eot) -> None:
    if not examples:
        raise ValueError("no training examples")
    if eot is not None and not isinstance(eot, EOT):  # a bare function has no state to checkpoint
        raise TypeError(
            f"eot must be a transforms.EOT (a call plus state_dict / load_state_dict), got "
            f"{type(eot).__name__}; use transforms.RandomEOT or resize_to, or wrap a function "
            "f(pixels, generator) as RandomEOT([f], p=1.0)"
        )


def _set_up(model, processor, examples, c: TrainConfig, *, artwork, reward_fn, checkpoint, accelerator, style_mask,
            freeze_mask, eot, init_state, rollout_engine, quantize_8bit) -> _Run:  # fmt: skip
    """Seed, build the method (and its rollout generator), the optimiser and schedule; check the prompts fit."""
    reward_fn = reward_fn or (_default_reward(c.benchmark) if c.rl else None)
    config = _plain(dataclasses.asdict(c))
    if checkpoint is not None:  # what a resume must match; computed before any adapter is attached
        config["model_fingerprint"] = weights_fingerprint(model)
        config["examples_fingerprint"] = _examples_fingerprint(examples)
    torch.manual_seed(c.seed)
    random.seed(c.seed)
    np.random.seed(c.seed)
    if artwork is None and spec(c.method).shows_image:
        artwork = PixelPrompt.from_icon(c.seed_icon, c.image_size)
    elif artwork is not None:
        artwork = copy.deepcopy(artwork)  # training moves the pixels: the caller's artwork stays as given
    engine = None
    if c.rl and rollout_engine != "hf":  # built before make_method (LoRA wraps the model in place); servers checked
        engine = get_generator(rollout_engine, model, processor, method=spec(c.method), lora_rank=c.lora_rank)
    styled = style_active(c.style_l2, c.style_tv, c.style_ssim)
    m = make_method(
        c.method,
        model,
        processor,
        artwork=artwork,
        lora_rank=c.lora_rank,
        lora_alpha=c.lora_alpha,
        lora_dropout=c.lora_dropout,
        seed=c.seed,
        eot=eot,
        freeze_mask=freeze_mask,
        style=dict(l2=c.style_l2, tv=c.style_tv, ssim=c.style_ssim, mask=style_mask) if styled else None,
    )
    check_method(m)
    if init_state is not None:
        m.load_state_dict(init_state)
    if quantize_8bit or (quantize_8bit is None and engine is not None):
        m.train_as_served()  # the training forward sees the 8-bit image the engine samples with
    opt = torch.optim.Adam(m.parameters(), lr=c.lr, weight_decay=c.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(c.lr_schedule, c.steps, c.warmup_steps))
    texts = [example_text(processor, ex, image=m.shows_image) for ex in examples]
    world, rank = (accelerator.num_processes, accelerator.process_index) if accelerator else (1, 0)
    if c.batch_size % world:
        raise ValueError(f"batch_size {c.batch_size} must be divisible by the {world} processes")
    if engine is not None and rank:
        engine = ShareSeeds(engine, first=rank * c.batch_size // world)
    _check_prompts_fit(model, processor, examples, texts, artwork if m.shows_image else None, eot)
    return _Run(c, m, opt, sched, processor, examples, texts, reward_fn, engine, accelerator, world, rank, config)


def _resume(run: _Run, checkpoint: Checkpointer | None) -> None:
    """Continue from the newest checkpoint that matches this run's settings (method, optimiser, RNG, history)."""
    if checkpoint is None:
        return
    if run.rank == 0:
        checkpoint.open()  # this run owns the folder; an unwritable one fails here, before any step
    check = lambda saved: _check_resumable(saved, run.config, checkpoint.folder)  # noqa: E731
    validate = lambda state, at: check_train_state(state, at, run.c.steps)  # noqa: E731
    if (state := checkpoint.latest(check=check, validate=validate)) is not None:
        run.m.load_state_dict(state["method"])
        run.opt.load_state_dict(state["optimizer"])
        run.sched.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        run.history, run.start, run.nonfinite = state["history"], state["step"], state["nonfinite"]


def _save(run: _Run, checkpoint: Checkpointer, step: int) -> None:
    state = {
        "method": run.m.state_dict(),
        "optimizer": run.opt.state_dict(),
        "scheduler": run.sched.state_dict(),
        "rng": _rng_state(),
        "history": run.history,
        "step": step,
        "nonfinite": run.nonfinite,
        "config": run.config,
    }
    c = run.c
    checkpoint.save(step, state, method=run.m, config=run.config, objective=c.objective, method_name=c.method)


def _micro_step(run: _Run, idx: list[int]) -> dict:
    """Loss of one micro-step, already backpropagated (scaled by 1 / grad_accum) in micro-batches of rows."""
    c, rank, world = run.c, run.rank, run.world
    idx = idx[rank * len(idx) // world : (rank + 1) * len(idx) // world]  # this process's share
    if not c.rl:
        texts, examples = [run.texts[i] for i in idx], [run.examples[i] for i in idx]
        return sft_step(run.m, run.processor, texts, examples, c, scale=1 / c.grad_accum, accelerator=run.accelerator)
    return rl_step(
        run.m,
        run.processor,
        run.examples,
        run.texts,
        idx,
        c,
        reward_fn=run.reward_fn,
        accelerator=run.accelerator,
        scale=1 / c.grad_accum,
        engine=run.engine,
    )


def _step(run: _Run, step: int) -> dict:
    """One optimiser step (`grad_accum` micro-steps, style penalty, all-reduce); returns its history row."""
    c, m, t0 = run.c, run.m, time.perf_counter()
    params = m.parameters()
    run.opt.zero_grad(set_to_none=True)
    logs: list[dict] = []
    bad_source, computed = None, []  # what gave a non-finite value; losses of micro-batches that had one
    for micro in range(c.grad_accum):
        idx = batch_indices(
            step, micro, n=len(run.examples), batch_size=c.batch_size, grad_accum=c.grad_accum, seed=c.seed
        )
        out = _micro_step(run, idx)
        bad_source = bad_source or out.pop("nonfinite", None)
        if out["loss"] is not None and (penalty := m.penalty()) is not None:
            extra, terms = penalty
            (extra / c.grad_accum).backward()
            out = out | terms | {"loss": out["loss"] + float(extra.detach())}
        if out["loss"] is not None:
            computed.append(_item(out["loss"]))
        logs.append({k: v for k, v in out.items() if k != "loss"} | {"loss": _item(out["loss"])})
    bad_source = bad_source or non_finite_loss(computed)
    if run.accelerator is None:
        learned = bool(computed)
    else:  # every process applies the same averaged gradient or skips, whatever its own share gave
        bad_source, learned = reduce_across_processes(params, logs, bad_source, bool(computed), run.accelerator)
    if bad_source is None and learned:
        bad_source = non_finite_gradient(params)
    row = {"step": step + 1, "method": c.method, "objective": c.objective, "lr": run.sched.get_last_lr()[0]}
    row |= {k: float(np.mean([log[k] for log in logs if log.get(k) is not None] or [np.nan])) for k in logs[0]}
    row |= _update(run, params, learned, bad_source, step)
    with warnings.catch_warnings():  # a skipped first step makes torch warn about the call order
        warnings.simplefilter("ignore", UserWarning)
        run.sched.step()
    row["seconds"] = time.perf_counter() - t0
    return row


def _update(run: _Run, params, learned: bool, bad_source: str | None, step: int) -> dict:
    """Clip and apply the step's gradient, or skip it: nothing to learn from (not an error), or a non-finite value
    (the last good parameters are kept; `max_nonfinite` of them in a row stop the run)."""
    if bad_source is None and not learned:  # e.g. every DAPO group had equal rewards
        return {"grad_norm": float("nan"), "skipped": True}
    if bad_source is None:
        c = run.c
        norm = torch.nn.utils.clip_grad_norm_(params, c.max_grad_norm if c.max_grad_norm else float("inf"))
        run.opt.step()
        run.m.after_step()
        run.nonfinite = 0
        return {"grad_norm": float(norm), "skipped": False}
    run.nonfinite += 1
    if run.nonfinite >= run.c.max_nonfinite:
        advice = (
            "check the reward function"
            if bad_source == "reward function"
            else "lower the learning rate or check the data"
        )
        raise NonFiniteLossError(
            f"{run.nonfinite} consecutive steps with a non-finite value (last at step {step + 1}, from the "
            f"{bad_source}); {advice}"
        )
    return {"grad_norm": float("nan"), "skipped": True, "nonfinite": bad_source}


# Settings a run may change when it resumes: how long it runs, what it shows, and how it fits in memory
# (micro-batching and checkpointing give the same gradients; a new generation_batch_size only reorders sampling).
_RESUME_MAY_CHANGE = {"steps", "eval_every", "max_nonfinite", *RESULT_NEUTRAL}


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
        raise ValueError(
            f"the checkpoint in {folder} was written by a run with other settings ({detail}); "
            "resume with the same model, data and settings, or use a new or empty folder"
        )


def _check_prompts_fit(
    model, processor, examples: list[dict], texts: list[str], artwork: PixelPrompt | None, eot
) -> None:
    """Every rendered prompt plus the image's visual tokens (none without `artwork`) fits the model's context."""
    image_tokens = 0
    if artwork is not None:  # counted on the size the model sees (a `resize_to` transformation changes it)
        seen = eot.output_size(artwork.size) if hasattr(eot, "output_size") else artwork.size
        image_tokens = num_visual_tokens(*seen, processor.image_processor)
    check_context(
        prompt_lengths(processor, texts, image_tokens),
        context_length(model),
        [e.get("id", i) for i, e in enumerate(examples)],
    )


def _plain(d: dict) -> dict:
    """Tuples as lists, so a config compares equal after a round trip through JSON or YAML."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _item(x) -> float:
    return float(x.detach()) if isinstance(x, torch.Tensor) else (float("nan") if x is None else float(x))


def _progress(it, enabled: bool, **kw):
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, **kw)
