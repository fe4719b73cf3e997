"""DAPO with `train(..., accelerator=...)` where rank 1's groups all tie; run under `accelerate launch` (2 processes).

python tests/scripts/ddp_dapo_tie.py OUT_PREFIX

The reward is chosen per process: rank 1 gives every completion 0 (every group ties, so it computes no loss, even
after resampling), rank 0 scores a completion by its length (its groups differ). Every process writes
OUT_PREFIX.rank<r>.pt: its initial and final raw pixels, the history, and per step its own gradient before the
all-reduce (None where it computed no loss), its logged losses, and the averaged gradient after it (recorded around
`steps.reduce_across_processes`, which `train` calls once per step).
"""

import sys

import torch
from accelerate import Accelerator

import art_lib.train as train_module
from art_lib.models import tiny_model
from art_lib.pixel_prompt import PixelPrompt

out = sys.argv[1]
acc = Accelerator(cpu=True)
model, proc = tiny_model(seed=0)
examples = [
    {"id": str(i), "prompt": f"What is {i} plus {i + 3}?", "answer": str(2 * i + 3), "meta": {}} for i in range(8)
]
artwork = PixelPrompt.from_noise(64 * 4, seed=1)
grads: list[dict] = []
reduce = train_module.reduce_across_processes


def recorded_reduce(params, logs, bad_source, computed, accelerator):
    """`steps.reduce_across_processes`, recording this process's gradient before it and the average after it."""
    (p,) = params
    own, own_loss = None if p.grad is None else p.grad.detach().clone(), [log["loss"] for log in logs]
    result = reduce(params, logs, bad_source, computed, accelerator)
    grads.append({"own": own, "computed": computed, "averaged": p.grad.detach().clone(), "own_loss": own_loss})
    return result


def reward_fn(completions, examples):
    """Rank 1: 0 for all (every group ties); rank 0: the completion's length (its groups differ)."""
    return [0.0 if acc.process_index else float(len(c)) for c in completions]


train_module.reduce_across_processes = recorded_reduce
res = train_module.train(
    model,
    proc,
    examples,
    method="art",
    objective="dapo",
    artwork=artwork,
    steps=2,
    batch_size=4,
    num_generations=4,
    max_completion_length=6,
    max_resample_rounds=1,
    overlong_filter=False,  # the random model never stops: with the filter every completion would be masked
    temperature=1.0,
    lr=0.05,
    seed=0,
    reward_fn=reward_fn,
    accelerator=acc,
    progress=False,
)
torch.save(
    {
        "initial": artwork.raw.detach(),
        "raw": res.artwork.raw.detach(),
        "history": res.history.to_dict("list"),
        "grads": grads,
        "processes": acc.num_processes,
        "max_grad_norm": res.config["max_grad_norm"],
    },
    f"{out}.rank{acc.process_index}.pt",
)
