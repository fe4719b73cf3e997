"""Measure the speeds a plan assumes, on this machine: `python -m art_lib.reproduce paper --calibrate`.

For each model size of the plan: load it (the real checkpoint when it is on disk, else the real architecture
with random weights: the same compute), time HF `generate` at the plan's rollout batch and at its evaluation
batch with every row forced to the full budget (an early stop would flatter tokens/s), a few real SFT training
steps of the kit's trainer (achieved TFLOP/s, counted as the plan counts them), the load itself, and vLLM's
generation when vLLM imports and CUDA is there. The results go to a JSON file; `load_calibration` turns it
into the `Throughput` a plan uses (`--plan --calibration FILE`).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import time
from pathlib import Path

from .cost import FALLBACK, Throughput, parameters, replace_speed, size_key

#: Fields of `cost.Speed` a calibration measures (HF always; vLLM only where it imports, on CUDA).
HF_FIELDS = ("hf_step_ms", "hf_row_ms", "train_tflops", "load_s")
VLLM_FIELDS = ("vllm_step_ms", "vllm_row_ms", "vllm_start_s")


@contextlib.contextmanager
def full_length(model, new_tokens: int):
    """Every row generates exactly `new_tokens` tokens (`min_new_tokens` masks the end-of-turn tokens until then)."""
    cfg = model.generation_config
    old = getattr(cfg, "min_new_tokens", None)
    cfg.min_new_tokens = new_tokens
    try:
        yield
    finally:
        cfg.min_new_tokens = old


def _timed(fn, device: str) -> tuple[object, float]:
    import torch

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    t = time.perf_counter()
    out = fn()
    sync()
    return out, time.perf_counter() - t


def load_for_timing(model: str, device: str, dtype: str):
    """(model, processor, what was loaded): a local or cached checkpoint, else the real architecture, random."""
    from huggingface_hub import try_to_load_from_cache

    from .models import FAMILIES, load_frozen, random_full_model

    local = Path(model).is_dir() or isinstance(try_to_load_from_cache(model, "config.json"), str)
    if local:
        m, p = load_frozen(model, device=device, dtype=dtype)
        return m, p, "checkpoint"
    size = size_key(model)
    if size not in FAMILIES["qwen3_5"]:
        raise ValueError(f"calibration: {model!r} is neither on disk nor a Qwen3.5 size with a shipped config")
    m, p = random_full_model(size=size, dtype=dtype, device=device)
    return m, p, "random weights, real architecture"


def fit_steps(points: list[tuple[int, float]], new_tokens: int) -> tuple[float, float]:
    """(ms per decoding step, ms per row per step) through measured (rows, seconds) points, never below any of
    them: a time model that bounds every measured batch from above."""
    per_step = sorted((r, 1000.0 * s / new_tokens) for r, s in points)
    (r1, t1), (r2, t2) = per_step[0], per_step[-1]
    row = (t2 - t1) / (r2 - r1) if r2 > r1 else 0.0
    row = max(row, 0.0)
    step = max(max(t - r * row for r, t in per_step), 0.0)
    return step, row


def _hf_generation(model, processor, examples, artwork, shape: dict, device: str) -> dict:
    """Seconds of one rollout `generate` (prompts x G rows, sampled) and one evaluation batch (greedy)."""
    from .evaluate import generate_completions
    from .hf_generator import HFGenerator
    from .preprocess import preprocess_image
    from .prompting import example_text
    from .rollout import sample_rollout

    B, G, prompts = shape["new_tokens"], shape["generations"], shape["prompts"]
    texts = [example_text(processor, e) for e in examples]
    image = preprocess_image(artwork.pixels().detach().to(device), processor.image_processor)

    def rollout():  # the trainer's HF rollout path (`steps`): HFGenerator sent the float image
        kw = dict(num_generations=G, image=image, max_new_tokens=B, compute_logprobs=False)
        return sample_rollout(
            HFGenerator(model, processor), model, processor, texts[:prompts], examples[:prompts], **kw
        )

    def evaluation():
        batch = texts[: shape["eval_rows"]]
        return generate_completions(model, processor, batch, image=artwork.to_pil(), max_new_tokens=B)

    with full_length(model, B):
        _timed(rollout, device) if device == "cuda" else None  # CUDA: a first call pays kernel set-up
        r, roll_s = _timed(rollout, device)
        ev, eval_s = _timed(evaluation, device)
    new = int(r.batch.completion_mask.shape[1])
    if new < B or min(e["completion_tokens"] for e in ev) < B:
        raise RuntimeError(f"calibration: generation stopped before the {B}-token budget; tokens/s would be flattered")
    return {"rollout": (prompts * G, roll_s), "eval": (shape["eval_rows"], eval_s)}


def _training(model, processor, examples, artwork, shape: dict, device: str) -> dict:
    """A few real SFT steps of the kit's trainer: seconds per step (the slowest after the first) and the FLOPs
    the plan counts for it (6 x parameters x tokens, x 8/6 with gradient checkpointing)."""
    from .prompting import example_text
    from .registry import default_sft_target
    from .train import train

    micro, steps = shape["micro"], shape["steps"]
    tok = processor.tokenizer
    visual = shape["visual_tokens"]
    lengths = [
        len(tok(example_text(processor, e), add_special_tokens=False).input_ids)
        - 1
        + visual
        + len(tok(default_sft_target(e), add_special_tokens=False).input_ids)
        + 1
        for e in examples
    ]
    res, _ = _timed(
        lambda: train(
            model,
            processor,
            examples,
            objective="sft",
            method="art",
            artwork=artwork,
            steps=steps,
            batch_size=micro,
            micro_batch_size=micro,
            gradient_checkpointing=shape["checkpointing"],
            progress=False,
        ),
        device,
    )
    seconds = res.history["seconds"].tolist()
    step_s = max(seconds[1:] or seconds)
    factor = 8 / 6 if shape["checkpointing"] else 1.0
    flops = 6 * shape["parameters"] * min(lengths) * micro * factor  # the fewest tokens a step can have
    return {"step_s": step_s, "flops": flops, "tokens": min(lengths) * micro}


def _vllm_generation(model, processor, examples, artwork, shape: dict) -> dict:
    """vLLM colocated on the same GPU: engine start, one rollout batch and one evaluation batch, every row to the
    full budget (the end-of-turn tokens suppressed)."""
    import gc

    import torch

    from .prompting import eos_token_ids, example_text
    from .vllm_engine import VLLMEngine

    B, G, prompts = shape["new_tokens"], shape["generations"], shape["prompts"]
    texts = [example_text(processor, e) for e in examples]
    eos = eos_token_ids(model, processor)
    engine, start_s = _timed(
        lambda: VLLMEngine.from_model(
            model, processor, size=shape["size"], gpu_memory_utilization=0.35, max_model_len=shape["max_len"]
        ),
        "cuda",
    )
    gen = dict(image=artwork.to_pil(), max_tokens=B, suppress_token_ids=eos)

    def run(rows: list[str], n: int, temperature: float):
        return engine.generate(rows, n=n, temperature=temperature, **gen)

    try:
        run(texts[:1], 1, 0.0)  # warm-up
        _, roll_s = _timed(lambda: run(texts[:prompts], G, 1.0), "cuda")
        _, eval_s = _timed(lambda: run(texts[: shape["eval_rows"]], 1, 0.0), "cuda")
    finally:
        engine.llm = None  # the engine's memory goes back to the trainer's share of the GPU
        gc.collect()
        torch.cuda.empty_cache()
    return {"start_s": start_s, "rollout": (prompts * G, roll_s), "eval": (shape["eval_rows"], eval_s)}


def vllm_available(device: str) -> bool:
    import importlib.util

    return device == "cuda" and importlib.util.find_spec("vllm") is not None


def calibrate_model(model: str, shape: dict, examples: list[dict], device: str, dtype: str) -> dict:
    """Measure one model size at `shape` (see `shapes`); returns the `Speed` fields measured and the raw numbers."""
    from .pixel_prompt import PixelPrompt
    from .prompt_lengths import visual_tokens

    (m, proc, loaded), load_s = _timed(lambda: load_for_timing(model, device, dtype), device)
    need = max(shape["prompts"], shape["eval_rows"], shape["micro"] * shape["steps"])
    examples = (examples * (need // max(len(examples), 1) + 1))[:need]
    artwork = PixelPrompt.from_icon("math", shape["image_size"])
    shape = shape | {"parameters": parameters(model), "size": size_key(model)}
    shape["visual_tokens"] = visual_tokens(model, shape["image_size"], shape["image_size"])
    hf = _hf_generation(m, proc, examples, artwork, shape, device)
    step_ms, row_ms = fit_steps([hf["rollout"], hf["eval"]], shape["new_tokens"])
    tr = _training(m, proc, examples, artwork, shape, device)
    speed = {"hf_step_ms": step_ms, "hf_row_ms": row_ms, "train_tflops": tr["flops"] / tr["step_s"] / 1e12}
    speed["load_s"] = load_s
    raw = {
        "loaded": loaded,
        "shape": {k: v for k, v in shape.items() if k != "size"},
        "hf_rollout_tokens_per_s": hf["rollout"][0] * shape["new_tokens"] / hf["rollout"][1],
        "hf_eval_tokens_per_s": hf["eval"][0] * shape["new_tokens"] / hf["eval"][1],
        "train_step_s": tr["step_s"],
        "train_tokens_per_s": tr["tokens"] / tr["step_s"],
    }
    if vllm_available(device):
        try:
            v = _vllm_generation(m, proc, examples, artwork, shape)
            speed["vllm_step_ms"], speed["vllm_row_ms"] = fit_steps([v["rollout"], v["eval"]], shape["new_tokens"])
            speed["vllm_start_s"] = v["start_s"]
            raw["vllm_rollout_tokens_per_s"] = v["rollout"][0] * shape["new_tokens"] / v["rollout"][1]
        except Exception as e:  # vLLM present but unusable here: the HF numbers still stand, the reason is kept
            raw["vllm_error"] = f"{type(e).__name__}: {str(e)[:500]}"
    del m
    from .runtime import free_memory

    free_memory()
    return {"speed": speed, "raw": raw}


def shapes(df, steps: int = 3) -> dict[str, dict]:
    """Per model of a plan (`plan.plan`'s rows): the batch shapes to measure it at (its largest rollout batch,
    evaluation batch, budget, training micro-batch), and the benchmark whose prompts are the longest."""
    out = {}
    for model, g in df.groupby("model", sort=False):
        rl = g[g.generations > 0]
        longest = g.loc[g.prompt_tokens.idxmax()]
        gens = int(rl.generations.max()) if len(rl) else 1
        prompts = int(rl.prompts_per_step.max()) if len(rl) else int(g.eval_batch.max())
        out[model] = {
            "benchmark": str(longest.benchmark),
            "prompts": prompts,
            "generations": gens,
            "eval_rows": int(g.eval_batch.max()),
            "new_tokens": int(g.budget.max()),
            "micro": int(g.micro_batch.max()),
            "checkpointing": bool(g.grad_ckpt.any()),
            "steps": steps,
            "image_size": 256,
            "max_len": int(g.prompt_tokens.max() + g.budget.max() + 64),
        }
    return out


def calibrate(df, out: str | Path, examples_of, device: str, dtype: str, steps: int = 3, note: str = "") -> dict:
    """Measure every model of the plan `df` (`examples_of(benchmark)` gives prompts) and write the JSON `out`."""
    import torch

    record = {
        "device": torch.cuda.get_device_name(0) if device == "cuda" else f"CPU ({torch.get_num_threads()} threads)",
        "dtype": dtype,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "note": note,
        "sizes": {},
    }
    for model, shape in shapes(df, steps).items():
        print(f"[calibrate] {model}: {shape}", flush=True)
        got = calibrate_model(model, shape, examples_of(shape["benchmark"]), device, dtype)
        record["sizes"][size_key(model)] = got
        print(f"[calibrate] {model}: {json.dumps(got['speed'])}", flush=True)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(record, indent=1, default=str))
    return record


def load_calibration(path: str | Path, tp: Throughput | None = None) -> Throughput:
    """The `Throughput` of a saved calibration: its measured fields replace the assumptions, size by size."""
    record = json.loads(Path(path).read_text())
    tp = tp or Throughput()
    where = f"measured on {record['device']} ({record['created']}){'; ' + record['note'] if record.get('note') else ''}"
    for size, got in record["sizes"].items():
        unknown = set(got["speed"]) - set(HF_FIELDS + VLLM_FIELDS)
        if unknown:
            raise ValueError(f"{path}: size {size}: unknown speed fields {sorted(unknown)}")
        tp = replace_speed(tp, size, where, **got["speed"])
    return tp


def replaced(tp: Throughput) -> list[str]:
    """'size: field assumed -> measured' lines for what a calibration replaced."""
    from .cost import ASSUMED

    lines = []
    for size, fields in tp.measured.items():
        base = ASSUMED.get(size) or ASSUMED[FALLBACK]
        now = tp.speeds[size]
        lines += [f"  {size}: {f} {getattr(base, f):g} (assumed) -> {getattr(now, f):.4g} (measured)" for f in fields]
    return lines
