"""The results folder's manifest: what was trained (`arms.jsonl`) and evaluated (`evals.jsonl`), by configuration hash.

A rerun with `resume` looks a configuration up here before spending any compute on it. Hashes name the model by its
label (`toy:base`, a hub id), never the local folder it resolved to, so a clone of the checkout finds its results.
"""

from __future__ import annotations

import hashlib
import json
import types
from collections.abc import Callable, Sequence
from pathlib import Path

import torch


def _jsonable(o, depth: int = 0):
    """A stable JSON stand-in for config values (callables by name and closure, objects by their fields).

    Deeply nested objects (an inference engine, say) are named by their type past a few levels.
    """
    if depth > 4:
        return type(o).__qualname__
    d = depth + 1
    if isinstance(o, types.ModuleType):
        return o.__name__
    if callable(o) and hasattr(o, "__qualname__"):
        closure = getattr(o, "__closure__", None) or []  # builtins have none
        return [getattr(o, "__module__", None), o.__qualname__, [_jsonable(c.cell_contents, d) for c in closure]]
    if isinstance(o, torch.Tensor):
        return hashlib.sha1(o.detach().cpu().float().contiguous().numpy().tobytes()).hexdigest()
    if isinstance(o, torch.Generator):  # its state, not its address
        return hashlib.sha1(o.get_state().numpy().tobytes()).hexdigest()
    if hasattr(o, "__dict__"):
        return [type(o).__qualname__, {k: _jsonable(v, d) for k, v in sorted(vars(o).items())}]
    if isinstance(o, (list, tuple)):
        return [_jsonable(v, d) for v in o]
    if isinstance(o, dict):
        return {str(k): _jsonable(v, d) for k, v in o.items()}
    if isinstance(o, (str, int, float, bool, type(None))):
        return o
    text = repr(o)
    return type(o).__qualname__ if " at 0x" in text else text  # a memory address is no identity


def config_hash(config: dict) -> str:
    """Short hash of an arm's whole configuration (what the manifest compares before skipping it)."""
    return hashlib.sha1(json.dumps(_jsonable(config), sort_keys=True, default=repr).encode()).hexdigest()[:16]


def image_hash(path: str | Path) -> str:
    """Hash of an image's decoded RGB pixels and size (what a model sees; PNG text metadata left out)."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as img:
        rgb = np.asarray(img.convert("RGB"))
    return hashlib.sha1(repr(rgb.shape).encode() + rgb.tobytes()).hexdigest()[:16]


def _records(path: Path) -> list[dict]:
    """The manifest's JSON lines; a line that is not JSON is an error naming the file and line."""
    if not path.exists():
        return []
    out = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{i}: not a JSON manifest line ({e.msg}); remove or repair it") from None
    return out


def _append(path: Path, record: dict) -> None:
    """One JSON line, flushed at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(record, default=str) + "\n")


def finished_arm(out_dir: Path, stem: str, chash: str) -> dict | None:
    """The manifest row (`arms.jsonl`) of an arm finished earlier with the same config, if its artifact is there."""
    for rec in _records(Path(out_dir) / "arms.jsonl"):
        same = rec.get("stem") == stem and rec.get("config_hash") == chash
        if same and (Path(out_dir) / rec["row"]["artifact"]).exists():
            return rec["row"]
    return None


def record_arm(out_dir: Path, stem: str, chash: str, row: dict) -> None:
    """Append a finished arm to the results folder's manifest (one JSON line, flushed at once)."""
    _append(Path(out_dir) / "arms.jsonl", {"stem": stem, "config_hash": chash, "row": row})


def recorded_evaluations(
    out_dir: str | Path | None,
    configs: dict[str, dict],
    evaluate_missing: Callable[[Sequence[str]], dict[str, dict]],
    *,
    resume: bool,
) -> dict[str, dict]:
    """Rows for every named evaluation in `configs`, in their order; only the ones not recorded are computed.

    With `resume`, an evaluation whose configuration hash is in `<out_dir>/evals.jsonl` returns its recorded row;
    `evaluate_missing(names)` computes the others (called only when some are missing, so it may load the model
    lazily), and each new row is recorded. Without `out_dir` nothing is looked up or recorded.
    """
    hashes = {name: config_hash(c) for name, c in configs.items()}
    path = Path(out_dir) / "evals.jsonl" if out_dir is not None else None
    done = {}
    if resume and path is not None:
        recorded = {rec.get("config_hash"): rec.get("row") for rec in _records(path)}  # the latest row wins
        done = {name: recorded[h] for name, h in hashes.items() if h in recorded}
    missing = [name for name in configs if name not in done]
    if missing:
        new = evaluate_missing(missing)
        for name in missing:
            if path is not None:
                _append(path, {"name": name, "config_hash": hashes[name], "config": configs[name], "row": new[name]})
            done[name] = json.loads(json.dumps(new[name], default=str))  # as a rerun would read it back
    return {name: done[name] for name in configs}
