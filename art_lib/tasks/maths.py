"""Maths benchmarks (GSM8K, SVAMP): loaders, the `Answer: <number>` format, number parsing and scoring.

`extract_answer` reads the value after the last `Answer:` line (strict) or the last number in the
text (lenient fallback); `score_math` compares it numerically with the gold answer; `math_reward` is
the batched training reward (optionally shaped). `register()` adds `gsm8k` and `svamp` to
`art_lib.registry`.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import warnings
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

from ..data import (
    DataError,
    DataWarning,
    Example,
    build_examples,
    finalize,
    hub_load,
    hub_rows,
    looks_local,
    read_jsonl,
)
from ..registry import Benchmark, register_benchmark
from ..rewards import answer_line, strip_thinking

__all__ = [
    "MATH_SUFFIX",
    "load_gsm8k",
    "load_svamp",
    "gsm8k_target",
    "normalize_number",
    "extract_answer",
    "numeric_equal",
    "score_math",
    "math_reward",
    "SHAPED_FORMAT_CREDIT",
    "math_parse",
    "math_score",
    "register",
]

#: Answer-format instruction appended to maths questions (the authors' public
#: evaluation code uses the suffix "End your response with: Answer: <number>").
MATH_SUFFIX = "End your response with: Answer: <number>"
GSM8K_URL = "https://github.com/openai/grade-school-math (grade_school_math/data/{split}.jsonl)"
SVAMP_URL = "https://github.com/arkilpatel/SVAMP (SVAMP.json)"


# --------------------------------------------------------------------------- #
# Numbers
# --------------------------------------------------------------------------- #

_MINUS = "-\u2212\u2013"  # hyphen-minus, unicode minus, en dash
_CURRENCY = "$\u20ac\u00a3\u00a5"  # $ € £ ¥
# Digits with optional thousands commas (`1,080`), optional decimals, or `.5`;
# never followed by more digits/comma-digits (so `1,08` is not read as `1`).
_NUM_CORE = r"(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?![\d]|,\d)"
_NUMBER = re.compile(
    rf"(?P<sign>[{_MINUS}])?\s?(?:[{_CURRENCY}]\s?(?P<sign2>[{_MINUS}])?)?(?P<num>{_NUM_CORE})"
    rf"(?:\s?/\s?(?P<den>\d+(?:\.\d+)?)(?![\d]))?",
    re.ASCII,
)
# Lenient search: a sign only counts when not glued to a preceding word/number ("3-4").
_LENIENT_NUMBER = re.compile(
    rf"(?:(?<![\w)\]])(?P<sign>[{_MINUS}]))?(?:[{_CURRENCY}](?P<sign2>[{_MINUS}])?)?"
    rf"(?<![\d.,])(?P<num>{_NUM_CORE})(?:/(?P<den>\d+)(?![\d]))?",
    re.ASCII,
)


def _to_decimal(x: Any) -> Decimal | None:
    """Parse a number (str/int/float/Decimal) into a finite Decimal, else None."""
    try:
        if x is None or isinstance(x, bool):
            return None
        if isinstance(x, Decimal):
            d = x
        elif isinstance(x, int):
            d = Decimal(x)
        elif isinstance(x, float):
            if not math.isfinite(x):
                return None
            d = Decimal(repr(x))
        else:
            s = str(x).strip()
            if not s or len(s) > 200:
                return None
            s = s.replace("\u2212", "-").replace("\u2013", "-")
            s = s.strip().rstrip(".").strip()
            s = s.strip("*` ")
            if s.endswith("%"):
                s = s[:-1].strip()
            neg = False
            if s[:1] in "-+":
                neg = s[0] == "-"
                s = s[1:].strip()
            s = s.lstrip(_CURRENCY).strip()
            if s[:1] in "-+":
                neg = neg != (s[0] == "-")
                s = s[1:].strip()
            m = re.fullmatch(rf"({_NUM_CORE})(?:\s*/\s*(\d+(?:\.\d+)?))?", s, re.ASCII)
            if not m:
                return None
            d = Decimal(m.group(1).replace(",", ""))
            if m.group(2) is not None:
                den = Decimal(m.group(2))
                if den == 0:
                    return None
                d = d / den
            if neg:
                d = -d
        if not d.is_finite():
            return None
        return d
    except (ValueError, ArithmeticError):  # decimal.InvalidOperation is an ArithmeticError
        return None


def _format_decimal(d: Decimal) -> str:
    if d == d.to_integral_value():
        return str(int(d))
    s = format(d.normalize(), "f")
    return "0" if s in ("-0", "0") else s


def normalize_number(x: Any) -> str | None:
    """Canonical string of a number, or None if `x` is not one.

    Handles thousands commas (`"1,080"`), `$`, `%`, a trailing period,
    negatives (also the unicode minus), decimals (`"8.0"` -> `"8"`,
    `".5"` -> `"0.5"`, `"3.50"` -> `"3.5"`) and simple fractions
    (`"1/2"` -> `"0.5"`). Floats are read through `repr` (no binary noise).
    Only ASCII digits count.
    """
    d = _to_decimal(x)
    return None if d is None else _format_decimal(d)


def _match_to_str(m: re.Match) -> str | None:
    neg = bool(m.group("sign")) != bool(m.group("sign2"))
    num = m.group("num")
    den = m.group("den")
    text = ("-" if neg else "") + num + (f"/{den}" if den else "")
    return normalize_number(text)


# Decorations allowed between "Answer:" and the number in strict mode (same line only).
_STRICT_PREFIX = re.compile(
    r"[ \t*_`]*(?:\\\(|\\\[|\$\$|\$(?=\s*\\))?[ \t]*(?:\\boxed\s*\{|\\text\s*\{|\\mathbf\s*\{)?[ \t*_`]*"
)


def extract_answer(text: Any, strict: bool = True) -> str | None:
    """The normalised numeric answer of a completion, or None.

    strict=True: the number right after the LAST `Answer:` (case-insensitive;
    `**Answer:**`, `**Answer**:`, `Final answer:` all work), on the same
    line, allowing only markup before it (spaces, `**`, `$`, `\\boxed{`);
    anything after the number (units, `.`, `%`, prose) is ignored. A number
    on the next line is NOT read (`"Answer:\\n42"` -> None).

    strict=False (lenient): the strict value if there is one, otherwise the last
    number anywhere in the text.
    """
    line = answer_line(text)
    if line is not None:
        pre = _STRICT_PREFIX.match(line)
        m = _NUMBER.match(line, pre.end() if pre else 0)
        value = _match_to_str(m) if m is not None else None
        if value is not None:
            return value
    if strict:
        return None
    last = None
    for m in _LENIENT_NUMBER.finditer(strip_thinking(text)):
        value = _match_to_str(m)
        if value is not None:
            last = value
    return last


def numeric_equal(a: Any, b: Any, tol: float = 1e-6) -> bool:
    """True if `a` and `b` parse as numbers within `tol`.

    The tolerance is absolute for |values| <= 1 and relative above
    (`|a-b| <= tol * max(1, |a|, |b|)`). Unparseable input -> False.
    """
    x, y = _to_decimal(a), _to_decimal(b)
    if x is None or y is None:
        return False
    return abs(x - y) <= Decimal(str(tol)) * max(Decimal(1), abs(x), abs(y))


def score_math(completion: Any, answer: Any, strict: bool = True) -> float:
    """1.0 if the extracted answer equals the gold `answer` numerically, else 0.0.

    A gold answer that is not a number is the kit's bug (a loader or a caller), not the model's: it
    raises `ValueError` instead of scoring every completion 0.
    """
    if _to_decimal(answer) is None:
        raise ValueError(f"the gold answer {answer!r} is not a number")
    pred = extract_answer(completion, strict=strict)
    return 1.0 if pred is not None and numeric_equal(pred, answer) else 0.0


#: Partial credit of the shaped maths reward for a well-formatted wrong answer.
SHAPED_FORMAT_CREDIT = 0.1


def math_reward(
    completions: Iterable[Any],
    answers: Iterable[Any] | None = None,
    shaped: bool = False,
    strict: bool = True,
    **kwargs: Any,
) -> list[float]:
    """Batched maths reward (TRL reward-function compatible).

    `answers` may also come as the keyword `answer` (TRL passes dataset
    columns as keyword arguments). Unshaped: `score_math` per item.

    `shaped=True` is **our shaped reward (the authors' exact shaping is not
    public)**: 1.0 correct, `SHAPED_FORMAT_CREDIT` (0.1) for a
    well-formatted but wrong strict `Answer: <number>` line, 0.0 otherwise.
    """
    if answers is None:
        answers = kwargs.get("answer", kwargs.get("answers", []))
    completions = list(completions) if completions is not None else []
    answers = list(answers) if answers is not None else []
    if len(answers) != len(completions):
        raise ValueError(f"{len(completions)} completions but {len(answers)} gold answers")
    out: list[float] = []
    for comp, gold in zip(completions, answers):
        score = score_math(comp, gold, strict=strict)
        if shaped and score == 0.0 and extract_answer(comp, strict=True) is not None:
            score = SHAPED_FORMAT_CREDIT
        out.append(score)
    return out


# --------------------------------------------------------------------------- #
# Loaders
# --------------------------------------------------------------------------- #


def _math_prompt(question: str) -> str:
    return f"{question.strip()}\n{MATH_SUFFIX}"


# --------------------------------------------------------------------------- #
# GSM8K
# --------------------------------------------------------------------------- #


def gsm8k_target(solution: str) -> str:
    """GSM8K SFT target: the worked solution without `<<...>>` calculator annotations, then `Answer: N`."""
    steps = re.sub(r"<<[^>]*>>", "", solution.split("####")[0]).strip()
    return f"{steps}\nAnswer: {_gsm8k_final(solution)}" if steps else f"Answer: {_gsm8k_final(solution)}"


def _gsm8k_final(solution: str) -> str:
    """The normalised number after the solution's one `####` marker; anything else is a ValueError."""
    parts = solution.split("####")
    if len(parts) != 2:
        raise ValueError(f"must end with one '#### <number>' line, found {len(parts) - 1} '####' markers")
    final = normalize_number(parts[1].strip().replace(",", ""))
    if final is None:
        raise ValueError(f"must end with '#### <number>', got '#### {parts[1].strip()[:80]}'")
    return final


def _gsm8k_example(i: int, row: dict, split: str) -> Example:
    solution = row["answer"]
    try:
        final, target = _gsm8k_final(solution), gsm8k_target(solution)
    except ValueError as err:
        raise row.bad("answer", str(err)) from None
    question = row.text("question")
    return {
        "id": f"gsm8k-{split}-{i:04d}",
        "prompt": _math_prompt(question),
        "answer": final,
        "meta": {"question": question, "solution": solution, "split": split, "target": target},
    }


def load_gsm8k(
    source: str | os.PathLike = "openai/gsm8k", split: str = "test", limit: int | None = None, seed: int | None = None
) -> list[Example]:
    """GSM8K from the official `train.jsonl`/`test.jsonl` (a file, or a folder
    holding `<split>.jsonl`) or from the hub (`openai/gsm8k`, config `main`).

    `answer` = the number after `####` with commas removed (a solution without exactly one
    `#### <number>` is a DataError naming file, line and field); `meta` keeps the question, the full
    gold `solution` and the SFT `target` (`gsm8k_target`). ids: `gsm8k-<split>-<row index>`.
    """
    guidance = (
        f"download {split}.jsonl from {GSM8K_URL.format(split=split)} and pass "
        f"source=<path to {split}.jsonl or its folder>."
    )
    fields = {"question": str, "answer": str}
    if looks_local(source):
        path = Path(source).expanduser()
        file = path / f"{split}.jsonl" if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(f"GSM8K {split} file not found at {file}: {guidance}")
        rows = read_jsonl(file, fields=fields)
    else:
        file = f"{source} ({split})"
        rows = hub_rows(hub_load(str(source), "main", split=split, guidance=guidance), file, fields)
    examples = build_examples(rows, lambda i, row: _gsm8k_example(i, row, split), file)
    return finalize(examples, limit, seed, file)


# --------------------------------------------------------------------------- #
# SVAMP
# --------------------------------------------------------------------------- #

#: ChilleD/SVAMP's train share: 700 of SVAMP's 1000 rows.
SVAMP_TRAIN_SHARE = 0.7


def _svamp_split_ids(ids_in_file_order: list[str], split_file: Path, data_file: Path) -> dict[str, list[str]]:
    """ChilleD/SVAMP 700/300 split: from `chilled_split_ids.json` when present, otherwise reconstructed
    (shuffle the file-order ids with `random.Random(42)`; train = first 70%, test = the rest: 700/300 for
    the full file -- see that file's description). Split ids missing from `data_file` are a DataError."""
    if not split_file.is_file():
        ids = list(ids_in_file_order)
        if len(ids) != 1000:
            warnings.warn(
                f"{data_file} has {len(ids)} rows, not 1000: its train/test split is drawn like ChilleD's "
                f"(70/30 after random.Random(42).shuffle) but is not ChilleD's split",
                DataWarning,
                stacklevel=3,
            )
        random.Random(42).shuffle(ids)
        n_train = round(len(ids) * SVAMP_TRAIN_SHARE)
        return {"train": ids[:n_train], "test": ids[n_train:]}
    try:
        data = json.loads(split_file.read_text(encoding="utf-8-sig"))
        splits = {"train": list(data["train_ids"]), "test": list(data["test_ids"])}
    except (ValueError, TypeError, KeyError) as err:  # not JSON, not an object, no id lists
        raise DataError(f"{split_file}: expected a JSON object with lists train_ids, test_ids ({err!r})") from None
    known = set(ids_in_file_order)
    unknown = [i for ids in splits.values() for i in ids if i not in known]
    if unknown:
        raise DataError(
            f"{split_file}: split ids {unknown[:5]} ({len(unknown)} in all) are not in {data_file}; "
            f"pass the full SVAMP.json or remove {split_file.name} (the split is then reconstructed)"
        )
    both = set(splits["train"]) & set(splits["test"])
    if both:
        raise DataError(f"{split_file}: {len(both)} ids are in both train_ids and test_ids, first {sorted(both)[:5]}")
    return splits


def _svamp_example(row: dict, split: str) -> Example:
    answer = normalize_number(row["Answer"])
    if answer is None:
        raise row.bad("Answer", f"must be a number, got {row['Answer']!r}")
    question = f"{row.text('Body')} {row.text('Question')}"
    return {
        "id": row.text("ID"),
        "prompt": _math_prompt(question),
        "answer": answer,
        "meta": {"question": question, "equation": row.get("Equation"), "type": row.get("Type"), "split": split},
    }


def load_svamp(
    source: str | os.PathLike = "ChilleD/SVAMP", split: str = "test", limit: int | None = None, seed: int | None = None
) -> list[Example]:
    """SVAMP from the original `SVAMP.json` (file or folder) or the hub (`ChilleD/SVAMP`).

    Locally the common HF 700/300 train/test split is reproduced from
    `chilled_split_ids.json` next to `SVAMP.json` (reconstructed with
    `random.Random(42)` if that file is absent); `split="all"` gives all
    1000 in file order. Train keeps the HF row order; test is the HF set of ids
    (in the split file's order, not HF's row order).
    question = Body + " " + Question; answer = normalised number ("8.0" -> "8"); a non-numeric
    answer or a repeated ID is a DataError naming file, item and field.
    """
    guidance = f"download SVAMP.json from {SVAMP_URL} and pass source=<path to SVAMP.json or its folder>."
    fields = {"ID": str, "Body": str, "Question": str, "Answer": (int, float, str)}
    if not looks_local(source):
        label = f"{source} ({split})"
        rows = hub_rows(hub_load(str(source), split=split, guidance=guidance), label, fields)
        examples = build_examples(rows, lambda i, row: _svamp_example(row, split), label)
        return finalize(examples, limit, seed, label)
    path = Path(source).expanduser()
    file = path / "SVAMP.json" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"SVAMP file not found at {file}: {guidance}")
    if split not in ("train", "test", "all"):
        raise ValueError(f"SVAMP split must be 'train', 'test' or 'all', got {split!r}")
    examples = build_examples(read_jsonl(file, fields=fields), lambda i, row: _svamp_example(row, split), file)
    if split != "all":
        by_id = {ex["id"]: ex for ex in examples}
        ids = _svamp_split_ids(list(by_id), file.parent / "chilled_split_ids.json", file)[split]
        examples = [by_id[i] for i in ids]
    return finalize(examples, limit, seed, f"{file} (split {split!r})")


#: Per benchmark: the sub-folder of a notebook's `data_dir` and what to put there (README "Data").
DATA_FILES = {
    "gsm8k": ("gsm8k", f"train.jsonl and test.jsonl from {GSM8K_URL.format(split='<split>')}"),
    "svamp": ("svamp", f"SVAMP.json (and optionally chilled_split_ids.json) from {SVAMP_URL}"),
}


# --------------------------------------------------------------------------- #
# Registration
# --------------------------------------------------------------------------- #


def math_parse(completion: Any, example: dict) -> str | None:
    """What `math_score` compares with the gold: the strict `Answer:` number, normalised."""
    return extract_answer(completion, strict=True)


def math_score(completion: Any, example: dict) -> float:
    """`score_math` of a completion against `example["answer"]`."""
    return score_math(completion, example["answer"])


def register() -> None:
    """Register `gsm8k` and `svamp` (the authors' evaluation budget: 512 new tokens, greedy, thinking off)."""
    for name, load in (("gsm8k", load_gsm8k), ("svamp", load_svamp)):
        register_benchmark(
            Benchmark(name, load, math_score, math_parse, max_new_tokens=512, data=DATA_FILES[name]), replace=True
        )
