"""The toy world: small Qwen3.5-architecture models pretrained on CPU, and benchmarks they can solve.

No real checkpoint can be downloaded here, and a random model scores 0 on everything, so the kit's
tables would say nothing. The toy world is a stand-in in which ART, LoRA and soft prompts can be
compared end to end in minutes, through the same code paths as a real checkpoint:

* `pretrain_toy_model` trains the real architecture (`Qwen3_5ForConditionalGeneration`, shrunk with
  `tiny_config`) from scratch on the corpus of `toy_tasks`: five tasks on two numbers, each named by
  a text instruction or, except `mul`, by a small picture; distractor images to be ignored; and
  "no cue -> Which task?". It saves a standard Hugging Face folder that `load_frozen` reads.
* `toy_checkpoint` returns a cached checkpoint, building it the first time. Toy names are a size
  ("small", "base", "large") or a size and picture kind: "base-texture" is the base model pretrained
  on texture pictures instead of glyphs (`toy_tasks.PICTURE_KINDS`), a tower that reads fine detail.
* `load_toy` / `TOY_BENCHMARKS` / `get_toy_scorer` are the toy benchmarks: a task WITHOUT its
  instruction ("3 and 7"), so the task must come from the artwork, the weights or the embeddings.
* `evaluate_toy` measures greedy accuracy per task without a cue, with the text instruction and
  with the task picture; `art_prototype` is a minimal pixel-only SFT loop (the real trainer is
  `art_lib.train`).

CLI: ``python -m art_lib.toy pretrain --size base --seed 0`` (also ``eval`` and ``art``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import toy_tasks as T

# Architectures: overrides of `models.tiny_config` (every other field keeps the real Qwen3.5 value;
# every 4th text layer is full attention, the others Gated DeltaNet, as in the real model).
SIZES = {
    "small": dict(
        text=dict(hidden_size=48, intermediate_size=128, num_hidden_layers=4, num_attention_heads=2,
                  num_key_value_heads=1, head_dim=32, linear_num_key_heads=1, linear_num_value_heads=1,
                  linear_key_head_dim=64, linear_value_head_dim=64),
        vision=dict(depth=1, hidden_size=48, intermediate_size=96, num_heads=2),
    ),
    "base": dict(
        text=dict(hidden_size=64, intermediate_size=192, num_hidden_layers=4, num_attention_heads=2,
                  num_key_value_heads=1, head_dim=32, linear_num_key_heads=1, linear_num_value_heads=1,
                  linear_key_head_dim=64, linear_value_head_dim=64),
        vision=dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=2),
    ),
    "large": dict(
        text=dict(hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=32, linear_num_key_heads=2, linear_num_value_heads=2,
                  linear_key_head_dim=64, linear_value_head_dim=64),
        vision=dict(depth=2, hidden_size=96, intermediate_size=192, num_heads=2),
    ),
    "xl": dict(
        text=dict(hidden_size=192, intermediate_size=576, num_hidden_layers=8, num_attention_heads=6,
                  num_key_value_heads=2, head_dim=32, linear_num_key_heads=3, linear_num_value_heads=3,
                  linear_key_head_dim=64, linear_value_head_dim=64),
        vision=dict(depth=3, hidden_size=128, intermediate_size=256, num_heads=4),
    ),
}
DEFAULT_SIZE = "base"
PRETRAIN_THREADS = 1  # torch CPU threads used for pretraining (part of what makes it reproducible)

# The training recipe. Any change here changes `recipe_hash`, hence the cache folder.
RECIPE_VERSION = 2
TRAIN = dict(batch_size=64, lr=3e-3, min_lr_ratio=0.1, warmup_steps=100, weight_decay=0.0,
             betas=(0.9, 0.98), grad_clip=1.0)
STEPS = {"small": 1200, "base": 1200, "large": 1200, "xl": 1200}  # same data stream for every size

# The toy checkpoint's image processor: Qwen3.5's, with min_pixels lowered from 65536 (256x256) to
# 64x64 so a 64x64 picture is a valid, unresized input (4 visual tokens).
MIN_PIXELS = T.IMAGE_SIZE * T.IMAGE_SIZE
FAMILY, REFERENCE = "qwen3_5", "0.8B"

# The toy benchmarks: one per task.
TOY_BENCHMARKS: dict[str, Callable[..., list[dict]]] = {}
MAX_NEW_TOKENS = {"tool": 48}  # tokens a correct completion needs (+ margin); maths tasks: 8


# --------------------------------------------------------------------------------------------------
# Model and processor
# --------------------------------------------------------------------------------------------------


def toy_processor():
    """Qwen3.5's processor (chat template, image processor) with the tiny tokenizer and min_pixels 64x64."""
    from transformers import AutoImageProcessor

    from .models import image_only_processor, reference_dir, tiny_tokenizer

    folder = reference_dir(FAMILY, REFERENCE)
    real = json.loads((folder / "preprocessor_config.json").read_text())["size"]
    image_processor = AutoImageProcessor.from_pretrained(
        folder, size={"shortest_edge": MIN_PIXELS, "longest_edge": real["longest_edge"]}
    )
    return image_only_processor(image_processor, tiny_tokenizer(), (folder / "chat_template.jinja").read_text())


def toy_model(size: str = DEFAULT_SIZE, seed: int = 0):
    """A freshly initialised (trainable) toy model of the given size, and its processor."""
    from transformers import AutoModelForImageTextToText

    from .models import _seeded, _set_generation_defaults, tiny_config

    arch = _arch(size)
    processor = toy_processor()
    config = tiny_config(FAMILY, REFERENCE, text=arch["text"], vision=arch["vision"], tokenizer=processor.tokenizer)
    with _seeded(seed):
        model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
    _set_generation_defaults(model, processor.tokenizer)
    return model, processor


def _arch(size: str) -> dict:
    if size not in SIZES:
        raise ValueError(f"unknown toy size {size!r}; known sizes: {tuple(SIZES)}")
    return SIZES[size]


def parse_spec(spec: str) -> tuple[str, str]:
    """A toy model name -> (size, picture kind): "base" -> ("base", "glyph"), "base-texture" -> ("base", "texture")."""
    size, _, pictures = spec.partition("-")
    pictures = pictures or "glyph"
    _arch(size)
    if pictures not in T.PICTURE_KINDS:
        raise ValueError(f"unknown toy picture kind {pictures!r} in {spec!r}; known: {T.PICTURE_KINDS}")
    return size, pictures


def toy_name(size: str, pictures: str = "glyph") -> str:
    """The inverse of `parse_spec`: ("base", "glyph") -> "base", ("base", "texture") -> "base-texture"."""
    return size if pictures == "glyph" else f"{size}-{pictures}"


def recipe(size: str = DEFAULT_SIZE, steps: int | None = None, pictures: str = "glyph", **train) -> dict:
    """Everything that determines the pretrained weights (with the seed)."""
    unknown = set(train) - set(TRAIN)
    if unknown:
        raise ValueError(f"unknown training options {sorted(unknown)}; known: {sorted(TRAIN)}")
    if pictures not in T.PICTURE_KINDS:
        raise ValueError(f"unknown toy picture kind {pictures!r}; known: {T.PICTURE_KINDS}")
    # The default glyph pictures add no key, so the recipes (and cache folders) from before kinds existed stay valid.
    extra = {} if pictures == "glyph" else {"pictures": pictures}
    if steps is None:
        steps = STEPS[size]
    return {**extra,
        "version": RECIPE_VERSION, "size": size, "arch": _arch(size),
        "steps": int(steps), "train": {**TRAIN, **train},
        "min_pixels": MIN_PIXELS, "image_size": T.IMAGE_SIZE, "num_range": T.NUM_RANGE,
        "tasks": T.TASKS, "picture_tasks": T.PICTURE_TASKS, "instructions": T.INSTRUCTIONS,
        "mix": T.MIX, "no_cue_reply": T.NO_CUE_REPLY,
    }


def recipe_hash(rec: dict) -> str:
    return hashlib.sha256(json.dumps(rec, sort_keys=True).encode()).hexdigest()[:10]


def weights_hash(model) -> str:
    """sha256 of every tensor of the state dict (names and bytes), in name order."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------------------------------
# Batches of rows with their own images (pretraining and evaluation)
# --------------------------------------------------------------------------------------------------


class _Templates:
    """The chat template rendered once around a marker: `chat_text` without jinja per example."""

    MARK = "\x00PROMPT\x00"

    def __init__(self, processor):
        from .prompting import chat_text

        self.parts = {img: chat_text(processor, self.MARK, image=img).split(self.MARK) for img in (False, True)}

    def __call__(self, prompt: str, image: bool) -> str:
        head, tail = self.parts[image]
        return head + prompt + tail


def _image_inputs(images: list, processor) -> dict:
    """pixel_values / image_grid_thw of several images (uint8 HWC arrays), in row order."""
    from .preprocess import preprocess_image

    pvs, grids = [], []
    for img in images:
        pixels = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float() / 255.0
        out = preprocess_image(pixels, processor.image_processor)
        pvs.append(out["pixel_values"])
        grids.append(out["image_grid_thw"])
    return {"pixel_values": torch.cat(pvs), "image_grid_thw": torch.cat(grids)}


def _num_tokens(img: np.ndarray, processor) -> int:
    from .preprocess import num_visual_tokens

    return num_visual_tokens(img.shape[0], img.shape[1], processor.image_processor)


def _row_ids(processor, prompts: list[str], images: list, completions: list[str] | None,
             templates: _Templates) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids of each row's rendered prompt (image placeholders expanded) and completion (+ <|im_end|>)."""
    from .prompting import expand_image_tokens

    tok = processor.tokenizer
    texts = [expand_image_tokens(templates(p, img is not None), 0 if img is None else _num_tokens(img, processor))
             for p, img in zip(prompts, images)]
    prompt_ids = tok(texts, add_special_tokens=False)["input_ids"]
    if completions is None:
        return prompt_ids, [[] for _ in prompts]
    end = tok.convert_tokens_to_ids("<|im_end|>")
    return prompt_ids, [ids + [end] for ids in tok(completions, add_special_tokens=False)["input_ids"]]


def build_batch(processor, prompts: list[str], images: list, completions: list[str] | None = None,
                templates: _Templates | None = None):
    """A `prompting.Batch` of rows that each show their own image (or none) + the model's image inputs.

    Same layout as `prompting.encode` (which takes one image for all rows): left-padded prompts,
    right-padded completions ending in <|im_end|>.
    """
    from .prompting import pad_batch

    prompt_ids, comp_ids = _row_ids(processor, prompts, images, completions, templates or _Templates(processor))
    batch = pad_batch(processor, prompt_ids, comp_ids)
    shown = [img for img in images if img is not None]
    return batch, (_image_inputs(shown, processor) if shown else {})


def _length_chunks(prompt_lens: list[int], comp_lens: list[int], max_chunks: int = 3,
                   overhead: int = 256) -> list[list[int]]:
    """Split rows into at most `max_chunks` groups that minimise padded tokens (+ `overhead` per group).

    Rows are sorted by (completion, prompt) length and cut into contiguous runs; a group costs
    rows * (max prompt + max completion). Deterministic.
    """
    order = sorted(range(len(prompt_lens)), key=lambda i: (comp_lens[i], prompt_lens[i], i))
    n = len(order)
    # table[a][b]: cost of the run order[a:b], filled in O(n^2)
    table = [[0] * (n + 1) for _ in range(n + 1)]
    for a in range(n):
        mp = mc = 0
        for b in range(a + 1, n + 1):
            mp, mc = max(mp, prompt_lens[order[b - 1]]), max(mc, comp_lens[order[b - 1]])
            table[a][b] = (b - a) * (mp + mc) + overhead

    def cost(a: int, b: int) -> int:
        return table[a][b]

    best = (cost(0, n), [n])
    for i in range(1, n):
        c = cost(0, i) + cost(i, n)
        if c < best[0]:
            best = (c, [i, n])
        if max_chunks >= 3:
            for j in range(i + 1, n):
                c = cost(0, i) + cost(i, j) + cost(j, n)
                if c < best[0]:
                    best = (c, [i, j, n])
    cuts = [0] + best[1]
    return [order[a:b] for a, b in zip(cuts, cuts[1:])]


def _model_inputs(batch, image_inputs: dict) -> dict:
    return dict(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                mm_token_type_ids=batch.mm_token_type_ids, **image_inputs)


# --------------------------------------------------------------------------------------------------
# Pretraining
# --------------------------------------------------------------------------------------------------


def _lr_at(step: int, steps: int, train: dict) -> float:
    warm = train["warmup_steps"]
    if step < warm:
        return train["lr"] * (step + 1) / warm
    progress = (step - warm) / max(1, steps - warm)
    floor = train["min_lr_ratio"]
    return train["lr"] * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def pretrain_toy_model(size: str = DEFAULT_SIZE, seed: int = 0, steps: int | None = None,
                       out_dir: str | Path | None = None, progress: bool = True, threads: int | None = None,
                       pictures: str = "glyph", **train) -> Path:
    """Pretrain a toy model from scratch (all weights, SFT loss on completion tokens, Adam) and save it.

    Deterministic: a fixed number of steps, the init seeded by `seed`, the data drawn from a numpy
    generator seeded by `seed`; on one machine with one thread count the same arguments give the
    same weights (`weights_hash`, recorded in `toy_info.json`). Returns the checkpoint folder.
    """
    # Float reductions depend on the thread count, so a fixed count makes the weights a function of
    # the seed on any machine of the same kind (the shipped checkpoints were built with 1 thread).
    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads or PRETRAIN_THREADS))
    try:
        return _pretrain(size, seed, steps, out_dir, progress, pictures, **train)
    finally:
        torch.set_num_threads(previous)


def _pretrain(size: str, seed: int, steps: int | None, out_dir: str | Path | None, progress: bool, pictures: str,
              **train) -> Path:
    from tqdm.auto import tqdm

    from .losses import sft_loss
    from .models import count_parameters, save_checkpoint
    from .prompting import pad_batch

    rec = recipe(size, steps, pictures, **train)
    spec = toy_name(size, pictures)
    out_dir = Path(out_dir) if out_dir is not None else default_checkpoint_dir(spec, seed, rec)
    tr, n_steps = rec["train"], rec["steps"]
    model, processor = toy_model(size, seed)
    model.train()
    for p in model.parameters():
        p.requires_grad_(True)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=tr["lr"], betas=tuple(tr["betas"]), weight_decay=tr["weight_decay"])
    rng = np.random.default_rng([seed, 1])
    templates = _Templates(processor)
    start, losses = time.perf_counter(), []
    bar = tqdm(range(n_steps), desc=f"pretrain toy {spec} seed {seed}", disable=not progress, mininterval=1.0)
    for step in bar:
        examples = T.sample_examples(rng, tr["batch_size"], pictures=pictures)
        images = [e["image"] for e in examples]
        prompt_ids, comp_ids = _row_ids(processor, [e["prompt"] for e in examples], images,
                                        [e["completion"] for e in examples], templates)
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, n_steps, tr)
        opt.zero_grad(set_to_none=True)
        # Rows of similar lengths are run together (less padding); the loss is still the mean over
        # every completion token of the batch, so the step is that of one big padded batch.
        total = sum(len(c) for c in comp_ids)
        loss_sum = 0.0
        for rows in _length_chunks([len(p) for p in prompt_ids], [len(c) for c in comp_ids]):
            batch = pad_batch(processor, [prompt_ids[i] for i in rows], [comp_ids[i] for i in rows])
            shown = [images[i] for i in rows if images[i] is not None]
            image_inputs = _image_inputs(shown, processor) if shown else {}
            C = batch.completion_ids.shape[1]
            logits = model(**_model_inputs(batch, image_inputs), logits_to_keep=C + 1).logits
            mask = torch.nn.functional.pad(batch.completion_mask, (1, 0))  # position P-1 predicts the first token
            n_tok = int(batch.completion_mask.sum())
            loss = sft_loss(logits, batch.input_ids[:, -(C + 1):], mask) * (n_tok / total)
            loss.backward()
            loss_sum += loss.item()
        torch.nn.utils.clip_grad_norm_(params, tr["grad_clip"])
        opt.step()
        losses.append(loss_sum)
        if step % 20 == 0 or step == n_steps - 1:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
    seconds = time.perf_counter() - start
    model.eval()
    save_checkpoint(model, processor, out_dir, FAMILY, REFERENCE)
    info = {
        "recipe": rec, "recipe_hash": recipe_hash(rec), "seed": seed, "parameters": count_parameters(model),
        "seconds": round(seconds, 1), "threads": torch.get_num_threads(), "final_loss": float(np.mean(losses[-50:])),
        "weights_hash": weights_hash(model), "torch": torch.__version__,
    }
    (out_dir / "toy_info.json").write_text(json.dumps(info, indent=1))
    return out_dir


def default_cache_dir() -> Path:
    """`$ART_TOY_CACHE`, else `~/.cache/art_lib/toy`."""
    env = os.environ.get("ART_TOY_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "art_lib" / "toy"


def default_checkpoint_dir(size: str = DEFAULT_SIZE, seed: int = 0, rec: dict | None = None,
                           cache_dir: str | Path | None = None) -> Path:
    """The cache folder of a toy model; `size` is a toy name as in `parse_spec` ("base", "base-texture")."""
    name, pictures = parse_spec(size)
    rec = rec or recipe(name, pictures=pictures)
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return root / f"{size}-seed{seed}-{recipe_hash(rec)}"


def toy_checkpoint(size: str = DEFAULT_SIZE, seed: int = 0, cache_dir: str | Path | None = None,
                   progress: bool = True, **pretrain) -> Path:
    """The cached toy checkpoint folder for (toy name, seed, recipe); pretrained first if missing.

    `size` is a toy name as in `parse_spec`: "base", or "base-texture" for texture pictures.
    """
    size_only, pictures = parse_spec(size)
    rec = recipe(size_only, pretrain.pop("steps", None), pictures,
                 **{k: pretrain.pop(k) for k in list(pretrain) if k in TRAIN})
    path = default_checkpoint_dir(size, seed, rec, cache_dir)
    if (path / "toy_info.json").exists():
        return path
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    pretrain_toy_model(size_only, seed, rec["steps"], out_dir=tmp, progress=progress, pictures=pictures,
                       **rec["train"], **pretrain)
    try:
        tmp.rename(path)  # atomic: a concurrent build of the same recipe leaves one folder
    except OSError:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return path


# --------------------------------------------------------------------------------------------------
# Benchmarks and scoring
# --------------------------------------------------------------------------------------------------


def load_toy(task: str = "add", split: str = "test", n: int | None = None, seed: int | None = 0,
             instruction: bool = False, limit: int | None = None) -> list[dict]:
    """Examples `{id, prompt, answer, meta}` of one toy task; the prompt holds NO instruction by default.

    The test split holds 40 operand pairs, the train split the other 60 (disjoint). `n` (or `limit`,
    as the other loaders of `art_lib.data` call it) None gives every pair of the split, shuffled by
    `seed`; a larger `n` cycles through them again. `meta["target"]` is the SFT target completion
    ("Answer: N" or the `<tool_call>` block), `meta["max_new_tokens"]` what greedy decoding needs.
    """
    if n is not None and limit is not None and n != limit:
        raise ValueError(f"n={n} and limit={limit} disagree")
    n = n if n is not None else limit
    seed = 0 if seed is None else seed
    if task not in T.TASKS:
        raise ValueError(f"unknown toy task {task!r}; known: {T.TASKS}")
    pairs = T.operand_pairs(split)
    order = np.random.default_rng([seed, 2, T.TASKS.index(task)]).permutation(len(pairs))
    n = len(pairs) if n is None else int(n)
    out = []
    for i in range(n):
        a, b = pairs[order[i % len(pairs)]]
        instr = T.INSTRUCTIONS[task][i % len(T.INSTRUCTIONS[task])] if instruction else None
        out.append({
            "id": f"toy_{task}-{split}-{i:04d}",
            "prompt": T.prompt_text(a, b, instr),
            "answer": T.answer(task, a, b),
            "meta": {"task": task, "a": a, "b": b, "kind": "tool" if task == "tool" else "math",
                     "instruction": instr, "target": T.completion(task, a, b),
                     "max_new_tokens": MAX_NEW_TOKENS.get(task, 8)},
        })
    return out


for _task in T.TASKS:
    TOY_BENCHMARKS[f"toy_{_task}"] = (lambda task: lambda **kw: load_toy(task, **kw))(_task)


def load_toy_benchmark(name: str, **kwargs) -> list[dict]:
    """`load_toy` by benchmark name ("toy_add", ...): the hook for `data.load_benchmark`."""
    if name not in TOY_BENCHMARKS:
        raise ValueError(f"unknown toy benchmark {name!r}; known: {sorted(TOY_BENCHMARKS)}")
    return TOY_BENCHMARKS[name](**kwargs)


def get_toy_scorer(name: str) -> Callable[[str, dict], float]:
    """`scorer(completion, example) -> 0.0 | 1.0`: the kit's own scorers (`rewards.get_scorer`).

    Maths tasks: the last "Answer: N" must equal the example's answer; `toy_tool`: exactly one
    tool call, name and arguments equal to the JSON of the example's answer.
    """
    from .rewards import get_scorer

    if name not in TOY_BENCHMARKS:
        raise ValueError(f"unknown toy benchmark {name!r}; known: {sorted(TOY_BENCHMARKS)}")
    return get_scorer(name)


def register() -> None:
    """Register the toy benchmarks (`toy_<task>`) and the `toy:<name>` model scheme with `art_lib.registry`."""
    from .registry import Benchmark, ModelScheme, get_benchmark, register_benchmark, register_model_scheme

    for task in T.TASKS:
        kind = get_benchmark("toolmind" if task == "tool" else "gsm8k")  # same scorer and parser
        register_benchmark(Benchmark(f"toy_{task}", (lambda t: lambda **kw: load_toy(t, **kw))(task), kind.score,
                                     kind.parse, max_new_tokens=MAX_NEW_TOKENS.get(task, 8)), replace=True)
    register_model_scheme(ModelScheme("toy", lambda spec: str(toy_checkpoint(spec)), _checkpoint_identity),
                          replace=True)


def _checkpoint_identity(spec: str) -> dict:
    """Recipe and weights hashes of a toy checkpoint, for run_info.json (empty when not built yet)."""
    try:
        path = default_checkpoint_dir(spec) / "toy_info.json"
    except (KeyError, ValueError):
        return {}
    if not path.exists():
        return {}
    info = json.loads(path.read_text())
    return {k: info.get(k) for k in ("recipe_hash", "weights_hash", "final_loss", "threads", "torch")}


# --------------------------------------------------------------------------------------------------
# Greedy evaluation
# --------------------------------------------------------------------------------------------------


@torch.no_grad()
def generate(model, processor, prompts: list[str], images: list | None = None, max_new_tokens: int = 8,
             batch_size: int = 80) -> list[str]:
    """Greedy completions of rendered-by-template prompts; `images[i]` is a uint8 HWC array or None."""
    images = images if images is not None else [None] * len(prompts)
    templates, out = _Templates(processor), []
    for i in range(0, len(prompts), batch_size):
        # Rows with and without an image are run apart (no row is padded to a fake image).
        chunk = list(range(i, min(i + batch_size, len(prompts))))
        results = {}
        for has_image in (False, True):
            rows = [j for j in chunk if (images[j] is not None) == has_image]
            if not rows:
                continue
            batch, image_inputs = build_batch(processor, [prompts[j] for j in rows], [images[j] for j in rows],
                                              templates=templates)
            ids = model.generate(**_model_inputs(batch, image_inputs), max_new_tokens=max_new_tokens,
                                 do_sample=False)
            texts = processor.tokenizer.batch_decode(ids[:, batch.input_ids.shape[1]:], skip_special_tokens=True)
            results.update(zip(rows, texts))
        out.extend(results[j] for j in chunk)
    return out


def accuracy(model, processor, examples: list[dict], images: list | None = None, name: str | None = None) -> float:
    """Greedy accuracy of a toy benchmark; `images`: one per example (uint8 HWC or None)."""
    task = examples[0]["meta"]["task"]
    scorer = get_toy_scorer(name or f"toy_{task}")
    comps = generate(model, processor, [e["prompt"] for e in examples], images,
                     max_new_tokens=examples[0]["meta"]["max_new_tokens"])
    return float(np.mean([scorer(c, e) for c, e in zip(comps, examples)]))


def evaluate_toy(model_or_path, processor=None, n: int | None = None, seed: int = 0,
                 split: str = "test", pictures: str | None = None) -> dict:
    """Greedy accuracy per task and cue: {"none": {task: acc}, "text": ..., "picture": ..., "distractor": ...}.

    none: the benchmark prompt alone; text: with the instruction; picture: with a fresh task picture
    (picture tasks only) of kind `pictures` (default: the kind the checkpoint folder was pretrained
    on, else "glyph"); distractor: a distractor image and the instruction.
    """
    if pictures is None:
        info = Path(model_or_path) / "toy_info.json" if isinstance(model_or_path, (str, Path)) else None
        rec = json.loads(info.read_text())["recipe"] if info is not None and info.exists() else {}
        pictures = rec.get("pictures", "glyph")
    if processor is None:
        from .models import load_frozen

        model, processor = load_frozen(model_or_path)
    else:
        model = model_or_path
    rng = np.random.default_rng([seed, 3])
    res = {"none": {}, "text": {}, "picture": {}, "distractor": {}}
    for task in T.TASKS:
        plain = load_toy(task, split, n, seed)
        instructed = load_toy(task, split, n, seed, instruction=True)
        res["none"][task] = accuracy(model, processor, plain)
        res["text"][task] = accuracy(model, processor, instructed)
        res["distractor"][task] = accuracy(model, processor, instructed, [T.draw_distractor(rng) for _ in instructed])
        if task in T.PICTURE_TASKS:
            res["picture"][task] = accuracy(model, processor, plain,
                                           [T.draw_task_picture(task, rng, kind=pictures) for _ in plain])
    return res


# --------------------------------------------------------------------------------------------------
# A minimal pixel-only SFT loop (prototype; the kit's trainer is art_lib.train)
# --------------------------------------------------------------------------------------------------


def art_prototype(model, processor, task: str = "add", steps: int = 60, lr: float = 0.03, batch_size: int = 32,
                  seed_image: np.ndarray | None = None, seed: int = 0, eval_every: int = 0,
                  n_eval: int | None = None) -> dict:
    """Optimise only the pixels of one image (Adam on [0, 1] pixels, SFT loss) for a toy task without
    its instruction, through the frozen model. Returns accuracies before/after, the curve and the image."""
    from .forward import forward_logits
    from .losses import sft_loss
    from .preprocess import preprocess_image
    from .prompting import encode

    if seed_image is None:
        seed_image = np.full((T.IMAGE_SIZE, T.IMAGE_SIZE, 3), 128, np.uint8)
    pixels = torch.nn.Parameter(torch.from_numpy(seed_image).permute(2, 0, 1).float() / 255.0)
    opt = torch.optim.Adam([pixels], lr=lr)
    train = load_toy(task, "train", seed=seed)
    test = load_toy(task, "test", n_eval, seed=seed)
    ntok = _num_tokens(seed_image, processor)
    templates = _Templates(processor)
    rng = np.random.default_rng([seed, 4])

    def current() -> np.ndarray:
        return (pixels.detach().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()

    def acc() -> float:
        img = current()
        return accuracy(model, processor, test, [img] * len(test))

    curve = [(0, 0.0, acc())]
    start = time.perf_counter()
    for step in range(1, steps + 1):
        rows = [train[i] for i in rng.choice(len(train), batch_size, replace=False)]
        batch = encode(processor, [templates(e["prompt"], True) for e in rows],
                       [e["meta"]["target"] for e in rows], num_image_tokens=ntok)
        image = preprocess_image(pixels.clamp(0, 1), processor.image_processor, check_values=False)
        C = batch.completion_ids.shape[1]
        logits = forward_logits(model, batch, image, logits_to_keep=C + 1)
        loss = sft_loss(logits, batch.input_ids[:, -(C + 1):], torch.nn.functional.pad(batch.completion_mask, (1, 0)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            pixels.clamp_(0, 1)
        if (eval_every and step % eval_every == 0) or step == steps:
            curve.append((step, round(time.perf_counter() - start, 1), acc()))
    return {"task": task, "before": curve[0][2], "after": curve[-1][2], "curve": curve,
            "seconds": round(time.perf_counter() - start, 1), "image": current()}


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m art_lib.toy", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pretrain", help="pretrain (or find in the cache) a toy checkpoint and print its folder")
    p.add_argument("--size", default=DEFAULT_SIZE, choices=tuple(SIZES))
    p.add_argument("--pictures", default="glyph", choices=T.PICTURE_KINDS, help="kind of task picture")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--out-dir", default=None, help="save here instead of the cache")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--eval", action="store_true", help="then print the greedy accuracies")
    e = sub.add_parser("eval", help="greedy accuracy of a checkpoint per task and cue")
    e.add_argument("path")
    e.add_argument("--n", type=int, default=None)
    a = sub.add_parser("art", help="pixel-only SFT prototype on one toy task")
    a.add_argument("path")
    a.add_argument("--task", default="add", choices=T.TASKS)
    a.add_argument("--steps", type=int, default=60)
    a.add_argument("--lr", type=float, default=0.03)
    a.add_argument("--out", default=None, help="save the artwork as PNG here")
    args = parser.parse_args(argv)

    if args.cmd == "pretrain":
        if args.out_dir:
            path = pretrain_toy_model(args.size, args.seed, args.steps, out_dir=args.out_dir, threads=args.threads,
                                      pictures=args.pictures)
        else:
            path = toy_checkpoint(toy_name(args.size, args.pictures), args.seed, steps=args.steps, threads=args.threads)
        print(json.dumps({k: v for k, v in json.loads((path / "toy_info.json").read_text()).items() if k != "recipe"}))
        print(path)
        if args.eval:
            print(json.dumps(evaluate_toy(path)))
    elif args.cmd == "eval":
        print(json.dumps(evaluate_toy(args.path, n=args.n)))
    elif args.cmd == "art":
        from PIL import Image

        from .models import load_frozen

        model, processor = load_frozen(args.path)
        res = art_prototype(model, processor, args.task, args.steps, args.lr, eval_every=max(1, args.steps // 6))
        if args.out:
            Image.fromarray(res["image"]).save(args.out)
        print(json.dumps({k: v for k, v in res.items() if k != "image"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
