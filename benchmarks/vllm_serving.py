"""vLLM side by side in one run: serving ART vs LoRA vs plain text, and RL rollouts vLLM vs HF generate.

    python benchmarks/vllm_serving.py [--model CKPT] [--requests 320] [--concurrency 8] [--max-tokens 8]
                                      [--prompts 8] [--generations 8] [--budget 32]

Needs vLLM (the vLLM tier's venv: `bash scripts/bootstrap_vllm.sh`, then `.venv-vllm/bin/python ...`).
`--model` is a checkpoint folder or a registered name (default the shipped `toy:base`: Qwen3.5 architecture,
linear-attention heads of 64, which vLLM's CPU engine serves). On it, an artwork and a LoRA r=8 adapter are first
learned with SFT on toy_add (`--sft-steps`, tab2's settings), so every arm answers as a trained model would.

1. Serving: one OpenAI-compatible vLLM server on 127.0.0.1 serves the base model and a LoRA r=8 adapter
   (`--enable-lora`). The same prompts are sent as three arms, interleaved in rounds (ART: the PNG as a
   data-URL image to the base model; LoRA: text to the adapter; text: text to the base model), each arm
   `--requests` requests at `--concurrency` in flight; requests/s and completion tokens/s per arm.
2. Rollouts: `--prompts` prompts x `--generations` samples (temperature 1) with the artwork, at most
   `--budget` new tokens: the kit's HF rollout (`rollout.sample_rollout` on an `HFGenerator`, vision tower once,
   no log-probs) vs the offline vLLM engine (`VLLMEngine.generate`, the 8-bit artwork as `multi_modal_data`); tokens/s.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def _prompts(n: int) -> list[dict]:
    from art_lib.toy.benchmarks import load_toy

    return load_toy("add", "test", n=n)


def learn(ckpt: Path, steps: int, out: Path) -> tuple[Path, Path]:
    """(artwork PNG, LoRA r=8 adapter folder), each trained `steps` SFT steps on toy_add from the seed."""
    from art_lib.models import load_frozen
    from art_lib.pixel_prompt import PixelPrompt
    from art_lib.toy.benchmarks import load_toy
    from art_lib.train import train

    data = load_toy("add", "train")
    model, processor = load_frozen(ckpt)
    art = train(
        model,
        processor,
        data,
        method="art",
        objective="sft",
        steps=steps,
        batch_size=16,
        lr=0.05,
        artwork=PixelPrompt.from_icon("math", 64),
        benchmark="toy_add",
        progress=False,
    )
    png = art.artwork.save_png(out / "artwork.png")
    lora = train(
        model,
        processor,
        data,
        method="lora",
        objective="sft",
        steps=steps,
        batch_size=16,
        lr=0.005,
        weight_decay=0.05,
        lora_rank=8,
        benchmark="toy_add",
        progress=False,
    )  # r=8, as in tab2
    return png, lora.method.save(out / "adapter")


def _serve_arm(client, examples, part, n: int, concurrency: int, max_tokens: int) -> tuple[float, int]:
    """Send n requests (cycling through the examples) with `concurrency` in flight: (seconds, completion tokens)."""
    from art_lib.client import openai_messages

    def one(i: int) -> int:
        resp = client.complete(
            openai_messages(examples[i % len(examples)], part), max_tokens=max_tokens, temperature=0.0
        )
        return int(resp["usage"]["completion_tokens"])

    t = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        tokens = sum(pool.map(one, range(n)))
    return time.perf_counter() - t, tokens


def serving(ckpt: Path, adapter: Path, png: Path, args) -> dict:
    from art_lib.client import ChatClient, _image_part
    from art_lib.vllm_engine import VLLMServer

    examples = _prompts(40)
    part = _image_part(png)
    with VLLMServer(
        ckpt, served_model_name="base", lora_modules={"adapter": adapter}, max_model_len=1024, extra=["--enforce-eager"]
    ) as srv:
        arms = {
            "ART (PNG, base model)": (ChatClient(srv.base_url, "base"), part),
            "LoRA (adapter)": (ChatClient(srv.base_url, "adapter"), None),
            "text (base model)": (ChatClient(srv.base_url, "base"), None),
        }
        for client, p in arms.values():  # warm-up: first requests compile / load the adapter
            _serve_arm(client, examples, p, args.concurrency, args.concurrency, args.max_tokens)
        totals = {name: [0.0, 0, 0] for name in arms}
        rounds = 2
        for _ in range(rounds):  # interleaved, so a slow phase of the machine hits every arm alike
            for name, (client, p) in arms.items():
                sec, tok = _serve_arm(client, examples, p, args.requests // rounds, args.concurrency, args.max_tokens)
                totals[name][0] += sec
                totals[name][1] += tok
                totals[name][2] += args.requests // rounds
    return {
        name: {"requests_per_s": n / sec, "tokens_per_s": tok / sec, "seconds": sec, "requests": n}
        for name, (sec, tok, n) in totals.items()
    }


def rollouts(ckpt: Path, png: Path, args) -> dict:
    import torch

    from art_lib.hf_generator import HFGenerator
    from art_lib.methods import make_method
    from art_lib.models import load_frozen
    from art_lib.pixel_prompt import PixelPrompt
    from art_lib.prompting import example_text
    from art_lib.rollout import sample_rollout
    from art_lib.vllm_engine import VLLMEngine

    torch.set_num_threads(args.threads)
    model, processor = load_frozen(ckpt)
    art = PixelPrompt.from_png(png)
    m = make_method("art", model, processor, artwork=art)
    _, image, embeds = m.policy(grad=False)
    exs = _prompts(args.prompts)
    texts = [example_text(processor, ex, image=True) for ex in exs]
    G, budget = args.generations, args.budget
    out = {}
    hf = HFGenerator(model, processor)
    sample_rollout(
        hf,
        model,
        processor,
        texts[:1],
        exs[:1],
        num_generations=2,
        image=image,
        max_new_tokens=2,
        compute_logprobs=False,
    )  # warm-up
    t = time.perf_counter()
    r = sample_rollout(
        hf,
        model,
        processor,
        texts,
        exs,
        num_generations=G,
        image=image,
        image_embeds=embeds,
        max_new_tokens=budget,
        compute_logprobs=False,
    )
    sec = time.perf_counter() - t
    out["HF generate"] = {"tokens": int(r.batch.completion_mask.sum()), "seconds": sec}
    engine = VLLMEngine(ckpt, max_model_len=1024, enforce_eager=True)
    pil = art.to_pil()
    engine.generate(texts[:1], pil, n=2, max_tokens=2, temperature=1.0)  # warm-up
    t = time.perf_counter()
    res = engine.generate(texts, pil, n=G, max_tokens=budget, temperature=1.0, seed=0)
    sec = time.perf_counter() - t
    out["vLLM"] = {"tokens": sum(len(o["token_ids"]) for per in res for o in per), "seconds": sec}
    for row in out.values():
        row["tokens_per_s"] = row["tokens"] / row["seconds"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="toy:base", help="checkpoint folder or registered name (toy:base)")
    ap.add_argument("--sft-steps", type=int, default=60, help="SFT steps of the artwork and the adapter")
    ap.add_argument("--requests", type=int, default=320)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--generations", type=int, default=8)
    ap.add_argument("--budget", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2, help="torch threads for HF generate")
    ap.add_argument("--skip-serving", action="store_true")
    ap.add_argument("--skip-rollouts", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

    from art_lib.experiments import resolve_model
    from art_lib.models import load_frozen

    ckpt = Path(resolve_model(args.model)[0])
    png, adapter = learn(ckpt, args.sft_steps, Path(tempfile.mkdtemp(prefix="vllm_bench_")))
    n_params = sum(p.numel() for p in load_frozen(ckpt)[0].parameters())
    print(
        f"model {args.model} ({n_params / 1e6:.2f}M parameters); artwork 64x64 PNG and LoRA r=8 on "
        f"q/k/v/o/gate/up/down, each {args.sft_steps} SFT steps on toy_add"
    )

    if not args.skip_serving:
        s = serving(ckpt, adapter, png, args)
        print(
            f"\nServing: one vLLM server, {args.requests} requests per arm, concurrency {args.concurrency}, "
            f"{args.max_tokens} max tokens, greedy"
        )
        print(f"{'arm':<24}{'requests/s':>12}{'tokens/s':>12}")
        for name, row in s.items():
            print(f"{name:<24}{row['requests_per_s']:>12.1f}{row['tokens_per_s']:>12.1f}")
        art, lora, text = (s[k]["requests_per_s"] for k in s)
        print(f"ratios (requests/s): ART/LoRA {art / lora:.2f}, ART/text {art / text:.2f}, LoRA/text {lora / text:.2f}")
    if not args.skip_rollouts:
        r = rollouts(ckpt, png, args)
        print(
            f"\nRollouts: {args.prompts} prompts x G={args.generations}, budget {args.budget} tokens, "
            f"temperature 1, with the artwork"
        )
        for name, row in r.items():
            print(f"{name:<24}{row['tokens']:>8} tokens {row['seconds']:>8.2f} s {row['tokens_per_s']:>10.1f} tokens/s")
        print(f"ratio vLLM/HF tokens/s: {r['vLLM']['tokens_per_s'] / r['HF generate']['tokens_per_s']:.2f}")


if __name__ == "__main__":
    main()
