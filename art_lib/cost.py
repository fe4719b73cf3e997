"""What one arm of a paper run costs, bounded from above: GPU time (HF and vLLM generation) and peak GPU memory.

Every count is its worst case: each rollout and evaluation answer runs to the full generation budget, DAPO's
dynamic sampling re-generates the whole batch `max_resample_rounds` times at every step, the prompts are the
longest of the benchmark's sample (`prompt_lengths`), an evaluation batch costs a full batch even when it is
the last, partial one. Speeds (`Speed`, one row per model size) are assumptions for an H100-class GPU until
`calibrate` measures them on the user's GPU.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

#: Test-split sizes when n_test is None (ToolMind: 10% of all 368,611 rows; rows without a call are dropped).
TEST_SIZES = {"gsm8k": 1319, "svamp": 300, "gpqa": 198, "toolmind": 36861}
ENGINES = ("hf", "vllm")


@dataclass
class Speed:
    """One model size's speeds on one GPU. Generation is a time per decoding step: a fixed part (reading the
    weights, launching every layer's kernels: what dominates small models) plus a part per row of the batch."""

    hf_step_ms: float  # HF `generate`: ms per decoding step, whatever the batch
    hf_row_ms: float  # + ms per row per decoding step (attention over the cache, sampling)
    vllm_step_ms: float  # the same for vLLM (CUDA graphs: a much smaller fixed part)
    vllm_row_ms: float
    train_tflops: float  # achieved bfloat16 TFLOP/s of forward + backward (and of a forward alone)
    load_s: float  # load the frozen model from local disk, once per arm
    vllm_start_s: float  # start a vLLM engine on it, once per arm (vLLM column only)

    def gen_seconds(self, rows: int, new_tokens: int, engine: str = "hf") -> float:
        """Seconds of one `generate` call of `rows` rows that all run to `new_tokens` tokens."""
        step, row = (self.hf_step_ms, self.hf_row_ms) if engine == "hf" else (self.vllm_step_ms, self.vllm_row_ms)
        return new_tokens * (step + rows * row) / 1000.0

    def tokens_per_s(self, rows: int, engine: str = "hf") -> float:
        return rows / self.gen_seconds(rows, 1, engine)


#: Assumed speeds on one H100 in bfloat16, per Qwen3.5 size (NOT measurements: `reproduce paper --calibrate`
#: measures them). HF: ~1.2-1.5 ms per layer per decoding step of Python and kernel launches (24 or 32 layers),
#: far more than reading the weights; vLLM: CUDA graphs cut that to a few ms. Training: small hidden sizes
#: reach a small share of the GPU's peak.
ASSUMED = {
    "0.8B": Speed(35.0, 0.12, 6.0, 0.03, 80.0, 30.0, 60.0),
    "2B": Speed(38.0, 0.20, 7.0, 0.05, 120.0, 45.0, 70.0),
    "4B": Speed(50.0, 0.35, 9.0, 0.08, 150.0, 60.0, 80.0),
    "9B": Speed(55.0, 0.70, 12.0, 0.15, 200.0, 90.0, 100.0),
}
FALLBACK = "0.8B"  # a model of no known size (a local stand-in checkpoint) gets this row until calibrated


@dataclass
class Throughput:
    """The speeds a plan uses per model size, and which of them a calibration measured."""

    speeds: dict[str, Speed] = field(default_factory=lambda: dict(ASSUMED))
    measured: dict[str, list[str]] = field(default_factory=dict)  # size -> the Speed fields measured
    device: str = "assumed: one H100-class GPU, bfloat16"

    def speed(self, model: str) -> Speed:
        return self.speeds.get(size_key(model)) or self.speeds[FALLBACK]


def size_key(model: str) -> str:
    """'Qwen/Qwen3.5-0.8B' -> '0.8B'; a local checkpoint folder -> its folder name."""
    name = Path(str(model)).name
    return name.split("-", 1)[1] if name.lower().startswith("qwen3.5-") else name


@functools.cache
def model_config(model: str):
    """The model's config: the published one for a Qwen3.5 size (art_lib/assets), else a local checkpoint's."""
    from transformers import AutoConfig

    from .models import FAMILIES, real_config
    from .runtime import resolve_model

    if size_key(model) in FAMILIES["qwen3_5"]:
        return real_config("qwen3_5", size_key(model))
    path = resolve_model(model)[0] if ":" in str(model) else model  # a registered name such as toy:base
    if (Path(path) / "config.json").exists():
        return AutoConfig.from_pretrained(path)
    raise ValueError(f"--plan knows the Qwen3.5 configs in art_lib/assets and local checkpoints; cannot size {model!r}")


@functools.cache
def _meta(model: str):
    import torch
    from transformers import AutoModelForImageTextToText

    with torch.device("meta"):
        return AutoModelForImageTextToText.from_config(model_config(model))


@functools.cache
def parameters(model: str) -> int:
    return sum(p.numel() for p in _meta(model).parameters())


@functools.cache
def lora_parameters(model: str, rank: int) -> int:
    """Trainable parameters of a rank-`rank` LoRA on the kit's target layers (`methods.LORA_TARGETS`)."""
    from .methods import LORA_TARGETS

    return rank * sum(
        m.in_features + m.out_features for n, m in _meta(model).named_modules() if re.match(LORA_TARGETS, n)
    )


def arm_tokens(arm: dict) -> tuple[int, int]:
    """(prompt tokens incl. the artwork's visual tokens, SFT target tokens) of an arm, from `prompt_lengths`."""
    from .prompt_lengths import measure, visual_tokens

    lengths = measure(arm["benchmark"], arm["model"], arm.get("data_dir"))
    side = arm.get("image_size") or 256
    return lengths.prompt + visual_tokens(arm["model"], side, side), lengths.target


def trainable_parameters(arm: dict) -> int:
    """What the arm's optimiser holds: the artwork's pixels, the LoRA adapters or the soft-prompt embeddings."""
    from .methods import spec

    if arm["steps"] == 0:  # controls and evaluations train nothing
        return 0
    kind, side = spec(arm.get("method", "art")), arm.get("image_size") or 256
    if kind.adapter:  # LoRA: the adapter layers
        return lora_parameters(arm["model"], int(arm.get("lora_rank") or 8))
    if not kind.servable:  # a soft prompt: one embedding per visual token the image would have
        from .prompt_lengths import visual_tokens

        return visual_tokens(arm["model"], side, side) * model_config(arm["model"]).text_config.hidden_size
    return 3 * side * side  # ART: the artwork's pixels


def _resample_rounds(arm: dict, p: dict) -> int:
    """Extra rollout rounds DAPO's dynamic sampling may run per micro-step (`TrainConfig.max_resample_rounds`)."""
    from .config import TrainConfig

    rl = arm["objective"] not in ("sft", "none")
    dynamic = p.get("dynamic_sampling")
    on = rl and (arm["objective"] == "dapo" if dynamic is None else bool(dynamic))
    return int(p.get("max_resample_rounds", TrainConfig.max_resample_rounds)) if on else 0


def _rollout_rows(arm: dict, p: dict) -> tuple[int, int]:
    """(prompts per generate call, generate calls per rollout round)."""
    per_call = min(arm["batch_size"], int(p.get("generation_batch_size") or arm["batch_size"]))
    return per_call, math.ceil(arm["batch_size"] / per_call) if per_call else 0


def arm_cost(arm: dict, p: dict, tp: Throughput) -> dict:
    """Upper bounds of one arm: generated tokens and seconds with HF and with vLLM generation."""
    s, n = tp.speed(arm["model"]), parameters(arm["model"])
    P, T = arm_tokens(arm)
    B, G = arm["budget"], arm["num_generations"]
    rl = arm["objective"] not in ("sft", "none")
    rounds = 1 + _resample_rounds(arm, p)
    micro_steps = arm["steps"] * int(p.get("grad_accum") or 1)
    ckpt = 8 / 6 if p.get("gradient_checkpointing") else 1.0  # one more forward of every layer
    flops, gen = 0.0, {e: 0.0 for e in ENGINES}
    tokens = 0
    if rl and micro_steps:
        prompts, calls = _rollout_rows(arm, p)
        for e in ENGINES:
            gen[e] += micro_steps * rounds * calls * s.gen_seconds(prompts * G, B, e)
        rows = micro_steps * rounds * arm["batch_size"] * G
        tokens += rows * B
        flops += rows * (P + B) * 2 * n  # prefill of every round's prompts + old log-probs of every round
        flops += micro_steps * arm["batch_size"] * G * (P + B) * 6 * n * ckpt  # loss: at most one batch kept
    elif micro_steps:
        flops += micro_steps * arm["batch_size"] * (P + T) * 6 * n * ckpt
    ebs = int(p.get("eval_batch_size") or 8)
    batches = arm["evals"] * math.ceil(arm["n_test"] / ebs)  # greedy, each batch to the full budget
    for e in ENGINES:
        gen[e] += batches * s.gen_seconds(ebs, B, e)
    tokens += arm["evals"] * arm["n_test"] * B
    flops += arm["evals"] * arm["n_test"] * P * 2 * n  # prefill of the evaluation prompts
    compute = flops / (s.train_tflops * 1e12)
    loads = s.load_s if (arm["steps"] or arm["evals"]) else 0.0
    return {
        "prompt_tokens": P,
        "resample_rounds": rounds - 1 if rl else 0,
        "generated_tokens": tokens,
        "seconds_hf": gen["hf"] + compute + loads,
        "seconds_vllm": gen["vllm"] + compute + loads + (s.vllm_start_s if loads else 0.0),
    }


def memory_parts(arm: dict, p: dict, tp: Throughput | None = None) -> dict:
    """Bytes alive at the peak of one arm (bfloat16 model, float32 trainable state), by what holds them."""
    from .forward import LOGIT_CHUNK_TOKENS

    c = model_config(arm["model"]).text_config
    h, layers, vocab = c.hidden_size, c.num_hidden_layers, c.vocab_size
    full = sum(t == "full_attention" for t in c.layer_types)
    linear = layers - full
    P, T = arm_tokens(arm)
    B, G = arm["budget"], arm["num_generations"]
    rl = arm["objective"] not in ("sft", "none")

    def sampling(rows: int) -> int:  # KV cache of full attention, fixed-size linear-attention state, float32 logits
        kv = rows * (P + B) * full * 2 * c.num_key_value_heads * c.head_dim * 2
        state = rows * linear * c.linear_num_value_heads * c.linear_key_head_dim * c.linear_value_head_dim * 4
        conv = (
            rows
            * linear
            * (c.linear_num_key_heads * c.linear_key_head_dim * 2 + c.linear_num_value_heads * c.linear_value_head_dim)
            * c.linear_conv_kernel_dim
            * 2
        )
        return kv + state + conv + rows * vocab * 8

    completion = B if rl else T
    rows = arm["batch_size"] * (G if rl else 1)
    micro = min(rows, int(p.get("micro_batch_size") or rows)) if arm["steps"] else 0
    per_token = (2 * layers + 34) if p.get("gradient_checkpointing") else 34 * layers  # bytes x hidden per token
    chunk = min(micro * completion, LOGIT_CHUNK_TOKENS)
    train = micro * (P + completion) * h * per_token + chunk * vocab * 10  # bf16 logits + fp32 log-softmax + grad
    prompts, _ = _rollout_rows(arm, p)
    return {
        "weights": 2 * parameters(arm["model"]),  # frozen, once (bfloat16)
        "trainable": 16 * trainable_parameters(arm),  # float32 parameter + gradient + Adam's two moments
        "rollout_cache": sampling(prompts * G) if rl and arm["steps"] else 0,
        "eval_cache": sampling(int(p.get("eval_batch_size") or 8)) if arm["evals"] else 0,
        "activations": train,
        "cuda_context": 10**9,  # CUDA context and allocator slack
    }


def peak_memory_gb(arm: dict, p: dict, tp: Throughput | None = None) -> float:
    """Peak GPU memory of one arm: weights, trainable state and context always, plus the largest of the phases
    that do not overlap (rollout cache, training micro-batch, evaluation cache)."""
    m = memory_parts(arm, p, tp)
    alive = m["weights"] + m["trainable"] + m["cuda_context"]
    return round((alive + max(m["rollout_cache"], m["eval_cache"], m["activations"])) / 1e9, 1)


def replace_speed(tp: Throughput, size: str, device: str, **fields) -> Throughput:
    """A copy of `tp` with `fields` of one size's `Speed` replaced by measurements (recorded in `measured`)."""
    base = tp.speeds.get(size) or tp.speeds[FALLBACK]
    speeds = dict(tp.speeds) | {size: dataclasses.replace(base, **fields)}
    measured = dict(tp.measured) | {size: sorted(set(tp.measured.get(size, [])) | set(fields))}
    return Throughput(speeds=speeds, measured=measured, device=device)


def speed_table(tp: Throughput, models: list[str], rows: int, eval_rows: int) -> list[str]:
    """One line per model size: generation tokens/s (HF and vLLM, at the rollout and the evaluation batch),
    training TFLOP/s, load time, and which of them are measured."""
    out = []
    for size in sorted({size_key(m) for m in models}):
        s = tp.speeds.get(size) or tp.speeds[FALLBACK]
        got = tp.measured.get(size, [])
        src = f"measured: {', '.join(got)}" if got else ("assumed" if size in tp.speeds else f"assumed ({FALLBACK}'s)")
        vllm = "measured" if any(f.startswith("vllm") for f in got) else "assumed until calibrated"
        out.append(
            f"  {size}: HF {s.tokens_per_s(rows):,.0f} tok/s at {rows} rows, {s.tokens_per_s(eval_rows):,.0f} at "
            f"{eval_rows} (step {s.hf_step_ms:g} ms + {s.hf_row_ms:g} ms/row); vLLM {s.tokens_per_s(rows, 'vllm'):,.0f}"
            f" / {s.tokens_per_s(eval_rows, 'vllm'):,.0f} tok/s ({vllm}); train {s.train_tflops:g} TFLOP/s; "
            f"load {s.load_s:g} s [{src}]"
        )
    return out


def _hours(x: float) -> str:
    return f"{x:.1f}" if x >= 1 else f"{x:.3f}"


def print_plan(df, tp: Throughput) -> None:
    """The plan as text: per arm, per notebook totals (HF and vLLM GPU-hours), and every assumption behind it."""
    import pandas as pd

    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.max_rows", 500):
        for stem, g in df.groupby("notebook", sort=False):
            print(
                f"\n== {stem}: {len(g)} arms, {g.steps.sum()} steps, {g.generated_tokens.sum() / 1e6:.1f}M generated "
                f"tokens (at most), peak {g.peak_gpu_gb.max():.0f} GB, <= {_hours(g.gpu_hours_hf.sum())} GPU-hours "
                f"with HF generate, <= {_hours(g.gpu_hours_vllm.sum())} with vLLM"
            )
            print(g.drop(columns="notebook").to_string(index=False))
    print(
        f"\nTotal: <= {_hours(df.gpu_hours_hf.sum())} GPU-hours with HF generate, "
        f"<= {_hours(df.gpu_hours_vllm.sum())} with vLLM; {df.generated_tokens.sum() / 1e9:.2f}B generated tokens "
        f"at most; peak {df.peak_gpu_gb.max():.0f} GB on one GPU."
    )
    if fraction := df.attrs.get("vllm_memory_fraction"):
        gpu = 80  # GB of an H100: what the speeds assume
        print(
            f"With vLLM colocated (vllm_memory_fraction {fraction:g}): the engine holds {fraction:g} of the GPU "
            f"({fraction * gpu:.0f} GB of an {gpu} GB H100) beside the training peak above: "
            f"{df.peak_gpu_gb.max() + fraction * gpu:.0f} GB at most ("
            + ("fits" if df.peak_gpu_gb.max() + fraction * gpu <= gpu else "does NOT fit: lower the fraction")
            + ")."
        )
    rollout_rows = int((df.prompts_per_step * df.generations).max() or 1)
    print(f"\nSpeeds ({tp.device}):")
    print("\n".join(speed_table(tp, sorted(set(df.model)), rollout_rows, int(df.eval_batch.max()))))
    print("Prompt lengths (the longest of each benchmark's sample; the plan never downloads):")
    for bench, text in df.attrs.get("prompt_lengths", {}).items():
        print(f"  {bench}: {text}")
    print(
        "Upper bounds: every rollout and evaluation answer runs to its full budget; DAPO's dynamic sampling "
        "re-generates the whole batch at each of its max_resample_rounds (resample_rounds) every step; an "
        "evaluation batch costs a full eval_batch even when partial; prompts are the sample's longest; one model "
        "load per arm (vLLM: plus an engine start). Memory = bfloat16 weights once + float32 trainable state "
        "(parameter, gradient, Adam moments) + CUDA context + the largest of the rollout cache, the evaluation "
        "cache (KV of full-attention layers, linear-attention state, logits) and one training micro-batch "
        "(activations, one chunk of vocabulary logits); a colocated vLLM engine adds its own gpu_memory_utilization."
    )
    if not any(any(f.startswith("vllm") for f in v) for v in tp.measured.values()):
        print("vLLM speeds are assumptions until `reproduce paper --calibrate` measures them where vLLM is installed.")
