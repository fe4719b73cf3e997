"""Every scalar setting of one training run, as one dataclass (the shape of TRL's `GRPOConfig`).

Field names are the notebook parameter names, so a notebook reads `train(..., lr=lr, steps=steps)` or builds a
`TrainConfig` from its parameters cell. `None` means "the default for this method / objective", filled in by
`TrainConfig.resolved()`; the stored config of a run (`TrainResult.config`, checkpoints) is the resolved one.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field

from .losses import IMPORTANCE_SAMPLING_LEVELS, LOSS_TYPES, SCALE_REWARDS

OBJECTIVES = ("sft", "grpo", "dapo")
METHODS = ("art", "lora", "soft_prompt")
LR_SCHEDULES = ("constant", "cosine", "linear")
DEFAULT_LR = {"art": 1e-2, "soft_prompt": 1e-2, "lora": 1e-3}


@dataclass
class TrainConfig:
    """Settings of `train.train`: method, optimisation, RL, generation, memory, style and run."""

    # --- method ---
    method: str = "art"
    """What is trained: "art" (pixels of one image), "lora" (adapters, no image) or "soft_prompt"."""
    objective: str = "sft"
    """Objective: "sft", "grpo" or "dapo"."""
    image_size: int | tuple[int, int] = 256
    """Side (or (height, width)) of the artwork built from `seed_icon` when no artwork is given."""
    seed_icon: str = "math"
    """Icon the artwork starts from when no artwork is given (see `icons.py`)."""
    lora_rank: int = 8
    """LoRA rank (method "lora")."""
    lora_alpha: float | None = None
    """LoRA scaling numerator; None = 2 * lora_rank."""
    lora_dropout: float = 0.0
    """Dropout on the LoRA input (method "lora")."""

    # --- optimisation ---
    steps: int = 100
    """Optimiser steps."""
    batch_size: int = 8
    """Prompts per micro-step (RL: each sampled `num_generations` times)."""
    grad_accum: int = 1
    """Micro-steps of `batch_size` prompts per optimiser step."""
    lr: float | None = None
    """Adam learning rate; None = 1e-2 for art / soft_prompt, 1e-3 for lora."""
    lr_schedule: str = "constant"
    """"constant", "cosine" or "linear" decay after the warm-up."""
    warmup_steps: int = 0
    """Linear warm-up steps."""
    max_grad_norm: float | None = 1.0
    """Gradient clipping norm; None or 0 = no clipping."""
    weight_decay: float = 0.0
    """Adam weight decay."""
    max_nonfinite: int = 3
    """Consecutive steps with a non-finite loss or gradient before the run stops with an error."""

    # --- RL ---
    num_generations: int = 8
    """Completions sampled per prompt (the group size G)."""
    loss_type: str | None = None
    """Aggregation of the per-token policy loss (`losses.LOSS_TYPES`); None = the objective's own."""
    beta: float = 0.0
    """Weight of the KL penalty to the method's starting point; 0 = no reference forward at all."""
    epsilon_low: float = 0.2
    """Lower clip of the importance ratio: 1 - epsilon_low."""
    epsilon_high: float | None = None
    """Upper clip: 1 + epsilon_high; None = 0.28 for DAPO (clip-higher), epsilon_low otherwise."""
    importance_sampling_level: str | None = None
    """"token" (one importance ratio per token, GRPO / DAPO) or "sequence" (GSPO: one per completion, the exp
    of its mean log-ratio; GSPO clips it with epsilons of ~3e-4); None = "token". Left None in the stored
    config, so checkpoints written before this field resume."""
    delta: float | None = None
    """Two-sided clipping (INTELLECT-2): the unclipped ratio is capped at `delta` (> 1, e.g. 4; above
    1 + epsilon_high); None = off. As TRL's `delta`."""
    scale_rewards: str = "group"
    """Advantage divisor: "group" std, "batch" std or "none" (Dr. GRPO)."""
    dynamic_sampling: bool | None = None
    """Drop groups whose rewards are all equal and sample more prompts (DAPO); None = on for DAPO."""
    max_resample_rounds: int = 3
    """Cap on dynamic sampling's extra rollout rounds per micro-step."""
    overlong_filter: bool | None = None
    """Mask the loss of truncated completions (DAPO); None = on for DAPO."""
    overlong_cache: int = 0
    """DAPO's soft overlong punishment buffer in tokens; 0 = off."""
    benchmark: str | None = None
    """Benchmark whose scorer is the reward when `train` gets no `reward_fn`."""

    # --- generation (RL rollouts) ---
    max_completion_length: int = 256
    """Most new tokens per sampled completion."""
    temperature: float = 1.0
    """Sampling temperature (also divides the logits of the policy loss, as TRL does)."""
    top_p: float = 1.0
    """Nucleus sampling mass."""

    # --- memory (none of these changes the result: `result_neutral` in their metadata, see RESULT_NEUTRAL) ---
    micro_batch_size: int | None = field(default=None, metadata={"result_neutral": True})
    """Rows (completions) per forward/backward pass; gradients are accumulated. None = all rows of a micro-step."""
    generation_batch_size: int | None = field(default=None, metadata={"result_neutral": True})
    """Prompts per `generate` call in rollouts (each with num_generations rows). None = all prompts at once."""
    gradient_checkpointing: bool = field(default=False, metadata={"result_neutral": True})
    """Recompute the language model's layers in the backward pass instead of storing their activations."""
    shared_prefix: bool = field(default=False, metadata={"result_neutral": True})
    """ART / soft prompts: run the tokens every row starts with (template opening, image) once per step, each
    micro-batch continuing them with its rows' own shared tokens (a group's prompt), and the rows from that
    cache (`prefix.py`); same loss and gradients."""

    # --- style (method "art" only; `style.py`) ---
    style_l2: float = 0.0
    """Weight of the pixel L2 distance to the seed icon."""
    style_tv: float = 0.0
    """Weight of total variation."""
    style_ssim: float = 0.0
    """Weight of 1 - SSIM to the seed icon."""

    # --- run ---
    seed: int = 0
    """Seed of data order, artwork/LoRA init and sampling."""
    eval_every: int = 0
    """Call `eval_fn` every this many steps (and at the end); 0 = never."""

    def __post_init__(self):
        _choice("method", self.method, METHODS)
        _choice("objective", self.objective, OBJECTIVES)
        if self.loss_type is not None:
            _choice("loss_type", self.loss_type, LOSS_TYPES)
        if self.importance_sampling_level is not None:
            _choice("importance_sampling_level", self.importance_sampling_level, IMPORTANCE_SAMPLING_LEVELS)
        _choice("scale_rewards", self.scale_rewards, SCALE_REWARDS)
        _choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        for name, (kind, low, low_open, high, optional) in RANGES.items():
            _check_range(name, getattr(self, name), kind, low, low_open, high, optional)
        pair = isinstance(self.image_size, (tuple, list))
        sizes = list(self.image_size) if pair else [self.image_size]
        if (pair and len(sizes) != 2) or not all(type(v) is int and v > 0 for v in sizes):
            raise ValueError(
                f"TrainConfig.image_size must be a side or (height, width) in pixels >= 1, got {self.image_size!r}"
            )
        if self.overlong_cache >= self.max_completion_length:
            raise ValueError(
                f"overlong_cache ({self.overlong_cache}) must be below max_completion_length "
                f"({self.max_completion_length})"
            )

    @property
    def rl(self) -> bool:
        return self.objective != "sft"

    def resolved(self) -> TrainConfig:
        """A copy with every `None` default filled in for this method and objective."""
        dapo = self.objective == "dapo"
        return dataclasses.replace(
            self,
            lr=DEFAULT_LR[self.method] if self.lr is None else self.lr,
            loss_type=self.loss_type or ("dapo" if dapo else "grpo"),
            epsilon_high=(0.28 if dapo else self.epsilon_low) if self.epsilon_high is None else self.epsilon_high,
            dynamic_sampling=dapo if self.dynamic_sampling is None else self.dynamic_sampling,
            overlong_filter=dapo if self.overlong_filter is None else self.overlong_filter,
            lora_alpha=2 * self.lora_rank if self.lora_alpha is None else self.lora_alpha,
        )

    def replace(self, **fields) -> TrainConfig:
        """A copy with `fields` changed; an unknown name is a TypeError naming the nearest field."""
        check_field_names(fields)
        return dataclasses.replace(self, **fields)


FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))

_INT, _REAL = "an integer", "a finite number"
#: Numeric fields: (kind, low, low excluded?, high (inclusive) or None, None allowed?). Everything is checked
#: in `__post_init__`, so NaN, infinities and out-of-range values fail where the config is made.
RANGES = {
    **{n: (_INT, 1, False, None, False) for n in ("steps", "batch_size", "grad_accum", "num_generations")},
    **{n: (_INT, 1, False, None, False) for n in ("max_completion_length", "lora_rank", "max_nonfinite")},
    **{n: (_INT, 1, False, None, True) for n in ("micro_batch_size", "generation_batch_size")},
    **{n: (_INT, 0, False, None, False) for n in ("warmup_steps", "max_resample_rounds", "overlong_cache")},
    "eval_every": (_INT, 0, False, None, False),
    "seed": (_INT, 0, False, None, False),
    "lr": (_REAL, 0, False, None, True),
    "max_grad_norm": (_REAL, 0, False, None, True),
    "lora_alpha": (_REAL, 0, True, None, True),
    "lora_dropout": (_REAL, 0, False, 1, False),
    **{n: (_REAL, 0, False, None, False) for n in ("beta", "epsilon_low", "weight_decay")},
    **{n: (_REAL, 0, False, None, False) for n in ("style_l2", "style_tv", "style_ssim")},
    "epsilon_high": (_REAL, 0, False, None, True),
    "delta": (_REAL, 1, True, None, True),
    "temperature": (_REAL, 0, True, None, False),
    "top_p": (_REAL, 0, True, 1, False),
}

#: Names other trainers use (TRL's GRPOConfig / transformers' TrainingArguments / PEFT), answered with the kit's.
ALIASES = {
    "learning_rate": "lr",
    "per_device_train_batch_size": "batch_size",
    "max_steps": "steps",
    "gradient_accumulation_steps": "grad_accum",
    "lr_scheduler_type": "lr_schedule",
    "epsilon": "epsilon_low",
    "mask_truncated_completions": "overlong_filter",
    "max_new_tokens": "max_completion_length",
    "eval_steps": "eval_every",
    "lora_r": "lora_rank",
    "r": "lora_rank",
}
#: Such names with no counterpart here, and why.
NO_EQUIVALENT = {
    "num_train_epochs": "training length is counted in optimiser steps ('steps')",
    "warmup_ratio": "warm-up is counted in steps ('warmup_steps')",
    "num_iterations": "one policy update per rollout batch (train.py, departure 1)",
    "max_prompt_length": "prompts are never truncated; one that does not fit the context is an error",
    "per_device_eval_batch_size": "evaluation is `evaluate(batch_size=...)`, not part of training",
    "top_k": "rollouts sample with temperature and top_p only",
    "logging_steps": "the history records every step",
}


def check_field_names(fields) -> None:
    """TypeError for a name that is not a `TrainConfig` field (papermill-style typos must not pass silently).

    A name another trainer uses (`learning_rate`) is answered with the kit's own (`lr`), or with why there is
    none; any other unknown name with the nearest field.
    """
    for name in fields:
        if name in FIELDS:
            continue
        if name in ALIASES:
            raise TypeError(f"TrainConfig has no {name!r}: the kit calls it {ALIASES[name]!r}")
        if name in NO_EQUIVALENT:
            raise TypeError(f"TrainConfig has no {name!r} and no equivalent of it: {NO_EQUIVALENT[name]}")
        near = nearest(name, [*FIELDS, *ALIASES])  # "lerning_rate" -> "lr"
        hint = f"; did you mean {ALIASES.get(near, near)!r}?" if near else ""
        raise TypeError(f"{name!r} is not a TrainConfig field{hint}")


def _check_range(name: str, value, kind: str, low, low_open: bool, high, optional: bool) -> None:
    """ValueError naming the field and the value unless `value` is of `kind` within [low, high] (or allowed None)."""
    if value is None and optional:
        return
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = number and (isinstance(value, int) if kind == _INT else math.isfinite(value))
    ok = ok and (value > low if low_open else value >= low) and (high is None or value <= high)
    if not ok:
        opening = "(" if low_open else "["
        bounds = f"{'>' if low_open else '>='} {low}" if high is None else f"in {opening}{low}, {high}]"
        none = " or None" if optional else ""
        raise ValueError(f"TrainConfig.{name} must be {kind} {bounds}{none}, got {value!r}")


def _choice(name: str, value, allowed: tuple) -> None:
    if value not in allowed:
        hint = f" (did you mean {near!r}?)" if (near := nearest(str(value), allowed)) else ""
        raise ValueError(f"unknown {name} {value!r}{hint}; choose one of {allowed}")


def nearest(name: str, valid) -> str | None:
    """The valid name closest to a mistyped one ("lerning_rate" -> "learning_rate"), or None when none is close:
    the one did-you-mean rule of the kit's error messages (config fields, notebook parameters, engines)."""
    near = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
    return near[0] if near else None


#: Fields marked `result_neutral` (memory and speed settings): changing one neither retrains a finished arm nor stops a
#: checkpoint from resuming; micro-batching, checkpointing and prefix sharing give the same gradients (tested), and a
#: new generation batch only regroups the sampling calls.
RESULT_NEUTRAL = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("result_neutral"))
