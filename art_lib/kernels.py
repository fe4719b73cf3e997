"""Which linear-attention kernels a Qwen3.5 model runs on, and the refusal to spend GPU-hours on the slow ones.

Qwen3.5's Gated DeltaNet layers bind flash-linear-attention's and causal-conv1d's kernels when those packages import
(the `gpu` extra), else transformers' reference torch versions: correct, and fine on a CPU, several times slower
on a GPU.
"""

from __future__ import annotations

import os
import warnings

import torch

__all__ = [
    "DELTA_RULE_KERNELS",
    "SLOW_KERNELS_ENV",
    "linear_attention_kernels",
    "has_linear_attention",
    "check_kernels",
    "runtime_info",
]


def linear_attention_kernels() -> dict[str, str]:
    """Which implementation transformers bound to each Qwen3.5 linear-attention kernel: "fla",
    "causal_conv1d" (the fast packages, found by import when transformers loaded) or "torch" (the slow fallback)."""
    import inspect

    from transformers.models.qwen3_5 import modeling_qwen3_5 as mq

    out = {}
    for name in (
        "causal_conv1d_fn",
        "causal_conv1d_update",
        "torch_chunk_gated_delta_rule",
        "torch_recurrent_gated_delta_rule",
    ):
        fn = getattr(mq, name, None)
        impl = inspect.getclosurevars(fn).nonlocals.get("implementation") if fn is not None else None
        module = getattr(impl, "__module__", "") or ""
        out[name] = "torch" if impl is None or module.startswith("transformers") else module.split(".")[0]
    return out


#: The gated-delta-rule kernels: the reference torch versions loop over tokens in Python and dominate a GPU step.
DELTA_RULE_KERNELS = ("torch_chunk_gated_delta_rule", "torch_recurrent_gated_delta_rule")
SLOW_KERNELS_ENV = "ART_ALLOW_SLOW_KERNELS"


def has_linear_attention(model) -> bool:
    """Whether a loaded model has Gated DeltaNet (linear-attention) layers, as Qwen3.5 does."""
    config = getattr(model, "config", None)
    text = getattr(config, "text_config", config)
    return "linear_attention" in (getattr(text, "layer_types", None) or [])


def check_kernels(
    model, allow_slow: bool | None = None, kernels: dict[str, str] | None = None, device: str | None = None
) -> None:
    """Refuse a CUDA model whose linear-attention layers would run transformers' reference torch kernels.

    On a GPU those are several times slower than flash-linear-attention's (`pip install -e ".[gpu]"` or
    environment.yml): a paper run on them wastes most of its GPU-hours. `allow_slow=True` (or the environment
    variable `ART_ALLOW_SLOW_KERNELS=1` when `allow_slow` is None) runs anyway, with a warning. CPU models and
    models without linear attention pass. The causal-conv1d fallback (torch's conv1d) only warns.
    """
    if device is None:
        p = next(model.parameters(), None)
        device = p.device.type if p is not None else "cpu"
    if torch.device(device).type != "cuda" or not has_linear_attention(model):
        return
    kernels = linear_attention_kernels() if kernels is None else kernels
    slow = sorted(k for k, v in kernels.items() if v == "torch")
    if not slow:
        return
    if allow_slow is None:
        allow_slow = os.environ.get(SLOW_KERNELS_ENV, "") not in ("", "0")
    message = (
        f"the model's linear-attention layers would run transformers' reference torch kernels on CUDA ({slow}): "
        'install the fast ones (pip install -e ".[gpu]", or environment.yml; then check '
        "`python -c 'from art_lib.kernels import linear_attention_kernels as k; print(k())'`)"
    )
    if any(k in slow for k in DELTA_RULE_KERNELS) and not allow_slow:
        raise RuntimeError(f"{message}, or pass allow_slow_kernels=True / set {SLOW_KERNELS_ENV}=1 to run slowly")
    warnings.warn(message, RuntimeWarning, stacklevel=2)


def runtime_info(model) -> dict:
    """What a run actually used, for run_info.json: device, dtype, attention and linear-attention kernels."""
    import transformers

    p = next(model.parameters())
    config = getattr(model, "config", None)
    kernels = linear_attention_kernels()
    info = {
        "device": str(p.device),
        "dtype": str(p.dtype).removeprefix("torch."),
        "attn_implementation": getattr(config, "_attn_implementation", None),
        "linear_attention": "fast"
        if all(v != "torch" for v in kernels.values())
        else "torch"
        if all(v == "torch" for v in kernels.values())
        else "mixed",
        "linear_attention_kernels": kernels,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cuda_available": torch.cuda.is_available(),
    }
    if p.device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(p.device)
    return info
