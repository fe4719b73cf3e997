"""LoRA in two training processes (`accelerate launch`, gloo on CPU) with RL rollouts from running vLLM servers: the
adapter gradients are all-reduced, each process loads every new adapter version into the servers under a new name,
and the run is the one-process run with the same settings and seeds (tests/scripts/ddp_rollouts.py lora: toy:base,
LoRA rank 8, GRPO on toy_add, 2 steps of 4 prompts x 8 samples)."""

import pytest
import torch

STEPS = 2


@pytest.fixture(scope="module")
def runs(one_and_two_processes, tmp_path_factory) -> tuple[dict, list[dict]]:
    """(the one-process run's record, the two processes' records) of the same script against the same servers."""
    return one_and_two_processes("lora", tmp_path_factory.mktemp("multiprocess_lora"))


def test_each_lora_process_samples_its_half_of_what_one_process_samples(runs):
    """Per step rank 0 rolled out the first two prompts and rank 1 the last two, and the servers (with each
    process's own copy of the adapter) returned the one-process run's completions: the same adapter was served."""
    one, (r0, r1) = runs
    assert len(one["rolled"]) == len(r0["rolled"]) == len(r1["rolled"]) == STEPS
    for whole, a, b in zip(one["rolled"], r0["rolled"], r1["rolled"]):
        assert a["ids"] + b["ids"] == whole["ids"]
        assert a["completions"] + b["completions"] == whole["completions"]


def test_every_adapter_version_is_served_under_a_new_name(runs):
    """Each process saved one adapter version per step (the start, then after each update but the last) and its
    current one is listed by both servers, under a name of this process's run ending in the version number."""
    for record in runs[1]:
        assert record["versions"] == STEPS
        assert record["served_as"].endswith(f"-{STEPS}")
        assert all(record["served_as"] in listed for listed in record["listed"])


def test_both_processes_end_with_the_same_adapter_after_an_update(runs):
    """The adapter gradients are all-reduced, so both processes take the same Adam steps, bit for bit; and an
    update happened (lora_B starts at zero: the adapter starts as the base model)."""
    _, (r0, r1) = runs
    assert r0["adapter"].keys() == r1["adapter"].keys()
    assert all(torch.equal(r0["adapter"][k], r1["adapter"][k]) for k in r0["adapter"])
    assert not any(r0["history"]["skipped"]), r0["history"]
    assert max(v.abs().max() for k, v in r0["adapter"].items() if "lora_B" in k) > 1e-3


def test_two_lora_processes_match_one_process(runs):
    """Same rollouts, so the same run up to float order: logged loss, reward and gradient norm equal the
    one-process run's, and so do the adapter weights up to Adam's rounding: the all-reduce averages two half-batch
    gradients where one process sums the whole batch, and Adam divides by the gradient's own scale, so near-zero
    components move by up to lr (measured: 3.4e-5 at most, where the two steps moved lora_B by 1.0e-2)."""
    one, (r0, _) = runs
    for key in ("reward", "loss", "grad_norm"):
        assert torch.allclose(
            torch.tensor(r0["history"][key]), torch.tensor(one["history"][key]), rtol=1e-4, atol=1e-6
        ), key
    gap = max((r0["adapter"][k] - one["adapter"][k]).abs().max() for k in one["adapter"])
    print(f"LoRA two processes vs one: largest weight difference {float(gap):.2e}")
    assert gap < 2e-4
