"""Step time and peak memory of ART vs LoRA (r = 8, 16) vs soft prompt, for SFT and one GRPO step.

    python benchmarks/step_time.py [--models tiny,0.8B] [--set gsm8k|short] [--batch 16] [--micro 4]
                                   [--generations 8] [--new-tokens 256] [--device cpu|cuda] [--dtype float32]

Every configuration runs the kit's one trainer (`art_lib.train.train`) on the same model, batch and
prompts, each in a fresh subprocess so its peak memory is its own (CPU: peak RSS of the process;
CUDA: torch.cuda.max_memory_allocated). ART and soft prompts run twice: with the full batch
(`shared_prefix=False`, the reference) and with the shared image prefix (`+prefix`).

Row sets: `gsm8k` (default), real GSM8K test rows (tests/data/gsm8k): the question + "End your
response with: Answer: <number>", SFT target = the worked solution + `Answer: N`; GRPO completions
are forced to the full `--new-tokens` (the end-of-turn token is replaced by a token generation never
emits), so every method decodes and trains on the same number of tokens. `short` is the old table:
~15-word prompts with 5-token answers and 16 new tokens, a regime where ART's image tokens dominate.
"""

import argparse
import json
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

CONFIGS = [
    ("art", None, False),
    ("art", None, True),
    ("lora", 8, False),
    ("lora", 16, False),
    ("soft_prompt", None, False),
    ("soft_prompt", None, True),
]
GSM8K = Path(__file__).resolve().parents[1] / "tests" / "data" / "gsm8k" / "test.jsonl"


def gsm8k_rows(n: int) -> list[dict]:
    """n GSM8K test rows with SFT targets = worked solution (calculator notes removed) + `Answer: N`."""
    from art_lib.tasks.maths import load_gsm8k

    rows = load_gsm8k(GSM8K, limit=n)
    for ex in rows:
        work = re.sub(r"<<[^>]*>>", "", ex["meta"]["solution"].split("####")[0]).strip()
        ex["meta"]["target"] = f"{work}\nAnswer: {ex['answer']}"
    return rows


def short_rows(n: int) -> list[dict]:
    return [
        {"id": str(i), "prompt": f"What is {i} + {i + 7}? Think step by step.", "answer": str(2 * i + 7), "meta": {}}
        for i in range(n)
    ]


def rl_settings(model, generations: int, new_tokens: int, force_length: bool) -> dict:
    """`train` settings of the GRPO benchmark step; `force_length` makes every completion `new_tokens` long."""
    if force_length:  # the "end" token becomes one that generation suppresses
        model.generation_config.eos_token_id = model.config.image_token_id
    return dict(
        num_generations=generations,
        max_completion_length=new_tokens,
        overlong_filter=False,
        reward_fn=lambda c, e: [len(set(x)) / 10 for x in c],
        generation_batch_size=None,
    )


def run_isolated(script: str, spec: dict) -> dict:
    """Run `script --_one SPEC` in a fresh process (its peak memory is its own) and return its last JSON line."""
    out = subprocess.run([sys.executable, script, "--_one", json.dumps(spec)], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(
            f"{spec} failed (exit {out.returncode}; -9: killed, often out of memory):\n{out.stderr[-3000:]}"
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


def one(
    model_name,
    method,
    rank,
    shared,
    objective,
    row_set,
    device,
    dtype,
    batch,
    micro,
    generations,
    new_tokens,
    steps,
    threads,
):
    import torch

    if threads:
        torch.set_num_threads(threads)

    from art_lib.models import random_full_model, tiny_model
    from art_lib.train import train

    dt = getattr(torch, dtype)
    if model_name == "tiny":
        model, proc = tiny_model(dtype=dt, device=device)
    else:
        model, proc = random_full_model(size=model_name, dtype=dt, device=device)
    rows = gsm8k_rows(batch) if row_set == "gsm8k" else short_rows(batch)
    kw = rl_settings(model, generations, new_tokens, force_length=row_set == "gsm8k") if objective == "grpo" else {}
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    res = train(
        model,
        proc,
        rows,
        method=method,
        objective=objective,
        lora_rank=rank or 8,
        steps=steps,
        batch_size=batch,
        micro_batch_size=micro,
        image_size=256,
        progress=False,
        shared_prefix=shared,
        **kw,
    )
    step_s = float(res.history["seconds"].iloc[1:].mean())  # the first step warms up
    peak = (
        torch.cuda.max_memory_allocated()
        if device == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    length = res.history["completion_length"].iloc[-1] if "completion_length" in res.history else float("nan")
    return {
        "step_s": step_s,
        "peak_gib": peak / 2**30,
        "trainable": res.trainable_parameters,
        "total_s": time.perf_counter() - t,
        "completion_length": float(length),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="tiny,0.8B", help="comma-separated: tiny and/or 0.8B (random weights)")
    ap.add_argument("--set", dest="row_set", default="gsm8k", choices=["gsm8k", "short"])
    ap.add_argument("--objectives", default="sft,grpo")
    ap.add_argument("--methods", default="", help="comma-separated labels to run (default all), e.g. art,lora r=16")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--batch", type=int, default=16, help="prompts per step (the paper's batch)")
    ap.add_argument("--micro", type=int, default=4, help="rows per forward/backward (micro_batch_size)")
    ap.add_argument("--generations", type=int, default=8, help="GRPO samples per prompt")
    ap.add_argument("--new-tokens", type=int, default=256, help="GRPO completion length (forced, gsm8k set)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--_one", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._one:
        print(json.dumps(one(**json.loads(a._one))))
        return
    new_tokens = a.new_tokens if a.row_set == "gsm8k" else 16
    print(
        f"row set {a.row_set}; batch {a.batch} prompts, micro-batch {a.micro} rows, 256x256 artwork, {a.dtype} on "
        f"{a.device}; GRPO: G={a.generations}, {new_tokens} new tokens; mean step time over steps 2..{a.steps}"
    )
    print(
        f"{'model':6s} {'objective':9s} {'method':18s} {'trainable':>10s} {'step s':>8s} {'peak GiB':>9s} "
        f"{'this/LoRA16 time':>17s} {'this/LoRA16 mem':>16s}"
    )
    wanted = {m.strip() for m in a.methods.split(",") if m.strip()}
    for model_name in a.models.split(","):
        for objective in a.objectives.split(","):
            res = {}
            for method, rank, shared in CONFIGS:
                label = method + (f" r={rank}" if rank else "") + (" +prefix" if shared else "")
                if wanted and label not in wanted:
                    continue
                spec = dict(
                    model_name=model_name,
                    method=method,
                    rank=rank,
                    shared=shared,
                    objective=objective,
                    row_set=a.row_set,
                    device=a.device,
                    dtype=a.dtype,
                    batch=a.batch,
                    micro=a.micro,
                    generations=a.generations,
                    new_tokens=new_tokens,
                    steps=a.steps,
                    threads=a.threads,
                )
                res[label] = run_isolated(__file__, spec)
                ref = res.get("lora r=16")
                r = res[label]
                ratio = (
                    f"{r['step_s'] / ref['step_s']:17.2f} {r['peak_gib'] / ref['peak_gib']:16.2f}"
                    if ref
                    else f"{'':17s} {'':16s}"
                )
                print(
                    f"{model_name:6s} {objective:9s} {label:18s} {r['trainable']:10d} {r['step_s']:8.3f} "
                    f"{r['peak_gib']:9.2f} {ratio}",
                    flush=True,
                )
            if "lora r=16" in res:  # the rows printed before LoRA r=16 had no reference yet
                ref = res["lora r=16"]
                print(
                    "  vs LoRA r=16: "
                    + ", ".join(
                        f"{k} {v['step_s'] / ref['step_s']:.2f}x time {v['peak_gib'] / ref['peak_gib']:.2f}x mem"
                        for k, v in res.items()
                    ),
                    flush=True,
                )


if __name__ == "__main__":
    main()
