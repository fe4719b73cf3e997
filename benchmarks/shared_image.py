"""Forward + backward time of three paths for one artwork shown to B rows, at B = 8 and 16.

    python benchmarks/shared_image.py [--steps 3] [--batches 8,16] [--skip-real] [--device cpu] [--dtype float32]

naive: B image copies through the vision tower and the language model (the official processor's
batch); vision once: the vision tower runs once, the language model still sees B copies of the
image tokens; shared prefix: the tokens every row starts with (template opening + image) also run
once through the language model and the rows continue from their cache (`shared_prefix=True`).
Runs the tiny model and the real Qwen3.5-0.8B architecture (random weights, no download), side by
side in one run. Numbers depend on the machine: re-run them.
"""

import argparse
import time

import torch

from art_lib.forward import completion_logprobs
from art_lib.models import random_full_model, tiny_model
from art_lib.pixel_prompt import PixelPrompt
from art_lib.preprocess import num_visual_tokens, preprocess_image
from art_lib.prompting import chat_text, encode

PROMPTS = [
    "What is 17 + 25?",
    "Natalia sold clips to 48 of her friends in April, and then half as many in May.",
    "How many legs do 3 spiders have?",
    "Compute 12 * 11.",
    "What is 2 to the power 10?",
    "A train travels 60 km in 1.5 hours. What is its speed?",
    "Is 97 prime?",
    "Add 4, 5 and 6.",
]


PATHS = {"naive": dict(naive=True), "vision once": dict(), "shared prefix": dict(shared_prefix=True)}


def bench(model, proc, path, B, steps, size, device):
    art = PixelPrompt.from_icon("math", size).to(device)
    texts = [chat_text(proc, PROMPTS[i % len(PROMPTS)]) for i in range(B)]
    batch = encode(
        proc, texts, [f"Answer: {i}" for i in range(B)], num_image_tokens=num_visual_tokens(size, size, proc)
    ).to(device)
    times = []
    for _ in range(steps + 1):  # the first step warms up and is not counted
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        art.raw.grad = None
        logps = completion_logprobs(model, batch, preprocess_image(art.pixels(), proc.image_processor), **PATHS[path])
        (-(logps * batch.completion_mask).sum()).backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return sum(times[1:]) / steps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batches", default="8,16")
    ap.add_argument("--skip-real", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    device, dtype = torch.device(a.device), getattr(torch, a.dtype)
    rows = [("tiny",) + tiny_model(dtype=dtype, device=a.device)]
    if not a.skip_real:
        rows.append(("Qwen3.5-0.8B arch (random)",) + random_full_model(size="0.8B", dtype=dtype, device=a.device))
    print(f"{a.size}x{a.size} artwork, {a.dtype}, {a.device}, mean of {a.steps} fwd+bwd steps after 1 warm-up")
    print(
        f"{'model':30s} {'B':>3s} "
        + " ".join(f"{p + ' s':>15s}" for p in PATHS)
        + f" {'naive/prefix':>13s} {'once/prefix':>12s}"
    )
    for name, model, proc in rows:
        for B in (int(b) for b in a.batches.split(",")):
            t = {p: bench(model, proc, p, B, a.steps, a.size, device) for p in PATHS}
            print(
                f"{name:30s} {B:3d} "
                + " ".join(f"{v:15.3f}" for v in t.values())
                + f" {t['naive'] / t['shared prefix']:13.2f} {t['vision once'] / t['shared prefix']:12.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
