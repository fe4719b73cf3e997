"""Checkpoint folders under hostile or careless use: crafted pickles, two runs, racing saves, damage, no space,
foreign names, links and FIFOs, malformed meta.json, states with a valid checksum but impossible content."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
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


# --------------------------------------------------------------------------- tampered or shared folders


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A real run of 3 steps: step-000002 and step-000003 kept."""
    folder = tmp_path_factory.mktemp("trained")
    _train(folder, steps=3)
    return folder


@pytest.fixture
def run(trained, tmp_path) -> Path:
    """A private copy of the trained folder."""
    return shutil.copytree(trained, tmp_path / "run")


def _rewrite_state(path: Path, **changes) -> None:
    """Change the state of checkpoint folder `path` and update its checksum, as an attacker would."""
    state = safe_load(path / "state.pt") | changes
    for key in [k for k, v in changes.items() if v is None]:
        del state[key]
    torch.save(state, path / "state.pt")
    meta = json.loads((path / "meta.json").read_text())
    meta["sha256"]["state.pt"] = hashlib.sha256((path / "state.pt").read_bytes()).hexdigest()
    (path / "meta.json").write_text(json.dumps(meta))


def _two_saves(folder: Path, **kw) -> Checkpointer:
    ck = Checkpointer(folder, **kw)
    for step in (1, 2):
        ck.save(step, {"w": torch.full((4,), float(step))})
    return ck


# --------------------------------------------------------------------------- resume


def test_resuming_with_fewer_steps_than_the_newest_checkpoint_is_an_error(run):
    with pytest.raises(ValueError, match=r"step-000003 .*at step 3, beyond this run's steps=2"):
        _train(run, steps=2)
    assert len(_train(run, steps=3).history) == 3  # the same folder with enough steps resumes


@pytest.mark.parametrize(
    "changes, error",
    [
        ({"step": 10**6}, r"'step' is 1000000 but the checkpoint folder is step 3"),
        ({"step": -3}, r"'step' is -3 but the checkpoint folder is step 3"),
        ({"method": None}, r"misses 'method'"),
        ({"history": "rows"}, r"'history' must be a list, got str"),
        ({"nonfinite": -1}, r"'nonfinite' must be an int in \[0, 3\], got -1"),
        ({"rng": {"torch": torch.zeros(3)}}, r"'rng'"),
    ],
)
def test_a_state_with_a_valid_checksum_but_wrong_content_is_refused(run, changes, error):
    _rewrite_state(run / "step-000003", **changes)
    with pytest.raises(ValueError, match=rf"step-000003 cannot be resumed: .*{error}"):
        _train(run, steps=4)


@pytest.mark.parametrize("meta", ["null", "[1, 2]", "{bad json", "sha256", "config", "step"])
def test_a_malformed_meta_json_skips_that_checkpoint_with_a_warning(run, meta):
    path = run / "step-000003" / "meta.json"
    good = json.loads(path.read_text())
    if meta in good:
        path.write_text(json.dumps(good | {meta: "abc" if meta != "step" else 2}))
    else:
        path.write_text(meta)
    with pytest.warns(UserWarning, match=r"skipping damaged checkpoint .*step-000003 \(meta.json"):
        result = _train(run, steps=3)
    assert list(result.history["step"]) == [1, 2, 3]  # resumed from step 2, step 3 run again


# --------------------------------------------------------------------------- names and order


def test_only_folders_named_as_the_kit_writes_them_are_checkpoints(tmp_path):
    for name in ("step-0-my-backup", "step-final", "step-12", "step-0000003"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "state.pt").write_text("mine")
    ck = _two_saves(tmp_path, keep=1)
    assert [p.name for p in ck.checkpoints()] == ["step-000002"]
    assert float(ck.latest()["w"][0]) == 2.0
    for name in ("step-0-my-backup", "step-final", "step-12", "step-0000003"):  # never pruned
        assert (tmp_path / name / "state.pt").read_text() == "mine"


def test_checkpoints_past_a_million_steps_are_ordered_by_number(tmp_path):
    ck = Checkpointer(tmp_path, keep=2)
    for step in (999_999, 1_000_000, 1_000_001):
        ck.save(step, {"w": torch.full((1,), float(step))})
    assert [p.name for p in ck.checkpoints()] == ["step-1000000", "step-1000001"]
    assert float(ck.latest()["w"][0]) == 1_000_001


def test_a_negative_step_is_not_saved(tmp_path):
    with pytest.raises(ValueError, match="step must be an int >= 0, got -3"):
        Checkpointer(tmp_path).save(-3, {"w": torch.zeros(1)})
    assert not list(tmp_path.glob("step-*"))


# --------------------------------------------------------------------------- links, FIFOs, devices


@pytest.mark.parametrize("kind", ["symlink", "hardlink"])
def test_a_linked_lock_file_is_refused_and_its_target_left_intact(tmp_path, kind):
    victim, folder = tmp_path / "victim.txt", tmp_path / "ck"
    victim.write_text("precious")
    folder.mkdir()
    (os.symlink if kind == "symlink" else os.link)(victim, folder / ".lock")
    with pytest.raises(PermissionError, match=r"\.lock is a (symbolic|hard) link"):
        Checkpointer(folder).open()
    assert victim.read_text() == "precious"


def _in_subprocess(code: str, path: Path) -> subprocess.CompletedProcess:
    """`code` in a child with a memory cap and a timeout: a hang or an endless read fails the test, not blocks it."""
    proc = _python(
        "import resource\nresource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))\n" + textwrap.dedent(code),
        str(path),
    )
    try:
        out, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"hung: {code}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize(
    "name, plant",
    [
        ("state.pt", lambda p: os.symlink("/dev/zero", p)),
        ("state.pt", os.mkfifo),
        ("meta.json", lambda p: os.symlink("/dev/zero", p)),
        ("meta.json", os.mkfifo),
    ],
    ids=["state-to-dev-zero", "state-fifo", "meta-to-dev-zero", "meta-fifo"],
)
def test_a_link_or_fifo_in_a_checkpoint_is_skipped_not_read(tmp_path, name, plant):
    _two_saves(tmp_path)
    (tmp_path / "step-000002" / name).unlink()
    plant(tmp_path / "step-000002" / name)
    out = _in_subprocess(
        """
        import sys, warnings
        from art_lib.checkpoint import Checkpointer
        warnings.simplefilter("always")
        print("w =", float(Checkpointer(sys.argv[1]).latest()["w"][0]), flush=True)
        """,
        tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "w = 1.0" in out.stdout
    assert re.search(rf"skipping damaged checkpoint .*step-000002 .*{name} is not a regular file", out.stderr)


def test_an_oversized_meta_json_is_skipped_without_reading_it_whole(tmp_path):
    ck = _two_saves(tmp_path)
    meta = tmp_path / "step-000002" / "meta.json"
    good = json.loads(meta.read_text())
    meta.write_text(json.dumps(good | {"padding": "x" * (5 << 20)}))
    with pytest.warns(UserWarning, match=r"step-000002 \(meta.json: .*larger than"):
        assert float(ck.latest()["w"][0]) == 1.0


@pytest.mark.parametrize("plant", [os.mkfifo, lambda p: os.symlink("/dev/zero", p)], ids=["fifo", "to-dev-zero"])
def test_safe_load_reads_regular_files_only(tmp_path, plant):
    plant(tmp_path / "soft.pt")
    out = _in_subprocess(
        "import sys\nfrom art_lib.checkpoint import safe_load\nsafe_load(sys.argv[1])", tmp_path / "soft.pt"
    )
    assert out.returncode == 1 and "soft.pt is not a regular file" in out.stderr, out.stderr[-2000:]
    torch.save({"embeds": torch.ones(2)}, tmp_path / "real.pt")
    os.symlink(tmp_path / "real.pt", tmp_path / "link.pt")  # a user's link to a real file is fine
    assert torch.equal(safe_load(tmp_path / "link.pt")["embeds"], torch.ones(2))
