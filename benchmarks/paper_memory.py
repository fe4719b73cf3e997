"""Memory of one DAPO step at the paper settings on the real Qwen3.5-0.8B architecture (random weights).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/paper_memory.py --threads 2 [--micro 4] [--device cpu --dtype float32]

Paper settings: 16 prompts x 8 completions of 512 tokens (128 rows), a 256x256 artwork, GSM8K-length
prompts (tests/data/gsm8k). The step is what `steps.rl_step` does after sampling: the vision tower
once, then per micro-batch of rows the old log-probs (no grad), the policy forward, the DAPO loss
normalised by the whole step's tokens, and its backward into a leaf holding the image embeddings;
finally one backward through the vision tower into the pixels. Here ONE micro-batch runs for real
(sampling is left out: random weights never stop, so completions are 512 random tokens, the
longest case). Printed: measured peak memory and time of that micro-batch, the analytic size of the
whole step unchunked, and an estimate of the bfloat16 GPU peak for the whole step with micro-batching.

On CPU the peak is the process's peak RSS (`ru_maxrss`); on CUDA `torch.cuda.max_memory_allocated`.
Prompts are tokenised by the kit's tiny tokenizer (a small BPE vocabulary), which makes them longer
than Qwen's real tokenizer would: the prompt lengths, and so the memory, err on the high side.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GiB = 2**30


def rss() -> int:
    """Peak resident set size of this process so far, in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss() -> int:
    """Resident set size now, in bytes."""
    import os

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def gsm8k_prompts(n: int) -> list[str]:
    rows = [json.loads(line) for line in (ROOT / "tests" / "data" / "gsm8k" / "test.jsonl").read_text().splitlines()]
    return [r["question"] for r in rows[:n]]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--generations", type=int, default=8)
    ap.add_argument("--completion", type=int, default=512, help="completion tokens per row")
    ap.add_argument("--micro", type=int, default=4, help="rows per forward/backward (micro_batch_size)")
    ap.add_argument("--size", default="0.8B")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--gradient-checkpointing", action="store_true", help="recompute decoder layers in backward")
    a = ap.parse_args()

    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    from art_lib import losses
    from art_lib.forward import LOGIT_CHUNK_TOKENS, completion_logprobs
    from art_lib.kernels import runtime_info
    from art_lib.methods import make_method
    from art_lib.models import gradient_checkpointing, random_full_model
    from art_lib.pixel_prompt import PixelPrompt
    from art_lib.preprocess import num_visual_tokens
    from art_lib.prompting import encode, example_text, pad_batch
    from art_lib.rollout import row_token_ids

    cuda = a.device.startswith("cuda")
    base = current_rss()
    t = time.perf_counter()
    model, proc = random_full_model(size=a.size, dtype=getattr(torch, a.dtype), device=a.device)
    load_s = time.perf_counter() - t
    n_params = sum(p.numel() for p in model.parameters())
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    after_load = current_rss()
    tc = model.config.text_config
    V, rows, C = tc.vocab_size, a.prompts * a.generations, a.completion

    # The step's rows: each GSM8K prompt (with the image) repeated G times, then C completion tokens.
    m = make_method("art", model, proc, artwork=PixelPrompt.from_icon("math", 256))
    texts = [example_text(proc, {"prompt": q, "meta": {}}) for q in gsm8k_prompts(a.prompts)]
    prompts = encode(proc, texts, num_image_tokens=num_visual_tokens(256, 256, proc.image_processor))
    gen = torch.Generator().manual_seed(0)
    prompt_ids = [row_token_ids(prompts, i)[0] for i in range(a.prompts) for _ in range(a.generations)]
    comp_ids = torch.randint(2000, V - 1000, (rows, C), generator=gen).tolist()  # no special or end-of-turn id
    batch = pad_batch(proc, prompt_ids, comp_ids).to(a.device)
    prompt_lengths = [len(p) for p in prompt_ids[:: a.generations]]
    tokens = float(batch.completion_mask.sum())
    rewards = torch.randn(rows, generator=gen)
    adv = losses.group_advantages(rewards, a.generations).to(a.device)

    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    _, image, embeds = m.policy()  # vision tower, once per step
    leaf = embeds.detach().requires_grad_()
    sub = batch.rows(0, a.micro)
    with torch.no_grad():
        old = completion_logprobs(model, sub, image, image_embeds=embeds.detach())
    t_old = time.perf_counter() - t
    with gradient_checkpointing(model, a.gradient_checkpointing):
        logps = completion_logprobs(model, sub, image, image_embeds=leaf)
    loss, _ = losses.policy_loss(
        logps,
        old,
        adv[: a.micro],
        sub.completion_mask,
        loss_type="dapo",
        epsilon_low=0.2,
        epsilon_high=0.28,
        num_items_in_batch=tokens,
    )
    loss.backward()
    embeds.backward(leaf.grad)
    if cuda:
        torch.cuda.synchronize()
    micro_s = time.perf_counter() - t
    grad_ok = m.artwork.raw.grad is not None and bool(torch.isfinite(m.artwork.raw.grad).all())
    peak = torch.cuda.max_memory_allocated() if cuda else rss()
    act = peak - (weight_bytes if cuda else after_load)  # what one micro-batch adds on top of the loaded model

    T = batch.input_ids.shape[1]
    el = torch.finfo(getattr(torch, a.dtype)).bits // 8
    full_logits_bf16 = rows * (C + 1) * V * 2
    full_logits_f32 = rows * (C + 1) * V * 4
    chunk_logits = LOGIT_CHUNK_TOKENS * V * (2 + 4 + 4)  # bf16 logits, fp32 upcast, fp32 softmax in backward
    bf16_weights = n_params * 2
    act_bf16 = act * 2 / el  # activations scale with the element size (an estimate: some kernels upcast)
    n_full = sum(t == "full_attention" for t in tc.layer_types)
    n_lin = len(tc.layer_types) - n_full
    kv_cache = rows * (T + 1) * n_full * 2 * tc.num_key_value_heads * tc.head_dim * 2  # bf16 K and V
    lin_state = rows * n_lin * tc.linear_num_value_heads * tc.linear_key_head_dim * tc.linear_value_head_dim * 4

    print(f"device {a.device}, dtype {a.dtype}, threads {torch.get_num_threads()}; {runtime_info(model)}")
    print(
        f"model: Qwen3.5-{a.size} architecture, random weights, {n_params / 1e9:.3f} B parameters, "
        f"{weight_bytes / GiB:.2f} GiB in {a.dtype}; load {load_s:.1f} s, RSS before {base / GiB:.2f} GiB, "
        f"after load {after_load / GiB:.2f} GiB"
    )
    print(
        f"step: {a.prompts} prompts x {a.generations} completions = {rows} rows; prompt tokens (with 64 image "
        f"tokens) min/mean/max {min(prompt_lengths)}/{sum(prompt_lengths) / len(prompt_lengths):.0f}/"
        f"{max(prompt_lengths)}; {C} completion tokens; padded row length T = {T}; vocabulary V = {V}"
    )
    print(
        f"measured, ONE micro-batch of {a.micro} rows, gradient_checkpointing {a.gradient_checkpointing} "
        "(vision tower + old log-probs + policy forward + DAPO loss + backward into the pixels): "
        f"{micro_s:.1f} s (old log-probs {t_old:.1f} s), peak "
        f"{peak / GiB:.2f} GiB, i.e. {act / GiB:.2f} GiB over the loaded model = "
        f"{act / (a.micro * T) / 2**20:.2f} MiB per row token; pixel grad finite: {grad_ok}"
    )
    print(
        f"whole step, {rows // a.micro} micro-batches: about {micro_s * rows / a.micro / 60:.1f} min here "
        "(generation not included)"
    )
    print(
        "analytic, the whole step UNCHUNKED (the old code path): logits (rows, C+1, V) = "
        f"{rows} x {C + 1} x {V} = {full_logits_bf16 / 1e9:.1f} GB in bfloat16, {full_logits_f32 / 1e9:.1f} GB "
        "as float32; the old code upcast them, so bfloat16 logits + their float32 copy = "
        f"{(full_logits_bf16 + full_logits_f32) / 1e9:.1f} GB for the loss alone, before log-softmax "
        "temporaries and any activation"
    )
    print("estimate, bfloat16 GPU peak of the whole step with micro-batching:")
    print(f"  weights {n_params / 1e9:.3f} B x 2 B = {bf16_weights / GiB:.2f} GiB")
    print(
        f"  logits of one projection chunk: {LOGIT_CHUNK_TOKENS} tokens x V x (2 + 4 + 4 B) = "
        f"{chunk_logits / GiB:.2f} GiB"
    )
    print(
        f"  rollout caches for {rows} rows (freed before the loss): KV of {n_full} full-attention layers "
        f"{kv_cache / GiB:.2f} GiB + recurrent state of {n_lin} linear layers (fp32) {lin_state / GiB:.2f} GiB"
    )
    for micro in sorted({a.micro, 4, 8, 16}):
        act_m = act_bf16 * micro / a.micro
        total = bf16_weights + max(act_m + chunk_logits, kv_cache + lin_state)
        print(
            f"  micro_batch_size {micro:>2}: activations {act_bf16 / GiB:.2f} GiB x {micro}/{a.micro} = "
            f"{act_m / GiB:.2f} GiB -> peak ~ {total / GiB:.1f} GiB "
            f"({'fits' if total < 40e9 else 'does NOT fit'} in 40 GB)"
        )
    print(
        f"  (activations measured above in {a.dtype} x 2/{el} for bfloat16; they include one projection chunk, "
        "so adding it again errs high)"
    )


if __name__ == "__main__":
    main()
