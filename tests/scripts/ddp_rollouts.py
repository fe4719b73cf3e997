"""Train an artwork or a LoRA adapter with GRPO on toy_add, rollouts from running vLLM servers; run under
`accelerate launch` or plainly.

python tests/scripts/ddp_rollouts.py art|lora OUT_PREFIX URL[,URL...]

Every process writes OUT_PREFIX.rank<r>.pt: the history and per step the ids of the examples it had rolled out with
their completions (recorded by the reward function, which sees exactly them); with art, its final and initial raw
pixels (3 steps, the servers named by their URLs); with lora (rank 8, 2 steps, through a ServerGenerator), its final
adapter weights and the adapter versions its generator loaded (how many, the current one's name, and the LoRA names
each server lists after the run).
"""

import sys

import torch
from accelerate import Accelerator

from art_lib.generation import ServerGenerator
from art_lib.models import load_frozen
from art_lib.pixel_prompt import PixelPrompt
from art_lib.registry import resolve_model
from art_lib.rewards import get_scorer
from art_lib.toy.benchmarks import load_toy, max_new_tokens
from art_lib.train import train

SETTINGS = {
    "art": {"artwork": PixelPrompt.from_icon("math", 64), "steps": 3, "lr": 0.05},
    "lora": {"lora_rank": 8, "steps": 2, "lr": 0.005},
}

method, out, urls = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
acc = Accelerator(cpu=True)
model, processor = load_frozen(resolve_model("toy:base")[0])
score = get_scorer("toy_add")
generator = ServerGenerator(urls) if method == "lora" else None
rolled: list[dict] = []


def reward_fn(completions, examples):
    """toy_add's exact-match score plus 0.5 for any digit (the untrained artwork's or base model's answers are all
    wrong, so the exact score alone gives every group equal rewards); records which examples this process rolled out
    and what it sampled."""
    rolled.append({"ids": [e["id"] for e in examples], "completions": list(completions)})
    return [score(c, e) + 0.5 * any(ch.isdigit() for ch in c) for c, e in zip(completions, examples)]


res = train(
    model,
    processor,
    load_toy("add", "train")[:16],
    method=method,
    objective="grpo",
    **SETTINGS[method],
    batch_size=4,
    num_generations=8,
    max_completion_length=max_new_tokens("add"),
    temperature=2.0,
    seed=0,
    reward_fn=reward_fn,
    rollout_engine=generator or urls,
    accelerator=acc,
    progress=False,
)
record = {"history": res.history.to_dict("list"), "rolled": rolled, "processes": acc.num_processes}
if generator is None:
    record |= {"raw": res.artwork.raw.detach(), "initial": PixelPrompt.from_icon("math", 64).raw.detach()}
else:
    record |= {
        "adapter": res.method.state_dict(),
        "versions": generator.adapters.count,
        "served_as": generator._adapter[1],
        "listed": [[n for n in client.models() if n.startswith("art-lora-")] for client in generator.clients],
    }
    generator.close()
torch.save(record, f"{out}.rank{acc.process_index}.pt")
