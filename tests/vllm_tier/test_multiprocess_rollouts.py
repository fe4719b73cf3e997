"""Two training processes (`accelerate launch`, gloo on CPU) share one artwork while their RL rollouts come from
running vLLM servers: each process requests only its own prompts, the pixel gradients are all-reduced, and the run
is the one-process run with the same settings and seeds (tests/scripts/ddp_rollouts.py art: toy:base, GRPO
on toy_add, 3 steps of 4 prompts x 8 samples)."""

import pytest
import torch

STEPS = 3


@pytest.fixture(scope="module")
def runs(one_and_two_processes, tmp_path_factory) -> tuple[dict, list[dict]]:
    """(the one-process run's record, the two processes' records) of the same script against the same servers."""
    return one_and_two_processes("art", tmp_path_factory.mktemp("multiprocess"))


def test_each_process_rolls_out_its_own_half_of_every_batch(runs):
    """Per step, rank 0 sampled the first two prompts of the batch and rank 1 the last two (8 samples each):
    disjoint, and together the one-process run's batch in its order."""
    one, (r0, r1) = runs
    assert len(one["rolled"]) == len(r0["rolled"]) == len(r1["rolled"]) == STEPS
    for whole, a, b in zip(one["rolled"], r0["rolled"], r1["rolled"]):
        assert len(a["ids"]) == len(b["ids"]) == 16 and not set(a["ids"]) & set(b["ids"])
        assert a["ids"] + b["ids"] == whole["ids"]


def test_each_process_samples_what_one_process_samples(runs):
    """Each prompt is seeded by its place in the whole batch (`steps.ShareSeeds`), so the servers return the
    one-process run's completions to the two processes: the runs see the same rollouts."""
    one, (r0, r1) = runs
    for whole, a, b in zip(one["rolled"], r0["rolled"], r1["rolled"]):
        assert a["completions"] + b["completions"] == whole["completions"]


def test_both_processes_end_with_the_same_pixels_after_a_policy_update(runs):
    """The pixel gradients are all-reduced, so the two processes take the same Adam steps, bit for bit; and at
    least one step had an informative group (nonzero gradient) that moved the pixels."""
    _, (r0, r1) = runs
    assert torch.equal(r0["raw"], r1["raw"])
    updates = [g for g, skipped in zip(r0["history"]["grad_norm"], r0["history"]["skipped"]) if not skipped and g > 0]
    assert updates, r0["history"]
    assert (r0["raw"] - r0["initial"]).abs().max() > 0.05


def test_two_processes_match_one_process(runs):
    """Same rollouts, so the same run up to float order: the all-reduce averages two half-batch gradients where one
    process sums the whole batch. Logged loss and reward are the whole batch's (reduced over processes) and equal
    the one-process run's. Pixels: Adam divides by the gradient's own scale, so rounding differences of near-zero
    gradients move a pixel by up to ~lr * steps * 1e-3 = 1.5e-4 (measured 6e-5); the steps that moved the pixels
    moved them by 0.12, and seeding each process's prompts as the first ones (no `ShareSeeds`) lands 0.25 away."""
    one, (r0, _) = runs
    for key in ("reward", "loss", "grad_norm"):
        assert torch.allclose(
            torch.tensor(r0["history"][key]), torch.tensor(one["history"][key]), rtol=1e-4, atol=1e-6
        ), key
    assert torch.allclose(r0["raw"], one["raw"], atol=1e-3)
