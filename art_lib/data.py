"""Benchmark data, generically: the example type, validating file readers and `load_benchmark`.

Every loader returns `list[dict]` examples `{"id": str, "prompt": str, "answer": str, "meta": dict}`:
`prompt` is the user-turn text, `answer` the gold target as a string (a normalised number, a letter,
or a JSON list `[{"name": ..., "arguments": {...}}]` of tool calls) and `meta` what the benchmark
needs besides (for tool tasks `meta["tools"]` and `meta["messages"]`). The loaders themselves live
with their benchmark family in `art_lib.tasks` and are found through `art_lib.registry`.

`source=` is either a local file/folder path or a Hugging Face dataset id; the hub
(`datasets.load_dataset`) is only used when `source` is not an existing local path and does not look
like one (`looks_local`). Missing local data, or a hub load that fails (e.g. offline), raises
`FileNotFoundError` saying which file to download and where to pass it. A file that cannot be read as
expected raises `DataError` naming file, line and field (`read_jsonl`, `read_csv`).

Common loader arguments: `split`, `limit` (keep the first `limit` examples) and `seed`: None keeps
the source order, an int shuffles deterministically (`random.Random(seed)`) before `limit`
(`finalize`). Same arguments, same ids, always.
"""

from __future__ import annotations

import csv
import json
import os
import random
import re
from pathlib import Path
from typing import Any

from .registry import canonical_name, get_benchmark

__all__ = [
    "Example",
    "DataError",
    "MissingFieldError",
    "looks_local",
    "hub_load",
    "read_jsonl",
    "read_csv",
    "finalize",
    "data_kwargs",
    "load_benchmark",
]

Example = dict


def looks_local(source: Any) -> bool:
    """True if `source` is (or is meant to be) a local path, not a hub id."""
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


def hub_load(source: str, *args: Any, guidance: str, **kwargs: Any):
    """`datasets.load_dataset` that turns any failure into a FileNotFoundError with guidance."""
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
            raise DataError(
                f"{where}: field {key!r} must be {want}, got {type(value[key]).__name__} {str(value[key])[:80]!r}"
            )
    return row


def read_jsonl(
    path: Path, max_rows: int | None = None, fields: dict[str, type | tuple[type, ...]] | None = None
) -> list[dict]:
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
                raise DataError(
                    f"{path}:{n}: not UTF-8 text ({err.reason} at byte {err.start + 1} of the line); "
                    "re-save the file as UTF-8"
                ) from None
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


def read_csv(path: Path, fields: dict[str, type | tuple[type, ...]] | None = None) -> list[dict]:
    """Rows of a CSV file with a header, checked like `read_jsonl` (a short row has None fields)."""
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


def finalize(examples: list[Example], limit: int | None, seed: int | None) -> list[Example]:
    """The loaders' common tail: shuffle with `random.Random(seed)` unless `seed` is None, then keep `limit`."""
    if seed is not None:
        examples = list(examples)
        random.Random(seed).shuffle(examples)
    if limit is not None:
        examples = examples[: max(0, int(limit))]
    return examples


def data_kwargs(name: str, data_dir: str | os.PathLike | dict | None) -> dict:
    """Loader keyword arguments for benchmark `name` given a notebook's `data_dir`.

    `data_dir` is None (each loader's default: the hub), one folder holding a sub-folder per benchmark
    (the registered `Benchmark.data`), or a dict `{benchmark: source}` where a source is a path / hub id
    or a dict of loader arguments (e.g. `{"source": "data/toolmind", "subsets": ["ToolACE-query"]}`);
    benchmarks missing from the dict, and benchmarks without files (the toy world's), use their
    loader's default. A missing sub-folder is an error naming its files.
    """
    if data_dir is None:
        return {}
    key = canonical_name(name)
    data = get_benchmark(name).data
    family = data[0] if data else key  # one sub-folder may hold several benchmarks (every BFCL category)
    if isinstance(data_dir, dict):
        given = {canonical_name(k): v for k, v in data_dir.items()}
        given = given.get(key, given.get(family))
        return {} if given is None else dict(given) if isinstance(given, dict) else {"source": str(given)}
    if data is None:
        return {}
    sub, files = data
    folder = Path(data_dir).expanduser() / sub
    if not folder.exists():
        raise FileNotFoundError(
            f"{name}: data folder {folder} does not exist; put {files} there "
            f"(or pass data_dir={{{family!r}: <path or hub id>}})"
        )
    return {"source": str(folder)}


def load_benchmark(name: str, data_dir: str | os.PathLike | dict | None = None, **kw: Any) -> list[Example]:
    """Load a registered benchmark by name (`registry.benchmark_names()`); unknown name -> ValueError.

    `data_dir`: see `data_kwargs`. Keyword arguments go to the loader.
    """
    kw = data_kwargs(name, data_dir) | kw
    return get_benchmark(name).load(**kw)
