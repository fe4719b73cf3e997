"""vLLM side by side in one run: serving ART vs LoRA vs plain text, and RL rollouts vLLM vs HF generate.

    python benchmarks/vllm_serving.py [--model CKPT] [--requests 320] [--concurrency 8] [--max-tokens 8]
                                      [--prompts 8] [--generations 8] [--budget 32]

Needs vLLM (the vLLM tier's venv: ``bash scripts/bootstrap_vllm.sh``, then ``.venv-vllm/bin/python ...``).
Without ``--model`` it serves the tests' servable random checkpoint (tests/vllm_tier/servable.py: Qwen3.5
architecture, linear-attention heads of 64, random weights), saved to a temporary folder.

1. Serving: one OpenAI-compatible vLLM server on 127.0.0.1 serves the base model and a LoRA r=8 adapter
   (``--enable-lora``). The same prompts are sent as three arms, interleaved in rounds (ART: the PNG as a
   data-URL image to the base model; LoRA: text to the adapter; text: text to the base model), each arm
   ``--requests`` requests at ``--concurrency`` in flight; requests/s and completion tokens/s per arm.
2. Rollouts: ``--prompts`` prompts x ``--generations`` samples (temperature 1) with the artwork, at most
   ``--budget`` new tokens: the kit's HF rollout (`generate_rollouts`, vision tower once, no log-probs) vs
   the offline vLLM engine (`VLLMEngine.generate`, the 8-bit artwork as ``multi_modal_data``); tokens/s.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _prompts(n: int) -> list[dict]:
    return [{"id": str(i), "prompt": f"{i % 17} and {(7 * i) % 23}", "answer": "0", "meta": {}} for i in range(n)]


def _serve_arm(client, examples, part, n: int, concurrency: int, max_tokens: int) -> tuple[float, int]:
    """Send n requests (cycling through the examples) with `concurrency` in flight: (seconds, completion tokens)."""
    from art_lib.serve import openai_messages

    def one(i: int) -> int:
        resp = client.complete(openai_messages(examples[i % len(examples)], part), max_tokens=max_tokens,
                               temperature=0.0)
        return int(resp["usage"]["completion_tokens"])

    t = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        tokens = sum(pool.map(one, range(n)))
    return time.perf_counter() - t, tokens


def serving(ckpt: Path, adapter: Path, png: Path, args) -> dict:
    from art_lib.serve import ChatClient, _image_part
    from art_lib.vllm_engine import VLLMServer

    examples = _prompts(64)
    part = _image_part(png)
    with VLLMServer(ckpt, served_model_name="base", lora_modules={"adapter": adapter}, max_model_len=1024,
                    extra=["--enforce-eager"]) as srv:
        arms = {"ART (PNG, base model)": (ChatClient(srv.base_url, "base"), part),
                "LoRA (adapter)": (ChatClient(srv.base_url, "adapter"), None),
                "text (base model)": (ChatClient(srv.base_url, "base"), None)}
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
    return {name: {"requests_per_s": n / sec, "tokens_per_s": tok / sec, "seconds": sec, "requests": n}
            for name, (sec, tok, n) in totals.items()}


def rollouts(ckpt: Path, png: Path, args) -> dict:
    import torch

    from art_lib.evaluate import render_prompt
    from art_lib.methods import make_method
    from art_lib.models import load_frozen
    from art_lib.pixel_prompt import PixelPrompt
    from art_lib.rollout import generate_rollouts
    from art_lib.vllm_engine import VLLMEngine

    torch.set_num_threads(args.threads)
    model, processor = load_frozen(ckpt)
    art = PixelPrompt.from_png(png)
    m = make_method("art", model, processor, artwork=art)
    _, image, embeds = m.policy(grad=False)
    exs = _prompts(args.prompts)
    texts = [render_prompt(processor, ex, image=True) for ex in exs]
    G, budget = args.generations, args.budget
    out = {}
    generate_rollouts(model, processor, texts[:1], exs[:1], num_generations=2, image=image, max_new_tokens=2,
                      compute_logprobs=False)  # warm-up
    t = time.perf_counter()
    r = generate_rollouts(model, processor, texts, exs, num_generations=G, image=image, image_embeds=embeds,
                          max_new_tokens=budget, compute_logprobs=False)
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
    ap.add_argument("--model", type=Path, help="checkpoint folder (default: the servable random test checkpoint)")
    ap.add_argument("--requests", type=int, default=320)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--generations", type=int, default=8)
    ap.add_argument("--budget", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2, help="torch threads for HF generate")
    ap.add_argument("--hidden", type=int, default=64, help="hidden size of the random test checkpoint")
    ap.add_argument("--layers", type=int, default=4, help="layers of the random test checkpoint (every 4th full)")
    ap.add_argument("--skip-serving", action="store_true")
    ap.add_argument("--skip-rollouts", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

    from art_lib.methods import make_method
    from art_lib.models import load_frozen
    from art_lib.pixel_prompt import PixelPrompt

    tmp = Path(tempfile.mkdtemp(prefix="vllm_bench_"))
    ckpt = args.model
    if ckpt is None:
        sys.path.insert(0, str(ROOT / "tests" / "vllm_tier"))
        from servable import save_servable

        size = {} if (args.hidden, args.layers) == (64, 4) else dict(
            hidden_size=args.hidden, intermediate_size=3 * args.hidden, num_hidden_layers=args.layers,
            num_attention_heads=args.hidden // 64, num_key_value_heads=1, linear_num_key_heads=args.hidden // 64,
            linear_num_value_heads=args.hidden // 64)
        ckpt = save_servable(tmp / "ckpt", **size)
    model, processor = load_frozen(ckpt)
    png = PixelPrompt.from_icon("math", 64).save_png(tmp / "artwork.png")
    adapter = make_method("lora", model, processor, lora_rank=8).save(tmp / "adapter")  # r=8, as in tab2
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model {ckpt} ({n_params / 1e6:.1f}M parameters); artwork 64x64 PNG; LoRA r=8 on q/k/v/o/gate/up/down")

    if not args.skip_serving:
        s = serving(ckpt, adapter, png, args)
        print(f"\nServing: one vLLM server, {args.requests} requests per arm, concurrency {args.concurrency}, "
              f"{args.max_tokens} max tokens, greedy")
        print(f"{'arm':<24}{'requests/s':>12}{'tokens/s':>12}")
        for name, row in s.items():
            print(f"{name:<24}{row['requests_per_s']:>12.1f}{row['tokens_per_s']:>12.1f}")
        art, lora, text = (s[k]["requests_per_s"] for k in s)
        print(f"ratios (requests/s): ART/LoRA {art / lora:.2f}, ART/text {art / text:.2f}, LoRA/text {lora / text:.2f}")
    if not args.skip_rollouts:
        r = rollouts(ckpt, png, args)
        print(f"\nRollouts: {args.prompts} prompts x G={args.generations}, budget {args.budget} tokens, "
              f"temperature 1, with the artwork")
        for name, row in r.items():
            print(f"{name:<24}{row['tokens']:>8} tokens {row['seconds']:>8.2f} s {row['tokens_per_s']:>10.1f} tokens/s")
        print(f"ratio vLLM/HF tokens/s: {r['vLLM']['tokens_per_s'] / r['HF generate']['tokens_per_s']:.2f}")


if __name__ == "__main__":
    main()
