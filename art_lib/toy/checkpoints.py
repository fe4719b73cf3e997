"""The shipped toy checkpoints: `art_lib/toy/checkpoints/<name>/`, standard Hugging Face folders.

Each folder holds what `save_checkpoint` writes (config, safetensors, tokenizer, processor, chat template)
and `toy_info.json`: the recipe, the seed and the sha256 of the weights (`models.weights_hash`), as the
pretraining run that made them recorded it. Nothing is pretrained at run time.
"""

from __future__ import annotations

import json
from pathlib import Path

from .recipe import SIZES, parse_spec

CHECKPOINTS_DIR = Path(__file__).resolve().parent / "checkpoints"
#: What `run_info.json` records of a toy checkpoint.
IDENTITY_KEYS = ("recipe_hash", "weights_hash", "final_loss", "threads", "torch", "cpu")


def shipped_names() -> tuple[str, ...]:
    """Names of the shipped toy checkpoints ("base", "base-texture", ...), sorted."""
    if not CHECKPOINTS_DIR.is_dir():
        return ()
    return tuple(sorted(p.name for p in CHECKPOINTS_DIR.iterdir() if (p / "toy_info.json").exists()))


def pretrain_command(name: str) -> str:
    """The command that pretrains toy model `name` into a folder of its own."""
    return f"python -m art_lib.toy pretrain --name {name} --out-dir toy-{name}"


def toy_checkpoint(name: str = "base") -> Path:
    """The shipped checkpoint folder of toy model `name` (a size, or size-pictures as in `parse_spec`)."""
    parse_spec(name)  # unknown size or picture kind: ValueError naming the known ones
    path = CHECKPOINTS_DIR / name
    if not (path / "toy_info.json").exists():
        raise FileNotFoundError(
            f"toy model {name!r} is not shipped with art_lib (shipped: {', '.join(shipped_names()) or 'none'}; "
            f"sizes: {', '.join(SIZES)}). Pretrain it with `{pretrain_command(name)}` (minutes to an hour on a "
            f"CPU) and pass the folder as the model."
        )
    return path


def toy_info(name: str) -> dict:
    """The `toy_info.json` of a shipped toy checkpoint."""
    return json.loads((toy_checkpoint(name) / "toy_info.json").read_text())


def checkpoint_identity(name: str) -> dict:
    """Recipe and weights hashes of a shipped toy checkpoint, for run_info.json (empty if unknown)."""
    try:
        info = toy_info(name)
    except (FileNotFoundError, ValueError):
        return {}
    return {k: info.get(k) for k in IDENTITY_KEYS}
