"""Checkpoint folders under hostile or careless use: crafted pickles, two runs, racing saves, damage, no space."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from art_lib.checkpoint import Checkpointer, CheckpointFolderInUse, rng_state, safe_load, set_rng_state
from art_lib.models import tiny_model
from art_lib.pixel_prompt import PixelPrompt
from art_lib.train import train

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = [{"id": str(i), "prompt": f"What is {i} + {i}?", "answer": str(2 * i), "meta": {}} for i in range(6)]


class _Payload:
    """Unpickling this object writes a marker file: the proof that a load ran code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def _craft(path: Path, marker: Path, **extra) -> None:
    """A pickle that runs code; in a checkpoint, meta.json's checksum is updated as an attacker would."""
    torch.save({"x": torch.zeros(1), "evil": _Payload(marker), **extra}, path)
    meta = path.parent / "meta.json"
    if meta.exists():
        data = json.loads(meta.read_text())
        data["sha256"]["state.pt"] = hashlib.sha256(path.read_bytes()).hexdigest()
        meta.write_text(json.dumps(data))


def _train(folder: Path, steps: int = 2, **kw):
    model, proc = tiny_model(seed=0)
    return train(
        model,
        proc,
        EXAMPLES,
        method="art",
        objective="sft",
        artwork=PixelPrompt.from_icon("tools", 256),
        steps=steps,
        batch_size=2,
        lr=0.05,
        checkpoint=Checkpointer(folder, every=1),
        progress=False,
        **kw,
    )


def _python(code: str, *args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


# --------------------------------------------------------------------------- no code from files


def test_crafted_pickle_in_a_checkpoint_does_not_run(tmp_path):
    _train(tmp_path / "ck", steps=1)
    state = next((tmp_path / "ck").glob("step-*")) / "state.pt"
    marker = tmp_path / "marker"
    _craft(state, marker)
    with pytest.raises(ValueError, match="refusing to load"):
        Checkpointer(tmp_path / "ck").latest()
    assert not marker.exists()


def test_crafted_pickle_in_a_soft_prompt_file_does_not_run(tmp_path):
    from art_lib.experiments import evaluate_soft_prompt

    marker, path = tmp_path / "marker", tmp_path / "soft.pt"
    _craft(path, marker, embeds=torch.zeros(4, 8), image_grid_thw=torch.tensor([[1, 4, 4]]))
    model, proc = tiny_model(seed=0)
    with pytest.raises(ValueError, match="refusing to load"):
        evaluate_soft_prompt(model, proc, EXAMPLES[:1], path, benchmark="gsm8k", max_new_tokens=2)
    assert not marker.exists()


def test_rng_state_round_trips_through_a_weights_only_file(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.normal()  # a cached gaussian is part of numpy's state
    torch.save(rng_state(), tmp_path / "rng.pt")
    expected = (random.random(), np.random.random(), np.random.normal(), torch.rand(1))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    set_rng_state(safe_load(tmp_path / "rng.pt"))
    assert (random.random(), np.random.random(), np.random.normal()) == expected[:3]
    assert torch.equal(torch.rand(1), expected[3])
    assert ("cuda" in rng_state()) == torch.cuda.is_available()


# --------------------------------------------------------------------------- one run per folder


def test_a_second_live_run_on_the_same_folder_refuses(tmp_path):
    holder = _python(
        """
        import sys, time
        from art_lib.checkpoint import Checkpointer
        Checkpointer(sys.argv[1]).open()
        print("locked", flush=True)
        time.sleep(60)
    """,
        str(tmp_path),
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(CheckpointFolderInUse, match=f"pid {holder.pid}"):
            _train(tmp_path, steps=1)
        assert not list(tmp_path.glob("step-*"))
    finally:
        holder.kill()
        holder.wait()
    # The holder died by kill -9: its lock died with it and the folder is taken over.
    assert len(_train(tmp_path, steps=1).history) == 1


def test_a_stale_lock_file_of_a_dead_pid_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / ".lock").write_text(f"{dead.pid}\n")
    assert len(_train(tmp_path, steps=1).history) == 1
    ck = Checkpointer(tmp_path).open()
    assert (tmp_path / ".lock").read_text().strip() == str(os.getpid())
    with pytest.raises(CheckpointFolderInUse):  # a second object in the same process is a second run
        Checkpointer(tmp_path).open()
    ck.close()


def test_settings_are_checked_before_any_state_file_is_read(tmp_path):
    _train(tmp_path, steps=1)
    marker = tmp_path / "marker"
    _craft(next(tmp_path.glob("step-*")) / "state.pt", marker)
    with pytest.raises(ValueError, match="other settings"):
        _train(tmp_path, steps=1, lr_schedule="cosine")
    assert not marker.exists()


# --------------------------------------------------------------------------- saving


def test_two_processes_saving_the_same_steps_never_fail(tmp_path):
    code = """
        import os, sys, time, torch
        from art_lib.checkpoint import Checkpointer
        ck = Checkpointer(sys.argv[1], keep=2)
        go = os.path.join(sys.argv[1], "go")
        while not os.path.exists(go):  # start together, so that the saves of one step collide
            time.sleep(0.001)
        end = time.time() + 4
        while time.time() < end:  # the same step over and over: every save races the other process's
            ck.save(1, {"w": torch.full((1000,), 1.0), "config": {}})
        ck.save(2, {"w": torch.full((1000,), 2.0), "config": {}})
        print("ok", flush=True)
    """
    tmp_path.mkdir(exist_ok=True)
    procs = [_python(code, str(tmp_path)) for _ in range(2)]
    time.sleep(5)  # both imported torch and wait
    (tmp_path / "go").write_text("")
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    done = Checkpointer(tmp_path).checkpoints()
    assert [p.name for p in done] == ["step-000001", "step-000002"]
    assert float(Checkpointer(tmp_path).latest()["w"][0]) == 2.0


def test_a_truncated_newest_checkpoint_resumes_from_the_one_before(tmp_path):
    _train(tmp_path, steps=2)
    newest = Checkpointer(tmp_path).checkpoints()[-1] / "state.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    with pytest.warns(UserWarning, match="skipping damaged checkpoint .*step-000002"):
        state = Checkpointer(tmp_path).latest()
    assert state["step"] == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert len(_train(tmp_path, steps=3).history) == 3


def test_temporary_folders_of_killed_saves_are_removed_when_a_run_starts(tmp_path):
    (tmp_path / ".tmp-step-000004-abc").mkdir(parents=True)
    (tmp_path / ".tmp-step-000004-abc" / "state.pt").write_bytes(b"half")
    (tmp_path / ".old-step-000002-def").mkdir()
    _train(tmp_path, steps=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "step-000001"]


def test_an_unwritable_folder_fails_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    seen = []
    with pytest.raises(PermissionError, match="not writable"):
        _train(blocker / "ck", steps=1, eval_fn=lambda m, s: seen.append(s), eval_every=1)
    assert seen == []  # no step ran
    if os.geteuid() != 0:  # root writes through permission bits
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        with pytest.raises(PermissionError, match="not writable"):
            _train(ro, steps=1)


def test_a_full_disk_gives_a_clear_error_and_leaves_no_temporary_folder(tmp_path):
    # RLIMIT_FSIZE makes writes past 64 KiB fail like a full disk would (EFBIG instead of ENOSPC).
    proc = _python(
        """
        import resource, signal, sys, torch
        from art_lib.checkpoint import Checkpointer
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
        try:
            Checkpointer(sys.argv[1]).save(3, {"w": torch.zeros(100000)})
        except OSError as err:
            print(err)
    """,
        str(tmp_path),
    )
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert "could not write checkpoint step 3 into" in out and "is the disk full?" in out
    assert [p.name for p in tmp_path.iterdir()] == []


def test_a_run_killed_by_sigkill_mid_save_resumes_bit_identical(tmp_path):
    code = """
        import sys, torch
        from art_lib.checkpoint import Checkpointer
        from art_lib.models import tiny_model
        from art_lib.pixel_prompt import PixelPrompt
        from art_lib.train import train
        torch.set_num_threads(1)
        examples = [{"id": str(i), "prompt": f"What is {i} + {i}?", "answer": str(2 * i), "meta": {}} for i in range(6)]
        model, proc = tiny_model(seed=0)
        res = train(model, proc, examples, method="art", objective="sft", artwork=PixelPrompt.from_icon("tools", 256),
                    steps=5, batch_size=2, lr=0.05, lr_schedule="cosine", progress=False,
                    checkpoint=Checkpointer(sys.argv[1], every=1),
                    eval_fn=lambda m, step: print(f"step {step}", flush=True), eval_every=1)
        torch.save(res.artwork.raw.detach(), sys.argv[2])
    """
    full = _python(code, str(tmp_path / "a"), str(tmp_path / "a.pt"))
    assert full.wait(timeout=600) == 0, full.stderr.read()[-2000:]
    victim = _python(code, str(tmp_path / "b"), str(tmp_path / "unused.pt"))
    while victim.stdout.readline().strip() != "step 3":  # printed just before step 3 is saved
        assert victim.poll() is None, victim.stderr.read()[-2000:]
    victim.kill()  # SIGKILL: no cleanup runs, the lock dies with the process
    victim.wait()
    resumed = _python(code, str(tmp_path / "b"), str(tmp_path / "b.pt"))
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err[-2000:]
    assert out.split()[1] in ("3", "4")  # resumed after step 2 or 3, not from scratch
    assert torch.equal(torch.load(tmp_path / "a.pt"), torch.load(tmp_path / "b.pt"))
    png = [Checkpointer(tmp_path / run).artifact().read_bytes() for run in ("a", "b")]
    assert png[0] == png[1]
