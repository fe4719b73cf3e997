"""Atomic training checkpoints: the trainer hands over its state, this module does the file I/O.

A checkpoint is one folder `step-XXXXXX/` holding `state.pt` (trainable tensors, optimiser and
scheduler state, step, RNG states, history), `meta.json` (the run's settings and the checksum of
`state.pt`) and the served artifact (the artwork PNG or the LoRA adapter). It is written into a
uniquely named temporary folder and renamed into place, so a run killed at any moment leaves
either the previous checkpoint or the new one, never half of one.

Files a user may be sent (checkpoints, soft-prompt `.pt` files) are read with `safe_load`
(`torch.load(weights_only=True)`): tensors and plain containers only, never code. RNG states are
therefore stored as tensors, lists and numbers rather than the numpy/random objects themselves.

A folder belongs to one run at a time: `open()` takes an exclusive lock (`.lock`, an OS file lock
that dies with its process, holding the owner's pid for the error message), checks that the folder
is writable and removes temporary folders left by killed saves, all before training starts.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import random
import shutil
import tempfile
import uuid
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

_TMP_PREFIXES = (".tmp-step-", ".old-step-")


def safe_load(path: str | Path) -> dict:
    """`torch.load` restricted to tensors and plain containers: a crafted pickle raises instead of running."""
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"refusing to load {path}: it holds objects other than tensors, numbers, strings and "
            f"plain containers (a pickle that could run code, or a file from an older art_lib): {err}"
        ) from err


def rng_state() -> dict:
    """Every RNG the trainer draws from, as tensors, lists and numbers (loadable with `weights_only=True`)."""
    version, internal, gauss = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state` recorded (the CUDA states when recorded and a GPU is present)."""
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state(
        ("MT19937", npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"], npy["cached_gaussian"])
    )
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


class CheckpointFolderInUse(RuntimeError):
    """Another live run holds the checkpoint folder."""


class Checkpointer:
    """Save the trainer's state every `every` steps into `folder`, keeping the last `keep`."""

    def __init__(self, folder: str | Path, every: int = 10, keep: int = 2, save_artifact: bool = True):
        if every < 1:
            raise ValueError(f"checkpoint every must be >= 1, got {every}")
        if keep < 1:
            raise ValueError(f"checkpoint keep must be >= 1, got {keep}")
        self.folder, self.every, self.keep, self.save_artifact = Path(folder), every, keep, save_artifact
        self._lock_fd: int | None = None

    # ------------------------------------------------------------------ ownership

    @property
    def lock_path(self) -> Path:
        return self.folder / ".lock"

    @property
    def is_open(self) -> bool:
        """Whether this object holds the folder's lock."""
        return self._lock_fd is not None

    def open(self) -> Checkpointer:
        """Own the folder for this run: create it, lock it, fail now if it is not writable, clean killed saves."""
        import fcntl

        if self._lock_fd is not None:
            return self
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise PermissionError(
                f"checkpoint folder {self.folder} is not writable ({err.strerror}); "
                "choose a folder this process can write to"
            ) from err
        try:
            # An OS lock, not just a file: it is released when its process dies (kill -9 included),
            # so a lock file left by a dead run is taken over without guessing from pids.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            owner = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            if err.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            alive = owner.isdigit() and _pid_alive(int(owner))
            raise CheckpointFolderInUse(
                f"checkpoint folder {self.folder} is in use by another run (pid {owner}"
                f"{'' if alive else ', not visible from here'}); wait for it to finish or use another folder"
            ) from err
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd
        self._check_writable()
        for p in self.folder.iterdir():  # we own the folder: no save of another run is in flight
            if p.name.startswith(_TMP_PREFIXES):
                shutil.rmtree(p, ignore_errors=True)
        return self

    def close(self) -> None:
        """Release the folder (the lock file stays, unlocked: the next run takes it over)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Checkpointer:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_writable(self) -> None:
        probe = self.folder / f".tmp-step-probe-{uuid.uuid4().hex}"
        try:
            probe.mkdir()
            (probe / "x").write_bytes(b"x")
        except OSError as err:
            self.close()
            raise PermissionError(
                f"checkpoint folder {self.folder} is not writable ({err.strerror}); "
                "choose a folder this process can write to"
            ) from err
        finally:
            shutil.rmtree(probe, ignore_errors=True)

    # ------------------------------------------------------------------ saving

    def due(self, step: int, last: bool = False) -> bool:
        return last or step % self.every == 0

    def save(self, step: int, state: dict, method=None, config: dict | None = None, **metadata) -> Path:
        """Write `state` (and the method's artifact) for `step`, atomically, even when two processes race."""
        self.folder.mkdir(parents=True, exist_ok=True)
        final = self.folder / f"step-{step:06d}"
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-step-{step:06d}-", dir=self.folder))
        try:
            torch.save(state, tmp / "state.pt")
            if method is not None and self.save_artifact:
                method.save(tmp / "artifact", step=step, **metadata)
            meta = {
                "step": step,
                "config": config if config is not None else state.get("config"),
                "sha256": {"state.pt": _sha256(tmp / "state.pt")},
            }
            (tmp / "meta.json").write_text(json.dumps(meta, default=str))
            self._publish(tmp, final)
        except BaseException as err:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(err, (OSError, RuntimeError)) and not isinstance(err, NotImplementedError):
                free = shutil.disk_usage(self.folder).free / 2**20
                raise OSError(
                    getattr(err, "errno", None) or errno.EIO,
                    f"could not write checkpoint step {step} into {self.folder} ({free:.0f} MiB free: "
                    f"is the disk full?): {err}",
                ) from err
            raise
        self._prune()
        return final

    def _publish(self, tmp: Path, final: Path) -> None:
        """Rename `tmp` to `final`; an existing `final` (a rerun, or a racing process) is moved aside first."""
        for _ in range(100):
            try:
                os.rename(tmp, final)  # atomic; fails if `final` is a non-empty folder
                return
            except OSError as err:
                if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
            aside = self.folder / f".old-{final.name}-{uuid.uuid4().hex}"
            try:
                os.rename(final, aside)
            except FileNotFoundError:
                continue  # another process moved it first: try again
            shutil.rmtree(aside, ignore_errors=True)
        raise OSError(errno.EBUSY, f"could not publish checkpoint {final}: it kept being replaced")

    def _prune(self) -> None:
        done = self.checkpoints()
        for old in done[: max(0, len(done) - self.keep)]:
            aside = self.folder / f".old-{old.name}-{uuid.uuid4().hex}"
            try:
                os.rename(old, aside)  # a reader never sees a half-deleted checkpoint
            except OSError:
                continue
            shutil.rmtree(aside, ignore_errors=True)

    # ------------------------------------------------------------------ loading

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first (temporary folders of an interrupted save are ignored)."""
        if not self.folder.exists():
            return []
        return sorted(p for p in self.folder.glob("step-*") if (p / "state.pt").exists())

    def latest(self, check: Callable[[dict], None] | None = None) -> dict | None:
        """The state of the newest intact checkpoint, or None.

        `check(saved_config)` runs on the settings recorded in `meta.json` before any `state.pt` is
        read (it raises to refuse a folder of another run). A damaged newest checkpoint (truncated,
        wrong checksum) is skipped with a warning in favour of the one before it.
        """
        done = self.checkpoints()
        if not done:
            return None
        for path in reversed(done):
            try:
                meta = json.loads((path / "meta.json").read_text())
            except FileNotFoundError:
                raise ValueError(
                    f"{path} has no meta.json: it was written by an older art_lib, whose checkpoints "
                    "cannot be loaded safely; use a new folder"
                ) from None
            except (OSError, ValueError) as err:
                warnings.warn(
                    f"skipping damaged checkpoint {path} (meta.json: {err}); trying the one before it", stacklevel=2
                )
                continue
            if check is not None:
                check(meta.get("config") or {})
            try:
                ok = _sha256(path / "state.pt") == meta["sha256"]["state.pt"]
                state = safe_load(path / "state.pt") if ok else None
            except (OSError, RuntimeError, EOFError, zipfile.BadZipFile, KeyError) as err:
                ok, state = False, None
                detail = f"{type(err).__name__}: {err}"
            else:
                detail = "checksum mismatch"
            if ok:
                return state
            warnings.warn(
                f"skipping damaged checkpoint {path} ({detail}); resuming from the one before it", stacklevel=2
            )
        raise ValueError(f"no intact checkpoint in {self.folder}: all of {[p.name for p in done]} are damaged")

    def artifact(self, step: int | None = None) -> Path | None:
        """Path of the saved artifact (PNG, adapter folder or .pt) of a checkpoint."""
        done = self.checkpoints() if step is None else [self.folder / f"step-{step:06d}"]
        if not done:
            return None
        hits = sorted(done[-1].glob("artifact*"))
        return hits[0] if hits else None
