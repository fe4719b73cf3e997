"""Where one training step's time goes: ART (with and without the shared prefix) vs LoRA, side by side.

    python benchmarks/profile_step.py [--model 0.8B] [--objective sft|grpo] [--batch 4] [--micro 4]
                                      [--methods "art,art +prefix,lora r=16"] [--threads 2] [--top 12]

Each configuration runs the kit's trainer (`art_lib.train.train`, two steps, the second profiled by
`torch.profiler`) on the rows of `benchmarks/step_time.py` (GSM8K by default) in a fresh subprocess.
It prints, per configuration: the profiled step's wall time; the time in `generate` (GRPO rollouts:
prefill and decoding); the forward time of the vision tower, the shared-prefix passes, the
linear-attention and full-attention decoder layers and the vocabulary projection (record_function
scopes around those modules; they include the forwards inside `generate`, and the prefix passes are
counted in the layer rows as well); the backward time (all autograd work); and the operators with the
most self time. Times are CPU times of this process, so read the columns side by side, not as absolutes.
"""

import argparse
import contextlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from art_lib.prefix import PREFIX_SCOPE  # noqa: E402  (imports torch)

SCOPES = (
    "generate (rollouts)",
    "vision tower",
    PREFIX_SCOPE,
    "linear-attention layers",
    "full-attention layers",
    "lm_head",
)


def _scoped(module, name: str) -> None:
    """Wrap every forward of `module` in a profiler scope `name` (forward hooks; removed with the process)."""
    from torch.autograd.profiler import record_function

    open_scopes = []

    def pre(mod, args):
        scope = record_function(name)
        scope.__enter__()
        open_scopes.append(scope)

    def post(mod, args, out):
        open_scopes.pop().__exit__(None, None, None)

    module.register_forward_pre_hook(pre)
    module.register_forward_hook(post)


def one(model_name, label, objective, batch, micro, generations, new_tokens, threads, top, row_set):
    import torch
    from step_time import gsm8k_rows, rl_settings, short_rows
    from torch.autograd.profiler import record_function
    from torch.profiler import ProfilerActivity, profile

    from art_lib.models import random_full_model, tiny_model
    from art_lib.train import train

    torch.set_num_threads(threads)
    method, _, rest = label.partition(" ")
    rank = int(rest.split("=")[1].split()[0]) if "r=" in rest else 8
    shared = "+prefix" in rest
    if model_name == "tiny":
        model, proc = tiny_model()
    else:
        model, proc = random_full_model(size=model_name, dtype=torch.float32)
    _scoped(model.model.visual, "vision tower")
    _scoped(model.lm_head, "lm_head")
    generate = type(model).generate

    def scoped_generate(self, *args, **kwargs):  # rollouts: prefill + decoding, no gradient
        with record_function("generate (rollouts)"):
            return generate(self, *args, **kwargs)

    type(model).generate = scoped_generate
    kinds = model.config.get_text_config().layer_types
    for layer, kind in zip(model.model.language_model.layers, kinds):
        _scoped(layer, "linear-attention layers" if kind == "linear_attention" else "full-attention layers")
    rows = gsm8k_rows(batch) if row_set == "gsm8k" else short_rows(batch)
    kw = rl_settings(model, generations, new_tokens, force_length=row_set == "gsm8k") if objective == "grpo" else {}
    prof = profile(activities=[ProfilerActivity.CPU])
    calls = []

    def after_step(method_obj, step):  # eval_fn runs after every step: profile only the second one
        calls.append(step)
        if len(calls) == 1:
            prof.start()
        elif len(calls) == 2:
            prof.stop()
        return {}

    res = train(
        model,
        proc,
        rows,
        method=method,
        objective=objective,
        lora_rank=rank,
        steps=2,
        batch_size=batch,
        micro_batch_size=micro,
        image_size=256,
        progress=False,
        shared_prefix=shared,
        eval_fn=after_step,
        eval_every=1,
        **kw,
    )
    events = prof.key_averages()
    by_name = {e.key: e for e in events}

    def total_ms(name):
        e = by_name.get(name)
        return 0.0 if e is None else e.cpu_time_total / 1e3

    backward = sum(e.cpu_time_total for e in events if e.key.startswith("autograd::engine::evaluate_function"))
    ops = sorted((e for e in events if e.key.startswith("aten::")), key=lambda e: -e.self_cpu_time_total)[:top]
    return {
        "step_s": float(res.history["seconds"].iloc[1]),
        "scopes_ms": {s: total_ms(s) for s in SCOPES},
        "backward_ms": backward / 1e3,
        "ops": [(e.key, e.self_cpu_time_total / 1e3, e.count) for e in ops],
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="0.8B", help="tiny or 0.8B (random weights)")
    ap.add_argument("--set", dest="row_set", default="gsm8k", choices=["gsm8k", "short"])
    ap.add_argument("--objective", default="sft", choices=["sft", "grpo"])
    ap.add_argument("--methods", default="art,art +prefix,lora r=16")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--micro", type=int, default=4)
    ap.add_argument("--generations", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--_one", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._one:
        with contextlib.redirect_stdout(sys.stderr):
            out = one(**json.loads(a._one))
        print(json.dumps(out))
        return
    from step_time import run_isolated

    labels = [m.strip() for m in a.methods.split(",") if m.strip()]
    res = {}
    for label in labels:
        spec = dict(
            model_name=a.model,
            label=label,
            objective=a.objective,
            batch=a.batch,
            micro=a.micro,
            generations=a.generations,
            new_tokens=a.new_tokens,
            threads=a.threads,
            top=a.top,
            row_set=a.row_set,
        )
        res[label] = run_isolated(__file__, spec)
    print(
        f"{a.model}, {a.objective}, {a.row_set} rows, batch {a.batch}, micro-batch {a.micro}, {a.threads} threads; "
        "one profiled step (the second); forward scopes and backward in CPU seconds"
    )
    print(f"{'':34s}" + "".join(f"{label:>16s}" for label in labels))
    print(f"{'step wall time':34s}" + "".join(f"{res[k]['step_s']:16.2f}" for k in labels))
    for s in SCOPES:
        name = s if s.startswith("generate") else "fwd " + s
        print(f"{name:34s}" + "".join(f"{res[k]['scopes_ms'][s] / 1e3:16.2f}" for k in labels))
    print(f"{'backward (all autograd)':34s}" + "".join(f"{res[k]['backward_ms'] / 1e3:16.2f}" for k in labels))
    for label in labels:
        print(f"\n{label}: operators by self CPU time (s, calls)")
        for name, ms, n in res[label]["ops"]:
            print(f"  {name:40s} {ms / 1e3:8.2f} {n:8d}")


if __name__ == "__main__":
    main()
