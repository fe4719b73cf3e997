"""Benchmark data, generically: the example type, validating file readers and `load_benchmark`.

Every loader returns `list[dict]` examples `{"id": str, "prompt": str, "answer": str, "meta": dict}`:
`prompt` is the user-turn text, `answer` the gold target as a string (a normalised number, a letter,
or a JSON list `[{"name": ..., "arguments": {...}}]` of tool calls) and `meta` what the benchmark
needs besides (for tool tasks `meta["tools"]` and `meta["messages"]`). The loaders themselves live
with their benchmark family in `art_lib.tasks` and are found through `art_lib.registry`.

`source=` is either a local file/folder path or a Hugging Face dataset id; the hub
(`datasets.load_dataset`) is only used when `source` is not an existing local path and does not look
like one (`looks_local`). Missing local data, or a hub load that fails (e.g. offline), raises
`FileNotFoundError` saying which file to download and where to pass it.

Validation, one layer per boundary: a file becomes rows (`read_jsonl` or, one row at a time,
`iter_jsonl`; `read_csv`, `hub_rows`: syntax, encoding, field types, no empty file), rows become
examples (`build_examples`: each loader's `convert` checks values and raises `DataError` naming file,
line and field; a repeated id is an error; for a large noisy source, `skip_bad=True` turns a bad row
into a counted skip reported by one `DataWarning` with the first few reasons), and an empty result is
an error naming its source (`build_examples`, `finalize`).

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
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .registry import canonical_name, get_benchmark

__all__ = [
    "Example",
    "DataError",
    "DataWarning",
    "MissingFieldError",
    "Converted",
    "convert_rows",
    "build_examples",
    "index_rows",
    "hub_rows",
    "looks_local",
    "hub_load",
    "read_jsonl",
    "iter_jsonl",
    "jsonl_row_at",
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


class DataWarning(UserWarning):
    """Malformed rows a loader skipped (`build_examples(skip_bad=True)`): their count and the first few reasons."""


class MissingFieldError(DataError, KeyError):
    """A row lacks a field the loader needs (a KeyError too, for callers that catch that)."""

    def __str__(self) -> str:  # KeyError would print the message's repr
        return str(self.args[0])


class _Row(dict):
    """A parsed row that knows where it came from, so a missing key names the file and line."""

    where = "?"
    line: int | None = None  # set by the JSONL readers: line (or .json item index) and byte offset of the row
    offset: int | None = None

    def __missing__(self, key: Any):
        raise MissingFieldError(f"{self.where}: missing field {key!r} (fields present: {sorted(self)})")

    def bad(self, key: str, problem: str) -> DataError:
        """The error for a bad value of field `key`, naming file and line."""
        return DataError(f"{self.where}: field {key!r} {problem}")

    def text(self, key: str) -> str:
        """Field `key` as stripped text; missing, not a string or blank -> DataError."""
        value = self[key]
        if not isinstance(value, str) or not value.strip():
            raise self.bad(key, f"must be non-empty text, got {str(value)[:80]!r}")
        return value.strip()


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
    """Rows of a JSONL file (or a .json array): UTF-8 with or without BOM; errors name file, line and field.

    Each row is a dict whose `.where` is "file:line" (or "file item i"); `fields` maps names to required types.
    A file without rows is a DataError. `iter_jsonl` reads the same rows one at a time.
    """
    return list(iter_jsonl(path, max_rows, fields))


def iter_jsonl(
    path: Path, max_rows: int | None = None, fields: dict[str, type | tuple[type, ...]] | None = None
) -> Iterator[dict]:
    """`read_jsonl`'s rows, checked the same way, parsed one line at a time (a .json array is parsed whole).

    Each row also carries `.line` (1-based line, or the item index of a .json array) and `.offset` (the byte
    offset of its line; None in a .json array), so `jsonl_row_at(path, row.offset, row.line)` reads it again.
    A file without rows is a DataError, raised when the iteration reaches its end.
    """
    path = Path(path)
    if max_rows is not None and max_rows < 1:
        raise ValueError(f"max_rows must be at least 1 (or None), got {max_rows}")
    if path.suffix == ".json" and _is_json_array(path):
        yield from _json_array_rows(path, max_rows, fields)
        return
    n_rows = 0
    with open(path, "rb") as f:  # bytes, decoded line by line, so an encoding error names its line
        offset = 0
        for n, raw in enumerate(f, start=1):
            row = _jsonl_row(path, n, raw, fields)
            if row is not None:
                row.offset = offset
                yield row
                n_rows += 1
                if max_rows is not None and n_rows >= max_rows:
                    return
            offset += len(raw)
    if not n_rows:
        raise DataError(f"{path}: no rows (the file is empty or blank)")


def jsonl_row_at(path: Path, offset: int, line: int, fields: dict[str, type | tuple[type, ...]] | None = None) -> dict:
    """The row that `iter_jsonl` gave with `.offset` `offset` and `.line` `line`, read again (one seek, one line)."""
    with open(path, "rb") as f:
        f.seek(offset)
        row = _jsonl_row(Path(path), line, f.readline(), fields)
    if row is None:
        raise DataError(f"{path}:{line}: no row at byte {offset} (the file changed since it was indexed)")
    row.offset = offset
    return row


def _jsonl_row(path: Path, n: int, raw: bytes, fields: dict | None) -> _Row | None:
    """Line `n` of a JSONL file as a checked row; None for a blank line."""
    try:
        line = raw.decode("utf-8-sig" if n == 1 else "utf-8").rstrip("\r\n")
    except UnicodeDecodeError as err:
        raise DataError(
            f"{path}:{n}: not UTF-8 text ({err.reason} at byte {err.start + 1} of the line); re-save the file as UTF-8"
        ) from None
    if not line.strip():
        return None
    try:
        value = json.loads(line)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{n}: invalid JSON ({err.msg}, column {err.colno})") from None
    row = _row(value, f"{path}:{n}", fields)
    row.line = n
    return row


def _json_array_rows(path: Path, max_rows: int | None, fields: dict | None) -> list[_Row]:
    """The items of a .json array file as checked rows (`.line`: the item index, `.offset`: None)."""
    try:
        with open(path, encoding="utf-8-sig") as f:  # -sig: a leading BOM is dropped, not parsed
            items = json.load(f)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}: invalid JSON ({err.msg}, column {err.colno})") from None
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); re-save it as UTF-8") from None
    if not isinstance(items, list) or not items:
        raise DataError(f"{path}: no rows (an empty JSON array)")
    rows = [_row(v, f"{path} item {i}", fields) for i, v in enumerate(items[:max_rows] if max_rows else items)]
    for i, row in enumerate(rows):
        row.line, row.offset = i, None
    return rows


def read_csv(path: Path, fields: dict[str, type | tuple[type, ...]] | None = None) -> list[dict]:
    """Rows of a CSV file with a header, checked like `read_jsonl` (a short row has None fields); no rows: DataError."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            rows = [_row(r, f"{path}:{reader.line_num}", fields) for r in reader]
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err.reason}); re-save the file as UTF-8") from None
    if not rows:
        raise DataError(f"{path}: no rows (the file is empty or has only a header)")
    return rows


def hub_rows(rows: Iterable[Any], label: str, fields: dict[str, type | tuple[type, ...]] | None = None) -> list[dict]:
    """Rows of a hub dataset checked like a local file's; each `.where` is "<label> row <i>"."""
    return [_row(dict(r) if isinstance(r, dict) else r, f"{label} row {i}", fields) for i, r in enumerate(rows)]


def _where(row: Any) -> str:
    return getattr(row, "where", "?")


def index_rows(rows: Iterable[dict], key: str) -> dict[Any, dict]:
    """`{row[key]: row}`; a repeated key is a DataError naming both rows."""
    out: dict[Any, dict] = {}
    for row in rows:
        value = row[key]
        if value in out:
            raise DataError(f"{_where(row)}: duplicate {key} {value!r} (first at {_where(out[value])})")
        out[value] = row
    return out


@dataclass
class Converted:
    """What `convert_rows` made of a source's rows."""

    examples: list[Example]
    skipped: list[str] = field(default_factory=list)  # the error of each malformed row skipped (skip_bad=True)
    left_out: Counter = field(default_factory=Counter)  # reason -> rows the loader leaves out by design
    source: str = "?"

    def summary(self, first: int = 3) -> str:
        """Counts of skipped and left-out rows, with the first `first` skip reasons."""
        parts = [f"{n} left out ({why})" for why, n in self.left_out.items()]
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped as malformed, first: " + "; ".join(self.skipped[:first]))
        return ", ".join(parts)

    def report(self) -> list[Example]:
        """The examples, after one DataWarning if rows were skipped."""
        if self.skipped:
            total = len(self.examples) + len(self.skipped) + sum(self.left_out.values())
            warnings.warn(
                f"{self.source}: skipped {len(self.skipped)} of {total} rows as malformed; "
                + "; ".join(self.skipped[:5])
                + (" ..." if len(self.skipped) > 5 else ""),
                DataWarning,
                stacklevel=3,
            )
        return self.examples


def convert_rows(
    rows: Iterable[dict], convert: Callable[[int, dict], Example | str], source: Any, skip_bad: bool = False
) -> Converted:
    """The one rows -> examples boundary of every loader.

    `convert(i, row)` (`i`: the row's index) returns an example, or a string: why the loader leaves this
    row out by design (e.g. an option); it raises `DataError` naming file, line and field for a bad value:
    fatal, or with `skip_bad` a counted skip. A repeated id is an error naming both rows; no example at all
    is an error naming `source`.
    """
    done = Converted([], source=str(source))
    seen: dict[str, str] = {}
    for i, row in enumerate(rows):
        try:
            ex = convert(i, row)
        except DataError as err:
            if not skip_bad:
                raise
            done.skipped.append(str(err))
            continue
        if isinstance(ex, str):
            done.left_out[ex] += 1
            continue
        if ex["id"] in seen:
            raise DataError(f"{_where(row)}: duplicate id {ex['id']!r} (first at {seen[ex['id']]})")
        seen[ex["id"]] = _where(row)
        done.examples.append(ex)
    if not done.examples:
        raise DataError(f"{source}: no examples ({done.summary() or 'no rows'})")
    return done


def build_examples(
    rows: Iterable[dict], convert: Callable[[int, dict], Example | str], source: Any, skip_bad: bool = False
) -> list[Example]:
    """`convert_rows(...).report()`: the examples, skips reported in one DataWarning."""
    return convert_rows(rows, convert, source, skip_bad).report()


def _is_json_array(path: Path) -> bool:
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        while True:
            ch = f.read(1)
            if not ch or not ch.isspace():
                return ch == "["


def finalize(examples: list[Example], limit: int | None, seed: int | None, source: Any = "?") -> list[Example]:
    """The loaders' common tail: shuffle with `random.Random(seed)` unless `seed` is None, then keep `limit`.

    No examples before `limit` (e.g. an empty split) is a DataError naming `source`.
    """
    if not examples:
        raise DataError(f"{source}: no examples")
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


#: The splits `load_benchmark_once` has read in this process, newest last (a few: a notebook's benchmarks).
_LOADED: dict[str, list[Example]] = {}
_KEEP_LOADED = 4


def load_benchmark_once(name: str, data_dir: str | os.PathLike | dict | None = None, **kw: Any) -> list[Example]:
    """`load_benchmark`, read once per process for the same arguments: a notebook's controls and each of its arms
    score the same test split, and ToolMind's streams ~4 GB (about 79 s) per read. Returns a fresh copy each call
    (callers may change their examples); the last `_KEEP_LOADED` splits are kept."""
    import copy

    key = json.dumps([name, data_dir, kw], sort_keys=True, default=str)
    if key not in _LOADED:
        _LOADED[key] = load_benchmark(name, data_dir=data_dir, **kw)
        while len(_LOADED) > _KEEP_LOADED:
            del _LOADED[next(iter(_LOADED))]
    return copy.deepcopy(_LOADED[key])
