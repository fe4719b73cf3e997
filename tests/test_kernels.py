"""A GPU run on the slow linear-attention fallback is refused unless asked for (issue: no GPU-hour wasted)."""

from __future__ import annotations

import pytest

from art_lib.kernels import DELTA_RULE_KERNELS, check_kernels, linear_attention_kernels
from art_lib.models import load_frozen

FAST = {"causal_conv1d_fn": "causal_conv1d", "causal_conv1d_update": "causal_conv1d"} | dict.fromkeys(
    DELTA_RULE_KERNELS, "fla"
)


@pytest.fixture(scope="module")
def toy():
    return load_frozen("toy:small")[0]


def test_cuda_with_the_reference_delta_rule_is_refused_with_the_fix(toy, monkeypatch):
    monkeypatch.delenv("ART_ALLOW_SLOW_KERNELS", raising=False)
    slow = FAST | {"torch_chunk_gated_delta_rule": "torch"}
    with pytest.raises(RuntimeError, match=r'pip install -e "\.\[gpu\]".*allow_slow_kernels=True'):
        check_kernels(toy, kernels=slow, device="cuda")
    with pytest.warns(RuntimeWarning, match="reference torch kernels"):
        check_kernels(toy, allow_slow=True, kernels=slow, device="cuda")
    monkeypatch.setenv("ART_ALLOW_SLOW_KERNELS", "1")
    with pytest.warns(RuntimeWarning):
        check_kernels(toy, kernels=slow, device="cuda")


def test_fast_kernels_a_cpu_or_a_conv_only_fallback_pass(toy, recwarn):
    check_kernels(toy, kernels=FAST, device="cuda")
    check_kernels(toy, kernels=dict.fromkeys(FAST, "torch"), device="cpu")  # CPU runs have no fast kernels
    assert not recwarn.list
    with pytest.warns(RuntimeWarning, match="causal_conv1d_fn"):
        check_kernels(toy, kernels=FAST | {"causal_conv1d_fn": "torch"}, device="cuda")


def test_this_machine_reports_its_kernels_and_loads_on_cpu(toy):
    kernels = linear_attention_kernels()
    assert set(DELTA_RULE_KERNELS) <= set(kernels)
    check_kernels(toy)  # the loaded toy model is on the CPU: never refused
