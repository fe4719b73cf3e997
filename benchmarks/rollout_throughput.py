"""RL rollout throughput side by side in one run: HF generate, the offline vLLM engine, one vLLM server, two servers.

    .venv-vllm/bin/python benchmarks/rollout_throughput.py [--model CKPT] [--task tool] [--prompts 8]
                                                          [--generations 8] [--budget 48] [--repeats 3]

Needs vLLM (the vLLM tier's venv: `bash scripts/bootstrap_vllm.sh`). `--model` is a checkpoint folder or a registered
name (default the shipped `toy:base`). An artwork is first learned with ART SFT on the toy task (`--sft-steps`, 60:
it then answers the task, ~20-40 tokens a tool call), so rollouts are as long as a trained policy's. Each backend
then samples the same `--prompts` test prompts x `--generations` (temperature 1, at most `--budget` new tokens) with
that artwork, through the path training uses: `rollout.sample_rollout` on `hf_generator.HFGenerator` (HF, vision
tower once), the offline engine or `generation.ServerGenerator` on one or two servers started
here (`VLLMServer(rollouts=True)`, 127.0.0.1); old log-probabilities are not computed (the trainer's cost, the same
for every backend). One warm-up call each; the median of `--repeats` timed calls; tokens = completion tokens.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the offline engine in this process


def learn_artwork(model, processor, task: str, steps: int):
    """An artwork trained `steps` ART SFT steps on the toy task from the math icon (tab2's settings)."""
    from art_lib.pixel_prompt import PixelPrompt
    from art_lib.toy.benchmarks import load_toy
    from art_lib.train import train

    res = train(
        model,
        processor,
        load_toy(task, "train"),
        method="art",
        objective="sft",
        steps=steps,
        batch_size=16,
        lr=0.05,
        artwork=PixelPrompt.from_icon("math", 64),
        benchmark=f"toy_{task}",
        progress=False,
    )
    return res.method


def timed(sample, repeats: int) -> dict:
    """Median seconds and completion tokens of `sample()` (a Rollout), after one warm-up call."""
    sample()
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        r = sample()
        runs.append((time.perf_counter() - t, int(r.batch.completion_mask.sum())))
    sec, tokens = sorted(runs)[len(runs) // 2]
    return {
        "tokens": tokens,
        "seconds": sec,
        "tokens_per_s": tokens / sec,
        "spread_s": statistics.pstdev(r[0] for r in runs),
    }


def main() -> None:
    import torch

    from art_lib.experiments import resolve_model
    from art_lib.generation import ServerGenerator
    from art_lib.hf_generator import HFGenerator
    from art_lib.models import load_frozen
    from art_lib.prompting import example_text
    from art_lib.rollout import sample_rollout
    from art_lib.toy.benchmarks import load_toy
    from art_lib.vllm_engine import VLLMEngine, VLLMServer

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="toy:base", help="checkpoint folder or registered name (toy:base)")
    ap.add_argument("--task", default="tool", help="toy task whose prompts are sampled")
    ap.add_argument("--sft-steps", type=int, default=60)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--generations", type=int, default=8)
    ap.add_argument("--budget", type=int, default=48, help="max new tokens per completion")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads of the HF trainer")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    ckpt = resolve_model(args.model)[0]
    model, processor = load_frozen(ckpt)
    m = learn_artwork(model, processor, args.task, args.sft_steps)
    _, image, embeds = m.policy(grad=False)
    exs = load_toy(args.task, "test", n=args.prompts)
    texts = [example_text(processor, ex) for ex in exs]
    G, budget = args.generations, args.budget
    kw = dict(num_generations=G, image=image, image_embeds=embeds, max_new_tokens=budget, compute_logprobs=False)

    def rollout(generator):
        return sample_rollout(generator, model, processor, texts, exs, method=m, **kw)

    out = {"HF generate": timed(lambda: rollout(HFGenerator(model, processor)), args.repeats)}
    engine = VLLMEngine(ckpt, max_model_len=1024, enforce_eager=True)
    out["vLLM offline engine"] = timed(lambda: rollout(engine.as_generator()), args.repeats)
    engine.close()
    servers = [VLLMServer(ckpt, rollouts=True, max_model_len=1024, extra=["--enforce-eager"]) for _ in range(2)]
    with contextlib.ExitStack() as stack:
        for srv in servers:
            stack.push(srv.__exit__)
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(VLLMServer.__enter__, servers))
        for name, urls in (("vLLM server x1", servers[:1]), ("vLLM servers x2", servers)):
            gen = ServerGenerator([s.base_url for s in urls])
            out[name] = timed(lambda g=gen: rollout(g), args.repeats)

    print(
        f"Rollouts on {args.model} (toy_{args.task}, artwork after {args.sft_steps} SFT steps): {args.prompts} prompts "
        f"x G={G}, temperature 1, at most {budget} new tokens; median of {args.repeats} after a warm-up"
    )
    print(f"CPU: {os.cpu_count()} cores ({platform.processor() or platform.machine()}), torch threads {args.threads}")
    print(f"{'backend':<22}{'tokens':>8}{'seconds':>10}{'tokens/s':>11}{'sd (s)':>9}")
    for name, row in out.items():
        print(f"{name:<22}{row['tokens']:>8}{row['seconds']:>10.2f}{row['tokens_per_s']:>11.1f}{row['spread_s']:>9.2f}")
    hf = out["HF generate"]["tokens_per_s"]
    print("tokens/s relative to HF generate: " + ", ".join(f"{k} {v['tokens_per_s'] / hf:.2f}" for k, v in out.items()))


if __name__ == "__main__":
    main()
