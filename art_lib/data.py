"""Benchmark loaders: GSM8K, SVAMP, GPQA, ToolMind and BFCL.

Every loader returns ``list[dict]`` examples::

    {"id": str, "prompt": str, "answer": str, "meta": dict}

* ``prompt`` is the user-turn text (question + fixed answer-format instruction
  for the maths and multiple-choice tasks; the bare last user turn for tool tasks);
* ``answer`` is the gold target as a string: a normalised number (maths), a
  letter (GPQA), or a JSON list ``[{"name": ..., "arguments": {...}}]`` of tool
  calls (``"[]"``: no call expected);
* for tool tasks ``meta["tools"]`` holds JSON-schema tools
  ``{"type": "function", "function": {"name", "description", "parameters"}}``
  to be rendered by the chat template's own tool support, and
  ``meta["messages"]`` the conversation before the prompt (possibly empty).

``source=`` is either a local file/folder path or a Hugging Face dataset id;
the hub (``datasets.load_dataset``) is only used when ``source`` is not an
existing local path and does not look like one. Missing local data, or a hub
load that fails (e.g. offline), raises :class:`FileNotFoundError` saying which
file to download and where to pass it.

Common arguments: ``split``, ``limit`` (keep the first ``limit`` examples) and
``seed``: ``None`` keeps the source order, an int shuffles deterministically
(``random.Random(seed)``) before ``limit``. For ToolMind the seed instead
selects the held-out split (see :func:`load_toolmind`). Same arguments, same
ids, always.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import os
import random
import re
from pathlib import Path
from typing import Any, Callable

from .rewards import normalize_number

__all__ = [
    "MATH_SUFFIX",
    "CHOICE_SUFFIX",
    "BENCHMARKS",
    "BFCL_CATEGORIES",
    "load_gsm8k",
    "load_svamp",
    "load_gpqa",
    "load_toolmind",
    "load_bfcl",
    "load_benchmark",
    "data_kwargs",
    "gsm8k_target",
    "tool_call_target",
    "bfcl_function_to_tool",
    "normalize_tool",
    "bfcl_gold_calls",
]

#: Answer-format instruction appended to maths questions (the authors' public
#: evaluation code uses the suffix "End your response with: Answer: <number>").
MATH_SUFFIX = "End your response with: Answer: <number>"
#: Answer-format instruction appended to multiple-choice questions.
CHOICE_SUFFIX = "End your response with: Answer: <letter>"

BFCL_CATEGORIES = ("simple", "multiple", "parallel", "parallel_multiple", "irrelevance")
#: The built-in benchmarks (`registry.benchmark_names()` lists every registered one, plugins included).
BENCHMARKS = ("gsm8k", "svamp", "gpqa", "toolmind", "bfcl") + tuple(f"bfcl_{c}" for c in BFCL_CATEGORIES)

GSM8K_URL = "https://github.com/openai/grade-school-math (grade_school_math/data/{split}.jsonl)"
SVAMP_URL = "https://github.com/arkilpatel/SVAMP (SVAMP.json)"
GPQA_URL = "https://huggingface.co/datasets/Idavidrein/gpqa (gated: accept the terms, then download gpqa_diamond.csv)"
TOOLMIND_REPO = "Nanbeige/ToolMind"
TOOLMIND_REVISION = "8020ed1c03c367e4eb720ac3828ab4b0b95d8baf"
#: Every ToolMind file at TOOLMIND_REVISION (SCHEMA.md); `load_toolmind(subsets=[<stem>, ...])` picks some.
TOOLMIND_FILES = ("open_datasets/ToolACE-query.jsonl", "open_datasets/APIGen-MT-5k-query.jsonl",
                  "open_datasets/BUTTONInstruct-query.jsonl", "open_datasets/When2Call-query.jsonl",
                  "open_datasets/glaive-function-calling-v2-query.jsonl", "open_datasets/tau-train-query.jsonl",
                  "open_datasets/xlam-function-calling-60k-query.jsonl", "graph_syn_datasets/graphsyn.jsonl")
BFCL_URL = (
    "https://github.com/ShishirPatil/gorilla/tree/main/berkeley-function-call-leaderboard/bfcl_eval/data"
    " (or `pip install bfcl-eval`, which ships them under bfcl_eval/data/)"
)

Example = dict


# --------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------- #


def _looks_local(source: Any) -> bool:
    """True if ``source`` is (or is meant to be) a local path, not a hub id."""
    if isinstance(source, Path):
        return True
    s = str(source)
    if os.path.exists(s):
        return True
    if s.startswith(("/", ".", "~")) or "\\" in s or s.count("/") != 1:
        return True
    if os.path.isdir(s.split("/")[0]):  # "data/gsm8k" next to a local "data/" folder is a path, not a hub id
        return True
    return bool(re.search(r"\.(jsonl?|csv|parquet|txt)$", s, re.IGNORECASE))


def _hub_load(source: str, *args: Any, guidance: str, **kwargs: Any):
    """``datasets.load_dataset`` that turns any failure into a FileNotFoundError with guidance."""
    try:
        import datasets  # lazy: heavy import

        return datasets.load_dataset(source, *args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - offline, gated, missing: all get the same guidance
        raise FileNotFoundError(
            f"Could not load {source!r} from the Hugging Face hub ({type(exc).__name__}: {exc}). "
            f"If you are offline: {guidance}"
        ) from exc


class DataError(ValueError):
    """A data file that cannot be read as the loader expects; the message names file, line and field."""


class MissingFieldError(DataError, KeyError):
    """A row lacks a field the loader needs (a KeyError too, for callers that catch that)."""

    def __str__(self) -> str:  # KeyError would print the message's repr
        return str(self.args[0])


class _Row(dict):
    """A parsed row that knows where it came from, so a missing key names the file and line."""

    where = "?"

    def __missing__(self, key: Any):
        raise MissingFieldError(f"{self.where}: missing field {key!r} (fields present: {sorted(self)})")


def _row(value: Any, where: str, fields: dict[str, type | tuple[type, ...]] | None) -> _Row:
    """Check one parsed row: a JSON object whose `fields` exist with the given types."""
    if not isinstance(value, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(value).__name__}")
    row = _Row(value)
    row.where = where
    for key, kind in (fields or {}).items():
        if not isinstance(row[key], kind):  # a missing key raises MissingFieldError here
            want = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise DataError(f"{where}: field {key!r} must be {want}, got {type(value[key]).__name__} "
                            f"{str(value[key])[:80]!r}")
    return row


def _read_jsonl(path: Path, max_rows: int | None = None,
                fields: dict[str, type | tuple[type, ...]] | None = None) -> list[dict]:
    """Rows of a JSONL file (or a .json array): UTF-8 with or without BOM; errors name file, line and field."""
    path = Path(path)
    if path.suffix == ".json" and _is_json_array(path):
        try:
            with open(path, encoding="utf-8-sig") as f:  # -sig: a leading BOM is dropped, not parsed
                items = json.load(f)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{err.lineno}: invalid JSON ({err.msg}, column {err.colno})") from None
        except UnicodeDecodeError as err:
            raise DataError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); re-save it as UTF-8") from None
        items = items[:max_rows] if max_rows is not None else items
        return [_row(v, f"{path} item {i}", fields) for i, v in enumerate(items)]
    rows: list[dict] = []
    with open(path, "rb") as f:  # bytes, decoded line by line, so an encoding error names its line
        for n, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8-sig" if n == 1 else "utf-8").rstrip("\r\n")
            except UnicodeDecodeError as err:
                raise DataError(f"{path}:{n}: not UTF-8 text ({err.reason} at byte {err.start + 1} of the line); "
                                "re-save the file as UTF-8") from None
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{n}: invalid JSON ({err.msg}, column {err.colno})") from None
            rows.append(_row(value, f"{path}:{n}", fields))
            if max_rows is not None and len(rows) >= max_rows:
                break
    return rows


def _read_csv(path: Path, fields: dict[str, type | tuple[type, ...]] | None = None) -> list[dict]:
    """Rows of a CSV file with a header, checked like `_read_jsonl` (a short row has None fields)."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            return [_row(r, f"{path}:{reader.line_num}", fields) for r in reader]
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err.reason}); re-save the file as UTF-8") from None


def _is_json_array(path: Path) -> bool:
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        while True:
            ch = f.read(1)
            if not ch or not ch.isspace():
                return ch == "["


def _finalize(examples: list[Example], limit: int | None, seed: int | None) -> list[Example]:
    if seed is not None:
        examples = list(examples)
        random.Random(seed).shuffle(examples)
    if limit is not None:
        examples = examples[: max(0, int(limit))]
    return examples


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
    final = solution.split("####")[-1].strip().replace(",", "")
    return normalize_number(final) or final


def load_gsm8k(
    source: str | os.PathLike = "openai/gsm8k",
    split: str = "test",
    limit: int | None = None,
    seed: int | None = None,
) -> list[Example]:
    """GSM8K from the official ``train.jsonl``/``test.jsonl`` (a file, or a folder
    holding ``<split>.jsonl``) or from the hub (``openai/gsm8k``, config ``main``).

    ``answer`` = the number after ``####`` with commas removed; ``meta`` keeps the
    question, the full gold ``solution`` and the SFT ``target`` (:func:`gsm8k_target`).
    ids: ``gsm8k-<split>-<row index>``.
    """
    guidance = (
        f"download {split}.jsonl from {GSM8K_URL.format(split=split)} and pass "
        f"source=<path to {split}.jsonl or its folder>."
    )
    if _looks_local(source):
        path = Path(source).expanduser()
        file = path / f"{split}.jsonl" if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(f"GSM8K {split} file not found at {file}: {guidance}")
        rows = _read_jsonl(file, fields={"question": str, "answer": str})
    else:
        rows = list(_hub_load(str(source), "main", split=split, guidance=guidance))
    examples = []
    for i, row in enumerate(rows):
        solution = row["answer"]
        examples.append(
            {
                "id": f"gsm8k-{split}-{i:04d}",
                "prompt": _math_prompt(row["question"]),
                "answer": _gsm8k_final(solution),
                "meta": {"question": row["question"], "solution": solution, "split": split,
                         "target": gsm8k_target(solution)},
            }
        )
    return _finalize(examples, limit, seed)


# --------------------------------------------------------------------------- #
# SVAMP
# --------------------------------------------------------------------------- #


def _svamp_split_ids(ids_in_file_order: list[str], split_file: Path | None) -> dict[str, list[str]]:
    """ChilleD/SVAMP 700/300 split: from ``chilled_split_ids.json`` when present,
    otherwise reconstructed (shuffle the file-order ids with ``random.Random(42)``;
    train = first 700, test = last 300 -- see that file's description)."""
    if split_file is not None and split_file.is_file():
        with open(split_file, encoding="utf-8-sig") as f:
            data = json.load(f)
        return {"train": list(data["train_ids"]), "test": list(data["test_ids"])}
    ids = list(ids_in_file_order)
    random.Random(42).shuffle(ids)
    return {"train": ids[:700], "test": ids[700:]}


def load_svamp(
    source: str | os.PathLike = "ChilleD/SVAMP",
    split: str = "test",
    limit: int | None = None,
    seed: int | None = None,
) -> list[Example]:
    """SVAMP from the original ``SVAMP.json`` (file or folder) or the hub (``ChilleD/SVAMP``).

    Locally the common HF 700/300 train/test split is reproduced from
    ``chilled_split_ids.json`` next to ``SVAMP.json`` (reconstructed with
    ``random.Random(42)`` if that file is absent); ``split="all"`` gives all
    1000 in file order. Train keeps the HF row order; test is the HF set of ids
    (in the split file's order, not HF's row order).
    question = Body + " " + Question; answer = normalised number ("8.0" -> "8").
    """
    guidance = f"download SVAMP.json from {SVAMP_URL} and pass source=<path to SVAMP.json or its folder>."
    if _looks_local(source):
        path = Path(source).expanduser()
        file = path / "SVAMP.json" if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(f"SVAMP file not found at {file}: {guidance}")
        rows = _read_jsonl(file, fields={"ID": str, "Body": str, "Question": str, "Answer": (int, float, str)})
        if split != "all":
            if split not in ("train", "test"):
                raise ValueError(f"SVAMP split must be 'train', 'test' or 'all', got {split!r}")
            by_id = {r["ID"]: r for r in rows}
            ids = _svamp_split_ids([r["ID"] for r in rows], file.parent / "chilled_split_ids.json")[split]
            rows = [by_id[i] for i in ids]
    else:
        rows = list(_hub_load(str(source), split=split, guidance=guidance))
    examples = []
    for row in rows:
        question = f"{str(row['Body']).strip()} {str(row['Question']).strip()}"
        answer = normalize_number(row["Answer"])
        examples.append(
            {
                "id": str(row["ID"]),
                "prompt": _math_prompt(question),
                "answer": answer if answer is not None else str(row["Answer"]),
                "meta": {
                    "question": question,
                    "equation": row.get("Equation"),
                    "type": row.get("Type"),
                    "split": split,
                },
            }
        )
    return _finalize(examples, limit, seed)


# --------------------------------------------------------------------------- #
# GPQA
# --------------------------------------------------------------------------- #

_LETTERS = "ABCD"


def load_gpqa(
    source: str | os.PathLike = "Idavidrein/gpqa",
    split: str = "train",
    limit: int | None = None,
    seed: int | None = None,
    subset: str = "gpqa_diamond",
    option_seed: int = 0,
) -> list[Example]:
    """GPQA from a user-supplied CSV (it is gated) or the hub (``Idavidrein/gpqa``, ``subset``).

    Columns used: ``Question``, ``Correct Answer``, ``Incorrect Answer 1..3``
    (and ``Record ID`` for the id when present). The four options are shuffled
    into A-D with ``random.Random(f"{option_seed}:{id}")``: fixed per example,
    independent of row order. ``answer`` is the correct letter. ``split`` only
    matters for the hub (GPQA ships a single ``train`` split).
    """
    guidance = f"download the CSV from {GPQA_URL} and pass source=<path to gpqa_diamond.csv>."
    if _looks_local(source):
        file = Path(source).expanduser()
        if file.is_dir():
            file = file / f"{subset}.csv"
        if not file.is_file():
            raise FileNotFoundError(f"GPQA CSV not found at {file}: {guidance}")
        rows = _read_csv(file, fields={k: str for k in ("Question", "Correct Answer", "Incorrect Answer 1",
                                                         "Incorrect Answer 2", "Incorrect Answer 3")})
    else:
        rows = list(_hub_load(str(source), subset, split=split, guidance=guidance))
    examples = []
    for i, row in enumerate(rows):
        rid = str(row.get("Record ID") or "").strip() or f"gpqa-{i:04d}"
        correct = str(row["Correct Answer"]).strip()
        options = [correct] + [str(row[f"Incorrect Answer {k}"]).strip() for k in (1, 2, 3)]
        order = list(range(4))
        random.Random(f"{option_seed}:{rid}").shuffle(order)
        shuffled = [options[k] for k in order]
        letter = _LETTERS[order.index(0)]
        question = str(row["Question"]).strip()
        lines = "\n".join(f"{_LETTERS[k]}) {opt}" for k, opt in enumerate(shuffled))
        examples.append(
            {
                "id": rid,
                "prompt": f"{question}\n\n{lines}\n{CHOICE_SUFFIX}",
                "answer": letter,
                "meta": {"question": question, "choices": shuffled, "correct": correct},
            }
        )
    return _finalize(examples, limit, seed)


# --------------------------------------------------------------------------- #
# Tool schemas
# --------------------------------------------------------------------------- #

# BFCL / Python-flavoured type names -> JSON schema ("any" -> no type constraint).
_JSON_TYPE = {
    "string": "string", "str": "string", "text": "string",
    "integer": "integer", "int": "integer", "long": "integer",
    "float": "number", "double": "number", "number": "number",
    "boolean": "boolean", "bool": "boolean",
    "array": "array", "list": "array", "tuple": "array", "set": "array",
    "dict": "object", "object": "object", "mapping": "object",
    "null": "null", "none": "null",
    "any": None,
}


def _json_type(type_name: Any) -> tuple[Any, dict, bool]:
    """(JSON type or None, extra schema keys, optional flag) for a type annotation."""
    if isinstance(type_name, list):
        mapped = [_json_type(t)[0] for t in type_name]
        mapped = [t for t in mapped if t]
        return (mapped if len(mapped) > 1 else (mapped[0] if mapped else None)), {}, False
    if not isinstance(type_name, str):
        return None, {}, False
    s = type_name.strip()
    optional = False
    if re.search(r",\s*optional\s*$", s, re.IGNORECASE):
        s, optional = re.sub(r",\s*optional\s*$", "", s, flags=re.IGNORECASE).strip(), True
    m = re.fullmatch(r"(?:typing\.)?Optional\[(.*)\]", s)
    if m:
        s, optional = m.group(1).strip(), True
    low = s.lower()
    if low in _JSON_TYPE:
        return _JSON_TYPE[low], {}, optional
    m = re.fullmatch(r"(?:typing\.)?(list|tuple|set|sequence)\[(.*)\]", s, re.IGNORECASE)
    if m:
        inner = m.group(2).split(",")[0].strip()
        item_type = _json_type(inner)[0]
        return "array", ({"items": {"type": item_type}} if item_type else {}), optional
    if re.fullmatch(r"(?:typing\.)?(dict|mapping)\[.*\]", s, re.IGNORECASE):
        return "object", {}, optional
    m = re.fullmatch(r"(?:typing\.)?Union\[(.*)\]", s)
    if m:
        parts = [_json_type(p.strip())[0] for p in m.group(1).split(",")]
        if "null" in parts:
            optional = True
        parts = [p for p in dict.fromkeys(parts) if p and p != "null"]
        return (parts[0] if len(parts) == 1 else None), {}, optional
    return None, {}, optional


def _convert_schema(node: Any) -> dict:
    """BFCL/Python-flavoured schema node -> JSON schema (recursively)."""
    if not isinstance(node, dict):
        return {}
    out: dict = {}
    for key, value in node.items():
        if key == "optional":
            continue
        if key == "type":
            jtype, extra, _ = _json_type(value)
            if jtype is not None:
                out["type"] = jtype
            for k, v in extra.items():
                out.setdefault(k, v)
        elif key == "properties" and isinstance(value, dict):
            out["properties"] = {k: _convert_schema(v) for k, v in value.items()}
        elif key == "items":
            out["items"] = _convert_schema(value) if isinstance(value, dict) else value
        elif key == "additionalProperties" and isinstance(value, dict):
            out[key] = _convert_schema(value)
        else:
            out[key] = value
    return out


def _flat_map_to_schema(arguments: dict) -> dict:
    """Legacy ``{"param": {"type": "str, optional", ...}}`` map -> JSON-schema object."""
    props, required = {}, []
    for name, spec in arguments.items():
        spec = spec if isinstance(spec, dict) else {"description": str(spec)}
        props[name] = _convert_schema(spec)
        optional = _json_type(spec.get("type"))[2] or bool(spec.get("optional"))
        if not optional and "default" not in spec:
            required.append(name)
    return {"type": "object", "properties": props, "required": required}


def normalize_tool(tool: Any) -> dict | None:
    """Any OpenAI-ish / BFCL / legacy tool description -> ``{"type": "function",
    "function": {"name", "description", "parameters": <JSON schema object>}}``.

    Handles double wrapping, ``parameters: null``, a legacy flat ``arguments``
    map, Python type names, and a function-level ``required`` list. Returns None
    when no function name can be found.
    """
    fn = tool
    while isinstance(fn, dict) and "name" not in fn and isinstance(fn.get("function"), dict):
        fn = fn["function"]
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        return None
    params = fn.get("parameters")
    if not isinstance(params, dict) and isinstance(fn.get("arguments"), dict):
        params = _flat_map_to_schema(fn["arguments"])
    elif isinstance(params, dict) and "type" not in params and "properties" not in params and params:
        params = _flat_map_to_schema(params)  # flat map given under "parameters"
    else:
        params = _convert_schema(params) if isinstance(params, dict) else {}
    params.setdefault("type", "object")
    if params.get("type") != "object":
        params["type"] = "object"
    params.setdefault("properties", {})
    if "required" not in params and isinstance(fn.get("required"), list):
        params["required"] = list(fn["required"])
    function = {"name": fn["name"], "description": str(fn.get("description") or "")}
    function["parameters"] = params
    return {"type": "function", "function": function}


def bfcl_function_to_tool(fn: dict) -> dict:
    """One BFCL function doc -> JSON-schema tool dict (``dict`` -> ``object``,
    ``float`` -> ``number``, ``tuple`` -> ``array``, ``any`` -> untyped; BFCL's
    non-standard ``optional`` flag dropped)."""
    tool = normalize_tool(fn)
    if tool is None:
        raise ValueError(f"BFCL function without a name: {fn!r}")
    return tool


def _first_acceptable(values: list, schema: dict | None, required: bool) -> tuple[bool, Any]:
    """(present?, value) for the first acceptable value of a BFCL possible-answer list."""
    non_empty = [v for v in values if not (isinstance(v, str) and v == "")]
    if not values or (values[0] == "" and not required) or not non_empty:
        return False, None
    value = values[0] if values[0] != "" else non_empty[0]
    ptype = (schema or {}).get("type")
    item_type = ((schema or {}).get("items") or {}).get("type")
    if ptype == "dict" and isinstance(value, dict):
        value = _render_possible_dict(value)
    elif ptype == "array" and item_type == "dict" and isinstance(value, list):
        value = [_render_possible_dict(v) if isinstance(v, dict) else v for v in value]
    return True, value


def _render_possible_dict(possible: dict) -> dict:
    out = {}
    for key, accs in possible.items():
        if isinstance(accs, list):
            present, value = _first_acceptable(accs, None, required=False)
            if present:
                out[key] = value
        else:
            out[key] = accs
    return out


def bfcl_gold_calls(ground_truth: list, functions: list) -> list[dict]:
    """BFCL possible answers -> one gold call list ``[{"name", "arguments"}]``,
    taking each parameter's first acceptable value (``""`` first = omitted,
    unless the parameter is required)."""
    docs = {f["name"]: f for f in functions}
    calls = []
    for item in ground_truth:
        (name, params), = item.items()
        doc = docs.get(name, {}).get("parameters", {})
        props, required = doc.get("properties", {}), set(doc.get("required", []))
        args = {}
        for pname, accs in params.items():
            present, value = _first_acceptable(accs, props.get(pname), pname in required)
            if present:
                args[pname] = value
        calls.append({"name": name, "arguments": args})
    return calls


def _split_prompt(messages: list[dict]) -> tuple[str, list[dict], list[dict]] | None:
    """(last user turn, messages before it, messages after it) or None without a user turn."""
    idx = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=None)
    if idx is None:
        return None
    content = messages[idx].get("content")
    content = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    return content, messages[:idx], messages[idx + 1:]


# --------------------------------------------------------------------------- #
# BFCL
# --------------------------------------------------------------------------- #

_BFCL_FILE_STEMS = {"simple": ("simple_python", "simple")}


def _bfcl_default_folder() -> Path | None:
    try:
        import importlib.util

        spec = importlib.util.find_spec("bfcl_eval")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "data"
    return folder if folder.is_dir() else None


def _bfcl_question_file(folder: Path, category: str) -> Path | None:
    for stem in _BFCL_FILE_STEMS.get(category, (category,)):
        found = sorted(
            folder.glob(f"BFCL_v*_{stem}.json"),
            key=lambda p: int(re.search(r"BFCL_v(\d+)_", p.name).group(1)),
            reverse=True,
        )
        if found:
            return found[0]
    return None


def load_bfcl(
    category: str = "simple",
    source: str | os.PathLike | None = None,
    split: str = "test",
    limit: int | None = None,
    seed: int | None = None,
) -> list[Example]:
    """BFCL v4 (non-live, single-turn, Python) questions + possible answers.

    ``source``: the folder holding ``BFCL_v4_<category>.json`` and
    ``possible_answer/`` (``simple`` reads ``BFCL_v4_simple_python.json``; older
    ``BFCL_v3_*`` names work too); default: the data folder of an installed
    ``bfcl-eval`` package. ``split`` is accepted for API symmetry (BFCL is a
    test set). Per example: ``meta["tools"]`` (JSON-schema tools converted from
    the BFCL docs), ``meta["functions"]`` (the original docs),
    ``meta["possible_answers"]`` (BFCL ground truth, ``[]`` for irrelevance),
    ``meta["category"]`` and ``meta["messages"]``. ``answer`` is the gold call
    list built from each parameter's first acceptable value (``"[]"`` for
    irrelevance: the right behaviour is to make no call).
    """
    category = category.lower().replace("-", "_")
    if category == "simple_python":
        category = "simple"
    if category not in BFCL_CATEGORIES:
        raise ValueError(f"Unknown BFCL category {category!r}; valid: {', '.join(BFCL_CATEGORIES)}")
    stem = _BFCL_FILE_STEMS.get(category, (category,))[0]
    guidance = (
        f"download BFCL_v4_{stem}.json and possible_answer/BFCL_v4_{stem}.json from {BFCL_URL} "
        f"and pass source=<folder holding them>."
    )
    folder = Path(source).expanduser() if source is not None else _bfcl_default_folder()
    if folder is None:
        raise FileNotFoundError(f"No BFCL data folder given (source=None and bfcl-eval not installed): {guidance}")
    qfile = _bfcl_question_file(folder, category) if folder.is_dir() else None
    if qfile is None:
        raise FileNotFoundError(f"BFCL {category} question file not found in {folder}: {guidance}")
    rows = _read_jsonl(qfile)
    answers: dict[str, list] = {}
    if category != "irrelevance":
        afile = folder / "possible_answer" / qfile.name
        if not afile.is_file():
            raise FileNotFoundError(f"BFCL possible-answer file not found at {afile}: {guidance}")
        answers = {r["id"]: r["ground_truth"] for r in _read_jsonl(afile)}
    examples = []
    for row in rows:
        messages = [m for turn in row["question"] for m in turn]
        split_prompt = _split_prompt(messages)
        if split_prompt is None:
            continue
        prompt, before, after = split_prompt
        functions = row["function"]
        possible = answers.get(row["id"], []) if category != "irrelevance" else []
        if category != "irrelevance" and row["id"] not in answers:
            continue
        gold = bfcl_gold_calls(possible, functions)
        examples.append(
            {
                "id": row["id"],
                "prompt": prompt,
                "answer": json.dumps(gold, ensure_ascii=False),
                "meta": {
                    "tools": [bfcl_function_to_tool(f) for f in functions],
                    "functions": functions,
                    "possible_answers": possible,
                    "category": category,
                    "messages": before,
                    "followup": after,
                },
            }
        )
    return _finalize(examples, limit, seed)


# --------------------------------------------------------------------------- #
# ToolMind
# --------------------------------------------------------------------------- #


def _norm_arguments(args: Any) -> Any:
    if isinstance(args, str):
        try:
            return json.loads(args) if args.strip() else {}
        except ValueError:
            return args
    return {} if args is None else args


def _norm_calls(tool_calls: Any) -> list[dict]:
    calls = []
    for call in tool_calls or []:
        if not isinstance(call, dict):
            continue
        fn = call.get("function") if isinstance(call.get("function"), dict) else call
        calls.append({"name": fn.get("name"), "arguments": _norm_arguments(fn.get("arguments"))})
    return calls


def _norm_message(msg: dict) -> dict:
    role = msg.get("role")
    content = msg.get("content")
    if content is not None and not isinstance(content, str):
        content = json.dumps(content, ensure_ascii=False)
    out = {"role": role, "content": content or ""}
    if role == "assistant" and msg.get("tool_calls"):
        out["tool_calls"] = [
            {"type": "function", "function": c} for c in _norm_calls(msg["tool_calls"])
        ]
    return out


def _toolmind_files(path: Path, subsets: list[str] | None) -> list[Path]:
    """The JSONL files of a ToolMind file or folder; with `subsets`, those whose stem (or name) is listed."""
    files = sorted(p for p in path.rglob("*") if p.suffix in (".jsonl", ".json") and p.is_file()) if path.is_dir() \
        else [path]
    if subsets is None:
        return files
    wanted = {_toolmind_stem(s) for s in subsets}
    found = [f for f in files if _toolmind_stem(f.name) in wanted]
    missing = wanted - {_toolmind_stem(f.name) for f in found}
    if missing:
        raise FileNotFoundError(f"ToolMind subsets {sorted(missing)} not found under {path} "
                                f"(files there: {[f.name for f in files]}); known subsets: {list(TOOLMIND_FILES)}")
    return found


def _toolmind_stem(name: str) -> str:
    """'open_datasets/ToolACE-query.jsonl', 'ToolACE-query.jsonl', 'ToolACE-query' -> 'ToolACE-query'."""
    return Path(name).name.removesuffix(".jsonl").removesuffix(".json")


def _system_first(messages: list[dict]) -> list[dict]:
    """All system messages merged into one leading message (chat templates reject a system turn elsewhere)."""
    system = [m["content"] for m in messages if m.get("role") == "system" and m.get("content")]
    rest = [m for m in messages if m.get("role") != "system"]
    return ([{"role": "system", "content": "\n\n".join(system)}] if system else []) + rest


@functools.lru_cache(maxsize=None)
def reference_chat_template(family: str = "qwen3_5", size: str = "0.8B") -> str:
    """The published chat template shipped with the kit (art_lib/assets/<family>/<size>/chat_template.jinja)."""
    return (Path(__file__).resolve().parent / "assets" / family / size / "chat_template.jinja").read_text()


@functools.lru_cache(maxsize=8)
def _generation_prefix(template: str) -> str:
    """A one-user-turn conversation plus the generation prompt (thinking off), rendered by `template`."""
    from transformers.utils.chat_template_utils import render_jinja_template

    out = render_jinja_template([[{"role": "user", "content": "?"}]], chat_template=template,
                                add_generation_prompt=True, enable_thinking=False)
    return out[0][0] if isinstance(out, tuple) else out[0]


def tool_call_target(example: Example, chat_template: str | None = None) -> str:
    """SFT target of a tool task: the gold call(s) exactly as the chat template renders an assistant tool call.

    Rendered as (user turn + assistant turn with `tool_calls`) minus (user turn + generation prompt)
    with thinking off, without the end-of-turn token: the text the model should generate after its
    prompt. The target turn always follows the last user query, so the conversation before it (tools,
    history, tool results) does not change how it renders (tested against the full conversation);
    leaving it out keeps loading all of ToolMind fast.
    """
    from transformers.utils.chat_template_utils import render_jinja_template

    template = chat_template or reference_chat_template()
    calls = [{"type": "function", "function": c} for c in json.loads(example["answer"])]
    turns = [{"role": "user", "content": "?"}, {"role": "assistant", "content": "", "tool_calls": calls}]
    out = render_jinja_template([turns], chat_template=template, add_generation_prompt=False, enable_thinking=False)
    full, prefix = out[0][0] if isinstance(out, tuple) else out[0], _generation_prefix(template)
    if not full.startswith(prefix):
        raise ValueError(f"chat template renders {example['id']}'s assistant turn unlike its generation prompt")
    return full[len(prefix):].removesuffix("\n").removesuffix("<|im_end|>")


@functools.lru_cache(maxsize=16)
def _toolmind_file(file: Path, mtime_ns: int, max_rows: int | None,
                   include_text_targets: bool) -> tuple[list[Example], list[str]]:
    """(examples, conversation-group hashes) of one ToolMind file, in file order."""
    examples: list[Example] = []
    groups: list[str] = []
    for i, row in enumerate(_read_jsonl(file, max_rows=max_rows)):
        conv = row.get("conversations") or []
        if not conv or not isinstance(conv[-1], dict) or conv[-1].get("role") != "assistant":
            continue
        target = _norm_calls(conv[-1].get("tool_calls"))
        if not target and not include_text_targets:
            continue
        if any(not isinstance(c["name"], str) or not isinstance(c["arguments"], dict) for c in target):
            continue
        split_prompt = _split_prompt([m for m in conv[:-1] if isinstance(m, dict)])
        if split_prompt is None:
            continue
        prompt, before, after = split_prompt
        raw_tools = row.get("tools") or []
        if isinstance(raw_tools, str):
            try:
                raw_tools = json.loads(raw_tools)
            except ValueError:
                raw_tools = []
        tools = [t for t in (normalize_tool(t) for t in raw_tools) if t is not None]
        first_user = next((m.get("content") for m in conv if m.get("role") == "user"), "")
        group = hashlib.sha1(
            json.dumps([raw_tools, first_user], sort_keys=True, ensure_ascii=False, default=str).encode()
        ).hexdigest()
        groups.append(group)
        # A system turn after the prompt cannot move before it; its text joins the leading system turn.
        late_system = [m for m in after if m.get("role") == "system"]
        ex = {
            "id": f"toolmind-{file.stem}-{i:06d}",
            "prompt": prompt,
            "answer": json.dumps(target, ensure_ascii=False),
            "meta": {
                "tools": tools,
                "messages": _system_first([_norm_message(m) for m in before + late_system]),
                "followup": [_norm_message(m) for m in after if m.get("role") != "system"],
                "source_file": file.name,
            },
        }
        if target:
            ex["meta"]["target"] = tool_call_target(ex)
        examples.append(ex)
    return examples, groups


def load_toolmind(
    source: str | os.PathLike = TOOLMIND_REPO,
    split: str = "test",
    limit: int | None = None,
    seed: int | None = None,
    test_fraction: float = 0.1,
    include_text_targets: bool = False,
    subsets: list[str] | None = None,
    split_seed: int = 0,
    max_rows: int | None = None,
) -> list[Example]:
    """ToolMind rows (``{"conversations": [...], "tools": [...]}``, see SCHEMA.md).

    ``source``: a JSONL file, a folder of them, or the hub repo id (then the
    ``subsets`` files of revision ``TOOLMIND_REVISION`` are downloaded).
    ``subsets``: file stems to read (e.g. ``["ToolACE-query"]``, see
    ``TOOLMIND_FILES``); None reads every file (all of ToolMind, ~4 GB).
    ToolMind has no test split: a held-out ``split="test"`` (``test_fraction``
    of the conversations) and ``split="train"`` (the rest) are drawn with
    ``random.Random(split_seed)`` over conversation groups (rows sharing tools
    and first user turn are turn-level prefixes of one conversation, so they
    stay on the same side). ``split_seed`` is fixed by default and independent
    of ``seed`` (which, as for every loader, only shuffles before ``limit``), so
    training seeds never move test rows into training. ``split="all"`` keeps every row.

    Target (``answer``): the final assistant message's tool call(s) as a JSON
    ``[{"name", "arguments"}]``; rows whose final turn is plain text are dropped
    unless ``include_text_targets`` (then ``answer="[]"``, i.e. "no call").
    ``prompt`` = the last user turn; ``meta["messages"]`` = the normalised turns
    before it (system messages merged into one first turn), ``meta["followup"]``
    = assistant/tool turns between it and the target (to be appended after it);
    ``meta["tools"]`` = normalised JSON-schema tools; ``meta["target"]`` = the
    SFT target (:func:`tool_call_target`, Qwen3.5's template), for call targets.
    ids: ``toolmind-<file stem>-<row index>``.
    """
    guidance = (
        f"download ToolMind JSONL files (e.g. {TOOLMIND_FILES[0]}) from https://huggingface.co/datasets/"
        f"{TOOLMIND_REPO} (revision {TOOLMIND_REVISION}) and pass source=<path to a .jsonl or their folder>."
    )
    if split not in ("train", "test", "all"):
        raise ValueError(f"ToolMind split must be 'train', 'test' or 'all', got {split!r}")
    if _looks_local(source):
        path = Path(source).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"ToolMind data not found at {path}: {guidance}")
        files = _toolmind_files(path, subsets)
    else:
        wanted = [f for f in TOOLMIND_FILES if subsets is None or _toolmind_stem(f) in
                  {_toolmind_stem(s) for s in subsets}]
        try:
            from huggingface_hub import hf_hub_download

            files = [Path(hf_hub_download(repo_id=str(source), repo_type="dataset", filename=f,
                                          revision=TOOLMIND_REVISION)) for f in wanted]
        except Exception as exc:  # noqa: BLE001
            raise FileNotFoundError(
                f"Could not download {wanted} of {source!r} from the Hugging Face hub "
                f"({type(exc).__name__}: {exc}). If you are offline: {guidance}"
            ) from exc
    if not files:
        raise FileNotFoundError(f"No .jsonl/.json ToolMind files in {source}: {guidance}")

    examples: list[Example] = []
    groups: list[str] = []
    for file in files:
        # Parsed once per file and process (a notebook loads the same split for every arm); copies go out.
        exs, grs = _toolmind_file(file.resolve(), file.stat().st_mtime_ns, max_rows, include_text_targets)
        examples += [dict(ex, meta=dict(ex["meta"])) for ex in exs]
        groups += grs
    if split != "all":
        unique = sorted(set(groups))
        random.Random(split_seed).shuffle(unique)
        n_test = int(round(len(unique) * float(test_fraction)))
        if len(unique) > 1 and test_fraction > 0:
            n_test = min(max(n_test, 1), len(unique) - 1)
        test_groups = set(unique[:n_test])
        want_test = split == "test"
        examples = [ex for ex, g in zip(examples, groups) if (g in test_groups) == want_test]
    return _finalize(examples, limit, seed)


# --------------------------------------------------------------------------- #
# Dispatch
# --------------------------------------------------------------------------- #


#: Per benchmark: the sub-folder of a notebook's `data_dir` and what to put there (README "Data").
DATA_FILES = {
    "gsm8k": ("gsm8k", f"train.jsonl and test.jsonl from {GSM8K_URL.format(split='<split>')}"),
    "svamp": ("svamp", f"SVAMP.json (and optionally chilled_split_ids.json) from {SVAMP_URL}"),
    "gpqa": ("gpqa", f"gpqa_diamond.csv from {GPQA_URL}"),
    "toolmind": ("toolmind", f"ToolMind .jsonl files (any of {', '.join(TOOLMIND_FILES)}) from "
                             f"https://huggingface.co/datasets/{TOOLMIND_REPO}"),
    "bfcl": ("bfcl", f"BFCL_v4_<category>.json and possible_answer/ from {BFCL_URL}"),
}


def data_kwargs(name: str, data_dir: str | os.PathLike | dict | None) -> dict:
    """Loader keyword arguments for benchmark `name` given a notebook's `data_dir`.

    `data_dir` is None (each loader's default: the hub), one folder holding `<benchmark>/` sub-folders
    (`DATA_FILES`), or a dict `{benchmark: source}` where a source is a path / hub id or a dict of
    loader arguments (e.g. `{"source": "data/toolmind", "subsets": ["ToolACE-query"]}`); benchmarks
    missing from the dict, and benchmarks without files (the toy world's), use their loader's default.
    A missing sub-folder is an error naming its files.
    """
    from .registry import canonical_name

    key = canonical_name(name)
    family = "bfcl" if key.startswith("bfcl_") else key  # one BFCL folder holds every category
    if data_dir is None:
        return {}
    if isinstance(data_dir, dict):
        given = {canonical_name(k): v for k, v in data_dir.items()}
        given = given.get(key, given.get(family))
        return {} if given is None else dict(given) if isinstance(given, dict) else {"source": str(given)}
    if family not in DATA_FILES:
        return {}
    sub, files = DATA_FILES[family]
    folder = Path(data_dir).expanduser() / sub
    if not folder.exists():
        raise FileNotFoundError(f"{name}: data folder {folder} does not exist; put {files} there "
                                f"(or pass data_dir={{{family!r}: <path or hub id>}})")
    return {"source": str(folder)}


def load_benchmark(name: str, data_dir: str | os.PathLike | dict | None = None, **kw: Any) -> list[Example]:
    """Load a registered benchmark by name (`registry.benchmark_names()`: ``gsm8k``, ``svamp``, ``gpqa``,
    ``toolmind``, ``bfcl``, ``bfcl_<category>``, and any user or plugin benchmark). ``data_dir``: see
    :func:`data_kwargs`. Keyword arguments go to the loader. Unknown name -> ValueError listing the valid names."""
    from .registry import get_benchmark

    kw = data_kwargs(name, data_dir) | kw
    return get_benchmark(name).load(**kw)
