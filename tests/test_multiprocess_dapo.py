"""Two training processes (`accelerate launch`, gloo on CPU) where one process's DAPO groups all tie: it computes no
loss, yet every process agrees that a loss was computed and applies the same averaged update, the computing
process's gradient divided by the number of processes (tests/scripts/ddp_dapo_tie.py: the tiny random model, HF
rollouts, 2 steps of 4 prompts x 4 samples; about 15 s on 2 cores)."""

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tests" / "scripts" / "ddp_dapo_tie.py"
STEPS = 2


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    """The two processes' records of one 2-process run."""
    out = tmp_path_factory.mktemp("dapo_tie") / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    assert accelerate, "accelerate is a dependency of the kit: its launcher must sit next to this Python"
    # --multi_gpu picks torch.distributed's launcher; the script's Accelerator(cpu=True) then joins a gloo group.
    launch = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    launch += ["--mixed_precision", "no", "--dynamo_backend", "no", str(SCRIPT), str(out)]
    done = subprocess.run(launch, env=env, timeout=300, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    records = [torch.load(f"{out}.rank{r}.pt") for r in (0, 1)]
    assert [r["processes"] for r in records] == [2, 2]
    return records


@pytest.mark.slow
def test_only_rank_0_computes_a_loss(ranks):
    """The set-up holds: at every step rank 0 kept both its groups and had a gradient, while rank 1's groups all
    tied (also after resampling), so it kept none and had no gradient of its own."""
    r0, r1 = ranks
    assert len(r0["grads"]) == len(r1["grads"]) == STEPS
    assert all(g["computed"] and g["own"] is not None and g["own"].abs().max() > 0 for g in r0["grads"])
    assert all(not g["computed"] and g["own"] is None for g in r1["grads"])
    assert r0["history"]["groups_kept"] == [2.0] * STEPS and r1["history"]["groups_kept"] == [0.0] * STEPS


@pytest.mark.slow
def test_both_processes_apply_the_computing_processs_gradient_over_two(ranks):
    """After the all-reduce both processes hold rank 0's gradient / 2, bit for bit, and neither skips the step:
    the process without a loss takes the others' update instead of drifting from them."""
    r0, r1 = ranks
    for g0, g1 in zip(r0["grads"], r1["grads"]):
        assert torch.equal(g0["averaged"], g0["own"] / 2)
        assert torch.equal(g1["averaged"], g0["own"] / 2)
    for r in ranks:
        assert r["history"]["skipped"] == [False] * STEPS
    assert r0["history"]["grad_norm"] == r1["history"]["grad_norm"]


@pytest.mark.slow
def test_pixels_are_bit_identical_and_equal_adam_on_half_the_gradient(ranks):
    """Both processes end with the same pixels, bit for bit, and they are what Adam (the run's lr, clipping and
    projection into [0, 1]) makes of rank 0's gradients divided by 2, replayed here from the same start."""
    r0, r1 = ranks
    assert torch.equal(r0["raw"], r1["raw"])
    raw = r0["initial"].clone().requires_grad_()
    opt = torch.optim.Adam([raw], lr=0.05)
    for g in r0["grads"]:
        raw.grad = g["own"] / 2
        torch.nn.utils.clip_grad_norm_([raw], r0["max_grad_norm"])
        opt.step()
        raw.data.clamp_(0.0, 1.0)
    assert (r0["raw"] - r0["initial"]).abs().max() > 0.05
    assert torch.equal(r0["raw"], raw.detach())


@pytest.mark.slow
def test_the_logged_loss_is_the_whole_batchs_on_both_processes(ranks):
    """The history's loss is the whole batch's on every process: rank 0's share over two (rank 1, without a loss,
    adds 0), never NaN because one process had none."""
    r0, r1 = ranks
    own = [g["own_loss"][0] for g in r0["grads"]]
    assert all(math.isfinite(x) for x in own) and all(math.isnan(g["own_loss"][0]) for g in r1["grads"])
    assert r0["history"]["loss"] == r1["history"]["loss"]
    assert r0["history"]["loss"] == pytest.approx([x / 2 for x in own], rel=1e-6)
