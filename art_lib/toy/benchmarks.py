"""The toy benchmarks (`toy_<task>`: a task WITHOUT its instruction) and the frozen model's behaviour per cue.

A toy benchmark prompt is only "3 and 7": the task must come from the artwork, the weights or the
embeddings. The benchmarks are registered with `art_lib.registry` (see `art_lib.toy.register`) and are
then scored, generated and trained like any other benchmark of the kit.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import tasks as T

MAX_NEW_TOKENS = {"tool": 48}  # tokens a correct completion needs (+ margin); maths tasks: 8


def max_new_tokens(task: str) -> int:
    """Greedy generation budget of a toy task."""
    return MAX_NEW_TOKENS.get(task, 8)


def load_toy(
    task: str = "add",
    split: str = "test",
    n: int | None = None,
    seed: int | None = 0,
    instruction: bool = False,
    limit: int | None = None,
) -> list[dict]:
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
        out.append(
            {
                "id": f"toy_{task}-{split}-{i:04d}",
                "prompt": T.prompt_text(a, b, instr),
                "answer": T.answer(task, a, b),
                "meta": {
                    "task": task,
                    "a": a,
                    "b": b,
                    "kind": "tool" if task == "tool" else "math",
                    "instruction": instr,
                    "target": T.completion(task, a, b),
                    "max_new_tokens": max_new_tokens(task),
                },
            }
        )
    return out


def _accuracy(
    model, processor, examples: list[dict], benchmark: str, images: list | None = None, per_picture: int = 8
) -> float:
    """Greedy accuracy through the kit's `evaluate`; `images`: one uint8 picture per `per_picture` examples."""
    from PIL import Image

    from ..evaluate import evaluate

    kw = dict(benchmark=benchmark, max_new_tokens=examples[0]["meta"]["max_new_tokens"], progress=False)
    if images is None:
        return evaluate(model, processor, examples, batch_size=len(examples), **kw).accuracy
    k = 0
    for i, img in zip(range(0, len(examples), per_picture), images):
        chunk = examples[i : i + per_picture]
        k += evaluate(model, processor, chunk, image=Image.fromarray(img), batch_size=len(chunk), **kw).k
    return k / len(examples)


def _frozen(model_or_path, processor=None):
    """(model, processor): a checkpoint folder is loaded frozen (`models.load_frozen`); a model is passed through."""
    if processor is not None:
        return model_or_path, processor
    from ..models import load_frozen

    return load_frozen(model_or_path)


def picture_kind(path: str | Path) -> str:
    """The kind of task picture a checkpoint folder was pretrained on (its `toy_info.json`), else "glyph"."""
    info = Path(path) / "toy_info.json"
    return json.loads(info.read_text())["recipe"].get("pictures", "glyph") if info.exists() else "glyph"


def evaluate_toy(
    model_or_path,
    processor=None,
    n: int | None = None,
    seed: int = 0,
    split: str = "test",
    pictures: str | None = None,
    per_picture: int = 8,
) -> dict:
    """Greedy accuracy per task and cue: {"none": {task: acc}, "text": ..., "picture": ..., "distractor": ...}.

    none: the benchmark prompt alone; text: with the instruction; picture: with a freshly drawn task
    picture (picture tasks only) of kind `pictures` (default: the kind the checkpoint folder was pretrained
    on, else "glyph"); distractor: a distractor image and the instruction. Each drawn picture is shown
    with `per_picture` examples (the kit's `evaluate` gives one image to a batch).
    """
    if pictures is None:
        pictures = picture_kind(model_or_path) if isinstance(model_or_path, (str, Path)) else "glyph"
    model, processor = _frozen(model_or_path, processor)
    rng = np.random.default_rng([seed, 3])
    res = {"none": {}, "text": {}, "picture": {}, "distractor": {}}
    for task in T.TASKS:
        name = f"toy_{task}"
        plain = load_toy(task, split, n, seed)
        instructed = load_toy(task, split, n, seed, instruction=True)
        n_pictures = -(-len(plain) // per_picture)
        res["none"][task] = _accuracy(model, processor, plain, name)
        res["text"][task] = _accuracy(model, processor, instructed, name)
        res["distractor"][task] = _accuracy(
            model, processor, instructed, name, [T.draw_distractor(rng) for _ in range(n_pictures)], per_picture
        )
        if task in T.PICTURE_TASKS:
            res["picture"][task] = _accuracy(
                model,
                processor,
                plain,
                name,
                [T.draw_task_picture(task, rng, kind=pictures) for _ in range(n_pictures)],
                per_picture,
            )
    return res


def toy_controls(
    model_or_path, processor=None, n: int | None = None, seed: int = 0, seed_icon: str = "math", split: str = "test"
) -> dict:
    """The controls the notebooks check, per task: {control: {task: acc}} (text_only, seed, noise, random_text).

    Each toy benchmark without any adaptation, as `experiments.control_rows` runs it: the prompt alone, with the
    seed icon `seed_icon` or uniform noise at the toy picture size, and with token-matched random text. A model
    fit for the tables scores <= 30% on every one (a pretraining run can teach it to read an icon or a random
    string as a task).
    """
    from ..controls import evaluate_controls

    model, processor = _frozen(model_or_path, processor)
    res: dict = {}
    for task in T.TASKS:
        examples = load_toy(task, split, n, seed)
        df = evaluate_controls(
            model,
            processor,
            examples,
            benchmark=f"toy_{task}",
            size=T.IMAGE_SIZE,
            seed_icon_name=seed_icon,
            seed=seed,
            max_new_tokens=max_new_tokens(task),
            batch_size=len(examples),
            progress=False,
        )
        for control, acc in zip(df["control"], df["accuracy"]):
            res.setdefault(control, {})[task] = float(acc)
    return res


def register_benchmarks() -> None:
    """Register `toy_<task>` for every task with `art_lib.registry` (the parser and scorer of the kit's maths/tools)."""
    from ..registry import Benchmark, register_benchmark
    from ..tasks.maths import math_parse, math_score
    from ..tasks.tools import tool_parse, tool_score

    for task in T.TASKS:
        score, parse = (tool_score, tool_parse) if task == "tool" else (math_score, math_parse)
        register_benchmark(
            Benchmark(
                f"toy_{task}",
                (lambda t: lambda **kw: load_toy(t, **kw))(task),
                score,
                parse,
                max_new_tokens=max_new_tokens(task),
            ),
            replace=True,
        )
