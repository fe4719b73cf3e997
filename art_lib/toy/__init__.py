"""The toy world: small Qwen3.5-architecture models, shipped pretrained, and benchmarks they can solve.

No real checkpoint can be downloaded in CI, and a random model scores 0 on everything, so the kit's
tables would say nothing. The toy world is a stand-in in which ART, LoRA and soft prompts can be
compared end to end in minutes, through the same code paths as a real checkpoint:

* `tasks`: the corpus: five tasks on two numbers, each named by a text instruction or, except `mul`, by
  a small picture; distractor images to be ignored; and "no cue -> Which task?".
* `recipe`: the architectures (the real `Qwen3_5ForConditionalGeneration`, shrunk with `tiny_config`;
  linear-attention heads 64 wide, as vLLM's CPU kernel needs) and the pretraining hyper-parameters.
* `pretrain`: pretraining from scratch, deterministic on one CPU type (`python -m art_lib.toy pretrain`).
* `checkpoints`: the shipped checkpoints (`art_lib/toy/checkpoints/<name>/`, loaded by `load_frozen`
  like any folder). Toy names are a size ("small", "base", "large") or a size and picture kind:
  "base-texture" is the base model pretrained on texture pictures, a tower that reads fine detail.
* `benchmarks`: `toy_<task>`, a task WITHOUT its instruction ("3 and 7"), so the task must come from
  the artwork, the weights or the embeddings; `evaluate_toy` measures the frozen model per cue.

Importing this package registers the `toy_<task>` benchmarks and the `toy:<name>` model names with
`art_lib.registry` (`register()`); the registry imports it on its first lookup. Nothing else happens at
import: no model is built and no file is read.

CLI: `python -m art_lib.toy {pretrain,verify,eval,list}`.
"""

from __future__ import annotations

from . import tasks
from .benchmarks import MAX_NEW_TOKENS, evaluate_toy, load_toy, toy_controls
from .checkpoints import CHECKPOINTS_DIR, checkpoint_identity, shipped_names, toy_checkpoint, toy_info
from .pretrain import pretrain_toy_model
from .recipe import (
    DEFAULT_SIZE,
    SEEDS,
    SIZES,
    TASK_SHARE,
    default_seed,
    parse_spec,
    recipe,
    recipe_hash,
    toy_model,
    toy_name,
    toy_processor,
)

__all__ = [
    "tasks",
    "MAX_NEW_TOKENS",
    "evaluate_toy",
    "toy_controls",
    "load_toy",
    "CHECKPOINTS_DIR",
    "checkpoint_identity",
    "shipped_names",
    "toy_checkpoint",
    "toy_info",
    "pretrain_toy_model",
    "DEFAULT_SIZE",
    "SIZES",
    "SEEDS",
    "TASK_SHARE",
    "default_seed",
    "parse_spec",
    "recipe",
    "recipe_hash",
    "toy_model",
    "toy_name",
    "toy_processor",
    "register",
]


def register() -> None:
    """Register the toy benchmarks (`toy_<task>`) and the `toy:<name>` model scheme with `art_lib.registry`."""
    from ..registry import ModelScheme, register_model_scheme
    from .benchmarks import register_benchmarks

    register_benchmarks()
    register_model_scheme(ModelScheme("toy", lambda spec: str(toy_checkpoint(spec)), checkpoint_identity), replace=True)


register()
