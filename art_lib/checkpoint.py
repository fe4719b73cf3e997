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

A folder may hold other things (a user's `step-0-my-backup/`): only names this module writes
(`step-` and the zero-padded step, ordered by number) are checkpoints, and only they are pruned.
Files are read only when they are regular files (no link is followed, no FIFO or device is
opened) and `meta.json` only up to `MAX_META_BYTES`; `check_train_state` checks a state read back.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import random
import re
import shutil
import stat
import tempfile
import uuid
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

_TMP_PREFIXES = (".tmp-step-", ".old-step-")
_STEP_NAME = re.compile(r"step-([0-9]{6,})")
MAX_META_BYTES = 1 << 20  # a meta.json holds a step, a checksum and the run's settings: a few KiB


def _folder_step(name: str) -> int | None:
    """The step of a folder named as `save` names them (`step-000012`), else None."""
    match = _STEP_NAME.fullmatch(name)
    if match is None or f"step-{int(match[1]):06d}" != name:  # `step-0000012` is not a name `save` writes
        return None
    return int(match[1])


def _open_regular(path: Path, follow: bool = False):
    """Open `path` for reading if it is a regular file: no FIFO or device, no link unless `follow`."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:  # O_NONBLOCK: opening a FIFO would otherwise wait for a writer
        fd = os.open(path, flags)
    except OSError as err:
        if err.errno != errno.ELOOP:
            raise
        raise OSError(errno.ELOOP, f"{path} is not a regular file (a symbolic link); refusing to follow it") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise OSError(errno.EINVAL, f"{path} is not a regular file (mode {stat.filemode(mode)}); refusing to read it")
    return os.fdopen(fd, "rb")


def safe_load(path: str | Path, file=None) -> dict:
    """`torch.load` restricted to tensors and plain containers: a crafted pickle raises instead of running.

    `path` must be a regular file or a link to one (OSError otherwise: a FIFO or device would hang or
    never end); `file`, an open file of `path`, is read instead.
    """
    try:
        if file is not None:
            return torch.load(file, weights_only=True, map_location="cpu")
        with _open_regular(Path(path), follow=True) as f:
            return torch.load(f, weights_only=True, map_location="cpu")
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


def _sha256(f) -> str:
    h = hashlib.sha256()
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


def _check_lock_file(fd: int, path: Path) -> None:
    """The lock file must be a plain file of its own: its content is overwritten with our pid (closes `fd` if not)."""
    st = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(st.st_mode):
        problem = f"is not a regular file (mode {stat.filemode(st.st_mode)})"
    elif st.st_nlink > 1:
        problem = f"is a hard link (the same file has {st.st_nlink} names)"
    if problem is not None:
        os.close(fd)
        raise PermissionError(f"{path} {problem}; refusing to overwrite it with a pid: remove it or use another folder")


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
            # O_NOFOLLOW: a `.lock` planted as a link would have us truncate the file it points to.
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise PermissionError(
                    f"{self.lock_path} is a symbolic link; refusing to follow it (taking the lock would overwrite "
                    "the file it points to): remove it, or use another folder"
                ) from None
            raise PermissionError(
                f"checkpoint folder {self.folder} is not writable ({err.strerror}); "
                "choose a folder this process can write to"
            ) from err
        _check_lock_file(fd, self.lock_path)
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
        if not isinstance(step, int) or isinstance(step, bool) or step < 0:
            raise ValueError(f"checkpoint step must be an int >= 0, got {step!r}")
        self.folder.mkdir(parents=True, exist_ok=True)
        final = self.folder / f"step-{step:06d}"
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-step-{step:06d}-", dir=self.folder))
        try:
            torch.save(state, tmp / "state.pt")
            if method is not None and self.save_artifact:
                method.save(tmp / "artifact", step=step, **metadata)
            meta = {"step": step, "config": config if config is not None else state.get("config")}
            with open(tmp / "state.pt", "rb") as f:
                meta["sha256"] = {"state.pt": _sha256(f)}
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
        """Complete checkpoints, oldest first by step; other names, links and temporary folders are ignored."""
        if not self.folder.is_dir():
            return []
        found = []
        for p in self.folder.iterdir():
            step = _folder_step(p.name)
            try:  # lstat: a link named like a checkpoint is not one of ours
                if step is None or not stat.S_ISDIR(p.lstat().st_mode) or not os.path.lexists(p / "state.pt"):
                    continue
            except FileNotFoundError:  # pruned by a racing save
                continue
            found.append((step, p))
        return [p for _, p in sorted(found)]

    def latest(
        self, check: Callable[[dict], None] | None = None, validate: Callable[[dict, int], None] | None = None
    ) -> dict | None:
        """The state of the newest intact checkpoint, or None.

        `check(saved_config)` runs on the settings recorded in `meta.json` before any `state.pt` is
        read (it raises to refuse a folder of another run). A damaged newest checkpoint (truncated,
        wrong checksum, malformed `meta.json`, a link or FIFO) is skipped with a warning in favour of
        the one before it. `validate(state, step)` checks the state read back (e.g. `check_train_state`):
        its ValueError is raised naming the checkpoint, since a state with a valid checksum is not damage.
        """
        done = self.checkpoints()
        if not done:
            return None
        for path in reversed(done):
            try:
                meta = _read_meta(path)
            except FileNotFoundError:
                raise ValueError(
                    f"{path} has no meta.json: it was written by an older art_lib, whose checkpoints "
                    "cannot be loaded safely; use a new folder"
                ) from None
            except (OSError, ValueError, RecursionError) as err:
                warnings.warn(
                    f"skipping damaged checkpoint {path} (meta.json: {err}); trying the one before it", stacklevel=2
                )
                continue
            if check is not None:
                check(meta["config"] or {})
            try:
                state = _load_verified(path / "state.pt", meta["sha256"]["state.pt"])
            except (OSError, RuntimeError, EOFError, zipfile.BadZipFile) as err:
                warnings.warn(
                    f"skipping damaged checkpoint {path} ({type(err).__name__}: {err}); trying the one before it",
                    stacklevel=2,
                )
                continue
            try:
                if not isinstance(state, dict):
                    raise ValueError(f"its state is a {type(state).__name__}, not a dict")
                if validate is not None:
                    validate(state, meta["step"])
            except ValueError as err:
                raise ValueError(f"checkpoint {path} cannot be resumed: {err}") from err
            return state
        raise ValueError(f"no intact checkpoint in {self.folder}: all of {[p.name for p in done]} are damaged")

    def artifact(self, step: int | None = None) -> Path | None:
        """Path of the saved artifact (PNG, adapter folder or .pt) of a checkpoint."""
        done = self.checkpoints() if step is None else [self.folder / f"step-{step:06d}"]
        if not done:
            return None
        hits = sorted(done[-1].glob("artifact*"))
        return hits[0] if hits else None


def _read_meta(folder: Path) -> dict:
    """`meta.json` of a checkpoint folder, checked; OSError or ValueError say what is wrong with it."""
    with _open_regular(folder / "meta.json") as f:
        raw = f.read(MAX_META_BYTES + 1)
    if len(raw) > MAX_META_BYTES:
        raise ValueError(f"larger than {MAX_META_BYTES} bytes")
    meta = json.loads(raw)
    if not isinstance(meta, dict):
        raise ValueError(f"not a JSON object (got {type(meta).__name__})")
    step, sha, config = meta.get("step"), meta.get("sha256"), meta.get("config")
    if type(step) is not int or step != _folder_step(folder.name):
        raise ValueError(f"'step' is {step!r:.40}, not the folder's step {_folder_step(folder.name)}")
    if not isinstance(sha, dict) or not re.fullmatch(r"[0-9a-f]{64}", str(sha.get("state.pt"))):
        raise ValueError(f"'sha256' must map 'state.pt' to a SHA-256 hex digest, got {sha!r:.80}")
    if config is not None and not isinstance(config, dict):
        raise ValueError(f"'config' must be an object, got {type(config).__name__}")
    return meta


def _load_verified(path: Path, sha256: str) -> dict:
    """`state.pt`, loaded once it matches its recorded checksum (both read from the same open file)."""
    with _open_regular(path) as f:
        if _sha256(f) != sha256:
            raise OSError(errno.EIO, "checksum mismatch")
        f.seek(0)
        return safe_load(path, file=f)


# What `train` saves in a checkpoint, with the type of each entry (see `check_train_state`).
TRAIN_STATE_TYPES = {
    "method": dict,
    "optimizer": dict,
    "scheduler": dict,
    "rng": dict,
    "history": list,
    "step": int,
    "nonfinite": int,
    "config": dict,
}


def check_train_state(state: dict, step: int, steps: int) -> None:
    """A trainer state read back from checkpoint `step` for a run of `steps`: keys, types, ranges, else ValueError."""
    missing = sorted(set(TRAIN_STATE_TYPES) - set(state))
    if missing:
        raise ValueError(f"the state misses {', '.join(map(repr, missing))} (it was not written by `train`)")
    for key, kind in TRAIN_STATE_TYPES.items():
        if not isinstance(state[key], kind) or isinstance(state[key], bool):
            raise ValueError(f"{key!r} must be a {kind.__name__}, got {type(state[key]).__name__}")
    if state["step"] != step:
        raise ValueError(f"'step' is {state['step']} but the checkpoint folder is step {step}")
    if step > steps:
        raise ValueError(
            f"it is at step {step}, beyond this run's steps={steps} (steps below the newest checkpoint); "
            f"rerun with steps >= {step}, or use a new folder"
        )
    history = state["history"]
    if len(history) != step or not all(isinstance(row, dict) for row in history):
        raise ValueError(f"'history' must hold one dict per step ({step}), got {len(history)} entries")
    if not 0 <= state["nonfinite"] <= step:
        raise ValueError(f"'nonfinite' must be an int in [0, {step}], got {state['nonfinite']}")
    _check_rng_state(state["rng"])


def _check_rng_state(rng: dict) -> None:
    """The layout `rng_state` records, so that `set_rng_state` cannot fail half way through a resume."""
    py, npy = rng.get("python"), rng.get("numpy")
    ok = (
        isinstance(rng.get("torch"), torch.Tensor)
        and rng["torch"].dtype == torch.uint8
        and isinstance(py, dict)
        and type(py.get("version")) is int
        and isinstance(py.get("internal"), list)
        and len(py["internal"]) == 625  # Mersenne Twister: 624 words and a position
        and all(type(x) is int for x in py["internal"])
        and (py.get("gauss") is None or isinstance(py["gauss"], float))
        and isinstance(npy, dict)
        and isinstance(npy.get("keys"), torch.Tensor)
        and tuple(npy["keys"].shape) == (624,)
        and all(type(npy.get(k)) is int for k in ("pos", "has_gauss"))
        and isinstance(npy.get("cached_gaussian"), float)
    )
    if not ok:
        raise ValueError("'rng' is not the random-number state `rng_state` records (torch, python and numpy)")
