"""Pretraining a toy model from scratch on the toy corpus (deterministic on one CPU type and thread count).

`python -m art_lib.toy pretrain --name base --out-dir DIR` runs it; the shipped checkpoints
(`art_lib/toy/checkpoints/`) were made by exactly this code, and `python -m art_lib.toy verify` checks that
a fresh run here gives the shipped weights bit for bit.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from . import tasks as T
from .recipe import (
    DEFAULT_SIZE,
    FAMILY,
    PRETRAIN_THREADS,
    REFERENCE,
    default_seed,
    recipe,
    recipe_hash,
    toy_model,
    toy_name,
)

# --------------------------------------------------------------------------------------------------
# Batches of rows that each show their own image (or none)
# --------------------------------------------------------------------------------------------------


class _Templates:
    """The chat template rendered once around a marker: `chat_text` without jinja per example."""

    MARK = "\x00PROMPT\x00"

    def __init__(self, processor):
        from ..prompting import chat_text

        self.parts = {img: chat_text(processor, self.MARK, image=img).split(self.MARK) for img in (False, True)}

    def __call__(self, prompt: str, image: bool) -> str:
        head, tail = self.parts[image]
        return head + prompt + tail


def _image_inputs(images: list, processor) -> dict:
    """pixel_values / image_grid_thw of several images (uint8 HWC arrays), in row order."""
    from ..preprocess import preprocess_image

    pvs, grids = [], []
    for img in images:
        pixels = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float() / 255.0
        out = preprocess_image(pixels, processor.image_processor)
        pvs.append(out["pixel_values"])
        grids.append(out["image_grid_thw"])
    return {"pixel_values": torch.cat(pvs), "image_grid_thw": torch.cat(grids)}


def _num_tokens(img: np.ndarray, processor) -> int:
    from ..preprocess import num_visual_tokens

    return num_visual_tokens(img.shape[0], img.shape[1], processor.image_processor)


def _row_ids(
    processor, prompts: list[str], images: list, completions: list[str] | None, templates: _Templates
) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids of each row's rendered prompt (image placeholders expanded) and completion (+ <|im_end|>)."""
    from ..prompting import expand_image_tokens

    tok = processor.tokenizer
    texts = [
        expand_image_tokens(templates(p, img is not None), 0 if img is None else _num_tokens(img, processor))
        for p, img in zip(prompts, images)
    ]
    prompt_ids = tok(texts, add_special_tokens=False)["input_ids"]
    if completions is None:
        return prompt_ids, [[] for _ in prompts]
    end = tok.convert_tokens_to_ids("<|im_end|>")
    return prompt_ids, [ids + [end] for ids in tok(completions, add_special_tokens=False)["input_ids"]]


def _length_chunks(
    prompt_lens: list[int], comp_lens: list[int], max_chunks: int = 3, overhead: int = 256
) -> list[list[int]]:
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
    return dict(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        mm_token_type_ids=batch.mm_token_type_ids,
        **image_inputs,
    )


# --------------------------------------------------------------------------------------------------
# The pretraining loop
# --------------------------------------------------------------------------------------------------


def _lr_at(step: int, steps: int, train: dict) -> float:
    """Linear warm-up, then cosine decay to `min_lr_ratio` of the peak (the kit's `train` schedules have no floor)."""
    warm = train["warmup_steps"]
    if step < warm:
        return train["lr"] * (step + 1) / warm
    progress = (step - warm) / max(1, steps - warm)
    floor = train["min_lr_ratio"]
    return train["lr"] * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def pretrain_toy_model(
    size: str = DEFAULT_SIZE,
    seed: int | None = None,
    steps: int | None = None,
    *,
    out_dir: str | Path,
    progress: bool = True,
    threads: int | None = None,
    pictures: str = "glyph",
    share: dict | None = None,
    **train,
) -> Path:
    """Pretrain a toy model from scratch (all weights, SFT loss on completion tokens, Adam) and save it.

    Deterministic: a fixed number of steps, the init seeded by `seed`, the data drawn from a numpy
    generator seeded by `seed`; on one machine with one thread count the same arguments give the
    same weights (`weights_hash`, recorded in `toy_info.json`). `seed` defaults to the toy name's
    (`recipe.default_seed`). `share`: relative task shares of the
    corpus (default: the size's `recipe.TASK_SHARE`). Returns the checkpoint folder.
    """
    # Float reductions depend on the thread count, so a fixed count makes the weights a function of
    # the seed on any machine of the same kind (the shipped checkpoints were built with 1 thread).
    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads or PRETRAIN_THREADS))
    try:
        if seed is None:
            seed = default_seed(toy_name(size, pictures))
        return _pretrain(size, seed, steps, out_dir, progress, pictures, share, **train)
    finally:
        torch.set_num_threads(previous)


def _pretrain(
    size: str,
    seed: int,
    steps: int | None,
    out_dir: str | Path,
    progress: bool,
    pictures: str,
    share: dict | None,
    **train,
) -> Path:
    from tqdm.auto import tqdm

    from ..forward import selective_log_softmax
    from ..models import count_parameters, save_checkpoint, weights_hash
    from ..prompting import pad_batch
    from ..results import cpu_model

    rec = recipe(size, steps, pictures, share, **train)
    spec = toy_name(size, pictures)
    out_dir = Path(out_dir)
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
        examples = T.sample_examples(rng, tr["batch_size"], pictures=pictures, share=rec.get("task_share"))
        images = [e["image"] for e in examples]
        prompt_ids, comp_ids = _row_ids(
            processor, [e["prompt"] for e in examples], images, [e["completion"] for e in examples], templates
        )
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
            # The trainer's log-probabilities: positions P-1 .. P+C-2 predict the C completion tokens.
            logits = model(**_model_inputs(batch, image_inputs), logits_to_keep=C + 1).logits[:, :-1]  # (B, C, V)
            logps = selective_log_softmax(logits, batch.completion_ids)  # (B, C)
            mask = batch.completion_mask.to(logps.dtype)  # (B, C)
            n_tok = int(batch.completion_mask.sum())
            loss = -(logps * mask).sum() / mask.sum().clamp(min=1.0) * (n_tok / total)
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
        "recipe": rec,
        "recipe_hash": recipe_hash(rec),
        "seed": seed,
        "parameters": count_parameters(model),
        "seconds": round(seconds, 1),
        "threads": torch.get_num_threads(),
        "final_loss": float(np.mean(losses[-50:])),
        "weights_hash": weights_hash(model),
        "torch": torch.__version__,
        "cpu": cpu_model(),
    }
    (out_dir / "toy_info.json").write_text(json.dumps(info, indent=1))
    return out_dir
