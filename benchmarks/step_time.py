"""Step time and peak memory of ART vs LoRA (r = 8, 16) vs soft prompt, for SFT and one GRPO step.

    python benchmarks/step_time.py [--skip-real] [--device cpu|cuda] [--dtype float32|bfloat16]

Every configuration runs the kit's one trainer (`art_lib.train.train`) on the same model, batch and
prompts, each in a fresh subprocess so its peak memory is its own (CPU: peak RSS of the process;
CUDA: torch.cuda.max_memory_allocated). Prints one table with the ratios ART/LoRA.
"""

import argparse
import json
import resource
import subprocess
import sys
import time

CONFIGS = [("art", None), ("lora", 8), ("lora", 16), ("soft_prompt", None)]
EXAMPLES = [{"id": str(i), "prompt": f"What is {i} + {i + 7}? Think step by step.", "answer": str(2 * i + 7),
             "meta": {}} for i in range(16)]


def one(model_name, method, rank, objective, device, dtype, batch, steps, threads):
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
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    kw = dict(num_generations=2, max_completion_length=16, reward_fn=lambda c, e: [len(set(x)) / 10 for x in c],
              overlong_filter=False) if objective == "grpo" else {}
    t = time.perf_counter()
    res = train(model, proc, EXAMPLES, method=method, objective=objective, lora_rank=rank or 8, steps=steps,
                batch_size=batch, image_size=256, progress=False, **kw)
    step_s = float(res.history["seconds"].iloc[1:].mean())  # the first step warms up
    peak = (torch.cuda.max_memory_allocated() if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"step_s": step_s, "peak_gib": peak / 2**30, "trainable": res.trainable_parameters,
            "total_s": time.perf_counter() - t}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-real", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--_one", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._one:
        print(json.dumps(one(**json.loads(a._one))))
        return
    models = ["tiny"] + ([] if a.skip_real else ["0.8B"])
    print(f"batch {a.batch}, 256x256 artwork, {a.dtype} on {a.device}; GRPO: G=2, 16 new tokens; "
          f"mean step time over steps 2..{a.steps}")
    print(f"{'model':6s} {'objective':9s} {'method':12s} {'trainable':>10s} {'step s':>8s} {'peak GiB':>9s} "
          f"{'ART/this time':>14s} {'ART/this mem':>13s}")
    for model_name in models:
        for objective in ("sft", "grpo"):
            res = {}
            for method, rank in CONFIGS:
                spec = dict(model_name=model_name, method=method, rank=rank, objective=objective, device=a.device,
                            dtype=a.dtype, batch=a.batch, steps=a.steps, threads=a.threads)
                out = subprocess.run([sys.executable, __file__, "--_one", json.dumps(spec)], capture_output=True,
                                     text=True)
                if out.returncode:
                    raise RuntimeError(f"{spec} failed:\n{out.stderr[-3000:]}")
                res[(method, rank)] = json.loads(out.stdout.strip().splitlines()[-1])
            art = res[("art", None)]
            for (method, rank), r in res.items():
                name = method + (f" r={rank}" if rank else "")
                print(f"{model_name:6s} {objective:9s} {name:12s} {r['trainable']:10d} {r['step_s']:8.3f} "
                      f"{r['peak_gib']:9.2f} {art['step_s'] / r['step_s']:14.2f} {art['peak_gib'] / r['peak_gib']:13.2f}",
                      flush=True)


if __name__ == "__main__":
    main()
