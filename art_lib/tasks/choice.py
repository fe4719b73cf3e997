"""Multiple-choice benchmarks (GPQA): the loader, the `Answer: <letter>` format, letter parsing and scoring.

`register()` adds `gpqa` to `art_lib.registry`.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

from ..data import Example, build_examples, finalize, hub_load, hub_rows, looks_local, read_csv
from ..registry import Benchmark, register_benchmark
from ..rewards import answer_line
from .toolmind_split import hash_fraction

__all__ = [
    "CHOICE_SUFFIX",
    "GPQA_SPLITS",
    "GPQA_TEST_FRACTION",
    "load_gpqa",
    "gpqa_side",
    "extract_choice",
    "score_choice",
    "register",
]

#: Answer-format instruction appended to multiple-choice questions.
CHOICE_SUFFIX = "End your response with: Answer: <letter>"
GPQA_URL = "https://huggingface.co/datasets/Idavidrein/gpqa (gated: accept the terms, then download gpqa_diamond.csv)"

_LETTERS = "ABCD"
#: The CSV columns of the four options, the correct one first.
GPQA_OPTIONS = ("Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3")
#: GPQA ships one split; `load_gpqa` holds out the examples whose id hashes below GPQA_TEST_FRACTION.
GPQA_SPLITS = ("train", "test")
GPQA_TEST_FRACTION = 0.25


def load_gpqa(
    source: str | os.PathLike = "Idavidrein/gpqa",
    split: str = "train",
    limit: int | None = None,
    seed: int | None = None,
    subset: str = "gpqa_diamond",
    option_seed: int = 0,
) -> list[Example]:
    """GPQA from a user-supplied CSV (it is gated) or the hub (`Idavidrein/gpqa`, `subset`).

    Columns used: `Question`, `Correct Answer`, `Incorrect Answer 1..3`
    (and `Record ID` for the id when present). The four options are shuffled
    into A-D with `random.Random(f"{option_seed}:{id}")`: fixed per example,
    independent of row order. `answer` is the correct letter. GPQA ships one split (the hub's
    `train`), so every row is read and `split` keeps one side of a held-out draw (`gpqa_side`):
    "test" about GPQA_TEST_FRACTION of the examples, "train" the rest; `limit` and `seed` apply
    after the split. A blank question or option, two equal options or a repeated `Record ID`
    (in either split) is a DataError naming file, line and field.
    """
    if split not in GPQA_SPLITS:
        raise ValueError(f"GPQA split must be one of {GPQA_SPLITS}, got {split!r}")
    guidance = f"download the CSV from {GPQA_URL} and pass source=<path to gpqa_diamond.csv>."
    fields = {k: str for k in ("Question", *GPQA_OPTIONS)}
    if looks_local(source):
        file = Path(source).expanduser()
        if file.is_dir():
            file = file / f"{subset}.csv"
        if not file.is_file():
            raise FileNotFoundError(f"GPQA CSV not found at {file}: {guidance}")
        rows = read_csv(file, fields=fields)
    else:
        file = f"{source} ({subset}, train)"
        rows = hub_rows(hub_load(str(source), subset, split="train", guidance=guidance), file, fields)
    examples = build_examples(rows, lambda i, row: _gpqa_example(i, row, option_seed), file)
    kept = [ex for ex in examples if gpqa_side(ex["id"]) == split]
    return finalize(kept, limit, seed, f"{file} split {split!r}")


def gpqa_side(example_id: str) -> str:
    """An example's side: "test" if its id hashes (salt "gpqa-test") below GPQA_TEST_FRACTION, else "train".

    A side depends on the id alone: not on row order nor on which other rows the file holds.
    A CSV without `Record ID` gives ids by row position (`gpqa-0007`), so there the side follows the position.
    """
    return "test" if hash_fraction(example_id.encode(), "gpqa-test") < GPQA_TEST_FRACTION else "train"


def _gpqa_example(i: int, row: dict, option_seed: int) -> Example:
    """One GPQA row as an example; a blank question or option, or two equal options, is a DataError."""
    question = row.text("Question")
    options: list[str] = []
    for key in GPQA_OPTIONS:
        option = row.text(key)
        if option in options:
            same = GPQA_OPTIONS[options.index(option)]
            raise row.bad(key, f"repeats {same!r} ({option[:80]!r}): the four options must differ")
        options.append(option)
    rid = str(row.get("Record ID") or "").strip() or f"gpqa-{i:04d}"
    order = list(range(4))
    random.Random(f"{option_seed}:{rid}").shuffle(order)
    shuffled = [options[k] for k in order]
    lines = "\n".join(f"{_LETTERS[k]}) {opt}" for k, opt in enumerate(shuffled))
    return {
        "id": rid,
        "prompt": f"{question}\n\n{lines}\n{CHOICE_SUFFIX}",
        "answer": _LETTERS[order.index(0)],
        "meta": {"question": question, "choices": shuffled, "correct": options[0]},
    }


_CHOICE = re.compile(r"[ \t*_`$(\[{]*+(?:\\boxed\s*+\{|\\text\s*+\{)?+[ \t*_`(\[{]*+([A-D])(?![A-Za-z0-9])")


def extract_choice(text: Any, letters: str = "ABCD") -> str | None:
    """The letter (A-D, upper case) right after the last `Answer:`, or None."""
    line = answer_line(text)
    m = _CHOICE.match(line) if line is not None else None
    return m.group(1) if m and m.group(1) in letters else None


def score_choice(completion: Any, letter: Any) -> float:
    """1.0 if the last `Answer: X` names the gold letter, else 0.0; a gold that is no letter A-D raises."""
    gold = str(letter).strip().upper()
    if len(gold) != 1 or gold not in _LETTERS:
        raise ValueError(f"the gold answer {letter!r} is not one of the letters {_LETTERS}")
    return 1.0 if extract_choice(completion) == gold else 0.0


def choice_parse(completion: Any, example: dict) -> str | None:
    """What `choice_score` compares with the gold: the letter after the last `Answer:`."""
    return extract_choice(completion)


def choice_score(completion: Any, example: dict) -> float:
    """`score_choice` of a completion against `example["answer"]`."""
    return score_choice(completion, example["answer"])


def register() -> None:
    """Register `gpqa` (512 new tokens, as the authors' evaluation)."""
    register_benchmark(
        Benchmark(
            "gpqa",
            load_gpqa,
            choice_score,
            choice_parse,
            max_new_tokens=512,
            data=("gpqa", f"gpqa_diamond.csv from {GPQA_URL}"),
        ),
        replace=True,
    )
