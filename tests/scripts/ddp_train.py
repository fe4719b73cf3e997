"""Train an artwork with `train(..., accelerator=...)`; run under `accelerate launch` or plainly.

python tests/scripts/ddp_train.py OUT.pt [BATCH]
"""

import sys

import torch
from accelerate import Accelerator

from art_lib.models import tiny_model
from art_lib.pixel_prompt import PixelPrompt
from art_lib.train import train

out, batch = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 4
acc = Accelerator(cpu=True)
model, proc = tiny_model(seed=0)
examples = [
    {"id": str(i), "prompt": f"What is {i} plus {i + 3}?", "answer": str(2 * i + 3), "meta": {}} for i in range(8)
]
res = train(
    model,
    proc,
    examples,
    method="art",
    objective="sft",
    artwork=PixelPrompt.from_noise(64 * 4, seed=1),
    steps=3,
    batch_size=batch,
    lr=0.05,
    seed=0,
    accelerator=acc,
    progress=False,
)
if acc.is_main_process:
    torch.save(
        {"raw": res.artwork.raw.detach(), "loss": res.history["loss"].tolist(), "processes": acc.num_processes}, out
    )
