"""Atomic training checkpoints: the trainer hands over its state, this module does the file I/O.

A checkpoint is one folder `step-XXXXXX/` holding `state.pt` (trainable tensors, optimiser and
scheduler state, step, RNG states, history) and the served artifact (the artwork PNG or the LoRA
adapter). It is written into a temporary folder and renamed into place, so a run killed at any
moment leaves either the previous checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch


class Checkpointer:
    """Save the trainer's state every `every` steps into `folder`, keeping the last `keep`."""

    def __init__(self, folder: str | Path, every: int = 10, keep: int = 2, save_artifact: bool = True):
        if every < 1:
            raise ValueError(f"checkpoint every must be >= 1, got {every}")
        self.folder, self.every, self.keep, self.save_artifact = Path(folder), every, keep, save_artifact

    def due(self, step: int, last: bool = False) -> bool:
        return last or step % self.every == 0

    def save(self, step: int, state: dict, method=None, **metadata) -> Path:
        """Write `state` (and the method's artifact) for `step`, atomically."""
        self.folder.mkdir(parents=True, exist_ok=True)
        final = self.folder / f"step-{step:06d}"
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-step-{step:06d}-", dir=self.folder))
        try:
            torch.save(state, tmp / "state.pt")
            if method is not None and self.save_artifact:
                method.save(tmp / "artifact", step=step, **metadata)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._prune()
        return final

    def _prune(self) -> None:
        done = self.checkpoints()
        for old in done[: max(0, len(done) - self.keep)]:
            shutil.rmtree(old, ignore_errors=True)

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first (temporary folders of an interrupted save are ignored)."""
        if not self.folder.exists():
            return []
        return sorted(p for p in self.folder.glob("step-*") if (p / "state.pt").exists())

    def latest(self) -> dict | None:
        """The state of the newest complete checkpoint, or None."""
        done = self.checkpoints()
        if not done:
            return None
        return torch.load(done[-1] / "state.pt", weights_only=False)

    def artifact(self, step: int | None = None) -> Path | None:
        """Path of the saved artifact (PNG, adapter folder or .pt) of a checkpoint."""
        done = self.checkpoints() if step is None else [self.folder / f"step-{step:06d}"]
        if not done:
            return None
        hits = sorted(done[-1].glob("artifact*"))
        return hits[0] if hits else None
