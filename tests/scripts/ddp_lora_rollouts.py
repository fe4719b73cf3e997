"""Train a LoRA adapter with GRPO on toy_add, rollouts from running vLLM servers; run under `accelerate launch` or
plainly.

python tests/scripts/ddp_lora_rollouts.py OUT_PREFIX URL[,URL...]

Every process writes OUT_PREFIX.rank<r>.pt: its final adapter weights, the history, per step the ids of the examples
it had rolled out with their completions (recorded by the reward function), and the adapter versions its generator
loaded (how many, the current one's name, and the LoRA names each server lists after the run).
"""

import sys

import torch
from accelerate import Accelerator

from art_lib.generation import ServerGenerator
from art_lib.models import load_frozen
from art_lib.registry import resolve_model
from art_lib.rewards import get_scorer
from art_lib.toy.benchmarks import load_toy, max_new_tokens
from art_lib.train import train

out, urls = sys.argv[1], sys.argv[2].split(",")
acc = Accelerator(cpu=True)
model, processor = load_frozen(resolve_model("toy:base")[0])
score = get_scorer("toy_add")
generator = ServerGenerator(urls)
rolled: list[dict] = []


def reward_fn(completions, examples):
    """toy_add's exact-match score plus 0.5 for any digit (the base model's answers are wrong, so the exact score
    alone gives every group equal rewards); records which examples this process rolled out and what it sampled."""
    rolled.append({"ids": [e["id"] for e in examples], "completions": list(completions)})
    return [score(c, e) + 0.5 * any(ch.isdigit() for ch in c) for c, e in zip(completions, examples)]


res = train(
    model,
    processor,
    load_toy("add", "train")[:16],
    method="lora",
    objective="grpo",
    lora_rank=8,
    steps=2,
    batch_size=4,
    num_generations=8,
    max_completion_length=max_new_tokens("add"),
    temperature=2.0,
    lr=0.005,
    seed=0,
    reward_fn=reward_fn,
    rollout_engine=generator,
    accelerator=acc,
    progress=False,
)
torch.save(
    {
        "adapter": res.method.state_dict(),
        "history": res.history.to_dict("list"),
        "rolled": rolled,
        "versions": generator.adapters.count,
        "served_as": generator._adapter[1],
        "listed": [[n for n in client.models() if n.startswith("art-lora-")] for client in generator.clients],
        "processes": acc.num_processes,
    },
    f"{out}.rank{acc.process_index}.pt",
)
generator.close()
