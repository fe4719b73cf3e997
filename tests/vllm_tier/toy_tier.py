"""The vLLM tier's toy world: the shipped `toy:base` and what is learned on it in the fixtures (tests only).

`toy:base` is a Qwen3.5-architecture checkpoint with linear-attention heads of 64, which vLLM's CPU engine
serves in bfloat16. The picture-taught toy tasks (a prompt is only "3 and 7"; the task must come from the
artwork or the adapter) make accuracy meaningful: an untrained model scores 0, a learned artwork 1.
"""

from __future__ import annotations

from art_lib.toy.tasks import PICTURE_TASKS as TASKS  # noqa: F401  (add, sub, max, tool)

MODEL = "toy:base"
SERVED_NAME = "art-toy"
SFT_STEPS = 60  # tab2 trains 300; 60 already reach 1.00 on every picture-taught task (10-20 s each on CPU)
ART = dict(method="art", objective="sft", batch_size=16, lr=0.05)  # tab2_art_vs_lora's settings
LORA = dict(method="lora", objective="sft", batch_size=16, lr=0.005, weight_decay=0.05, lora_rank=8)


def benchmark(task: str) -> str:
    """The registered benchmark name of a toy task."""
    return f"toy_{task}"


def adapter_name(task: str) -> str:
    """The name a task's LoRA adapter is served under."""
    return f"lora-{task}"


def same_fraction(a, b) -> float:
    """Fraction of rows whose completions are identical."""
    return float((a.rows["completion"].reset_index(drop=True) == b.rows["completion"].reset_index(drop=True)).mean())
