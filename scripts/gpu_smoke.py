"""One DAPO step at the paper settings on the real Qwen3.5-0.8B architecture (random weights), bfloat16 on CUDA.

    python scripts/gpu_smoke.py [--micro 8] [--gradient-checkpointing] [--vllm [--vllm-memory 0.3]]

16 GSM8K prompts (tests/data/gsm8k) x 8 completions of up to 512 tokens, a 256x256 artwork, the kit's
trainer (`train`) with `micro_batch_size` rows per forward. Random weights never end a turn, so every
completion runs to 512 tokens (the longest case); the overlong filter is off and the rewards are random so
that the step has tokens and non-zero advantages to learn from. Prints what ran (`runtime_info`), the
step's time and `torch.cuda.max_memory_allocated`. Refuses to run without CUDA.

`--vllm`: the rollouts come from an offline vLLM engine colocated on the same GPU (`train(...,
rollout_engine=engine)`, `art_lib/vllm_engine.py`): vLLM takes `--vllm-memory` of the GPU's memory
(`gpu_memory_utilization`), the trainer the rest; the end-of-turn tokens are not suppressed there, so the
step may generate fewer than 512 tokens per row.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--micro", type=int, default=8, help="micro_batch_size: rows per forward/backward")
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--completion", type=int, default=512)
    ap.add_argument("--vllm", action="store_true", help="rollouts from a vLLM engine colocated on the same GPU")
    ap.add_argument("--vllm-memory", type=float, default=0.3, help="vLLM's gpu_memory_utilization (share of the GPU)")
    a = ap.parse_args()

    import torch

    if not torch.cuda.is_available():
        print(
            "gpu_smoke: no CUDA device visible to torch (torch.cuda.is_available() is False); this check only "
            "means something on a GPU. Nothing was run.",
            file=sys.stderr,
        )
        return 2
    sys.path.insert(0, str(ROOT))
    from art_lib.kernels import check_kernels, runtime_info
    from art_lib.models import random_full_model
    from art_lib.pixel_prompt import PixelPrompt
    from art_lib.train import train

    rows = [json.loads(line) for line in (ROOT / "tests/data/gsm8k/test.jsonl").read_text().splitlines()][:16]
    examples = [
        {"id": str(i), "prompt": r["question"], "answer": r["answer"].split("####")[-1].strip(), "meta": {}}
        for i, r in enumerate(rows)
    ]
    t = time.perf_counter()
    model, proc = random_full_model(size="0.8B", dtype=torch.bfloat16, device="cuda")
    print(f"load: {time.perf_counter() - t:.1f} s; {runtime_info(model)}", flush=True)
    check_kernels(model)  # the slow reference kernels: refused, as in every paper run (ART_ALLOW_SLOW_KERNELS=1)
    engine = "hf"
    if a.vllm:
        from art_lib.vllm_engine import VLLMEngine

        t = time.perf_counter()
        engine = VLLMEngine.from_model(model, proc, size="0.8B", gpu_memory_utilization=a.vllm_memory)
        print(f"vLLM engine (gpu_memory_utilization {a.vllm_memory}) started in {time.perf_counter() - t:.1f} s")
    art = PixelPrompt.from_icon("math", 256)
    start = art.pixels().detach().clone()
    rng = random.Random(0)
    torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    res = train(
        model,
        proc,
        examples,
        objective="dapo",
        artwork=art,
        steps=1,
        batch_size=16,
        num_generations=8,
        max_completion_length=a.completion,
        micro_batch_size=a.micro,
        gradient_checkpointing=a.gradient_checkpointing,
        overlong_filter=False,
        reward_fn=lambda completions, exs: [rng.random() for _ in completions],
        rollout_engine=engine,
        progress=True,
    )
    torch.cuda.synchronize()
    step_s = time.perf_counter() - t
    peak = torch.cuda.max_memory_allocated()
    row = res.history.iloc[0].to_dict()
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, default=str))
    moved = float((art.pixels().detach().cpu() - start.cpu()).abs().max())
    print(
        f"paper-settings DAPO step ({'vLLM' if a.vllm else 'HF generate'} rollouts): 16 x 8 rows, "
        f"up to {a.completion} new tokens, micro_batch_size {a.micro}, "
        f"gradient_checkpointing {a.gradient_checkpointing}: {step_s:.1f} s, "
        f"peak {peak / 2**30:.2f} GiB (torch.cuda.max_memory_allocated), pixels moved by up to {moved:.4f}, "
        f"artwork dtype {art.raw.dtype}"
    )
    ok = not row["skipped"] and row["loss"] == row["loss"] and art.raw.dtype == torch.float32 and moved > 0
    print(f"gpu_smoke RL step{' (vLLM rollouts)' if a.vllm else ''}:", "OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
