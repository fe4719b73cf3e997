"""ToolMind's held-out split, decided row by row, and the rows of one side read without loading a file whole.

ToolMind has no test split. A row's side follows from the row alone: its conversation group (rows sharing
tools and first user turn are turn-level prefixes of one conversation) is hashed with `split_seed`, and
the group is held out when the hash, read as a number in [0, 1), is below `test_fraction`. So whole
conversations stay on one side, the split needs no second pass and no global list, a conversation's side
does not depend on which other files are loaded, and raising `test_fraction` only moves train rows to test.

`split_rows` streams the rows of one side in file order; `split_locations` is a first pass that keeps only
each row's byte offset, line, row index and side (25 bytes a row, cached per file version), so a
shuffled order can be read row by row (`rows_at`).
"""

from __future__ import annotations

import hashlib
import json
from array import array
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..data import iter_jsonl, jsonl_row_at

__all__ = [
    "SPLITS",
    "check_split",
    "group_key",
    "row_side",
    "hash_fraction",
    "split_rows",
    "split_locations",
    "rows_at",
]

#: `load_toolmind`'s splits; "all" keeps every row.
SPLITS = ("train", "test", "all")
_SIDE = {"train": 0, "test": 1}


def group_key(row: Any) -> bytes:
    """The conversation group of a row: its tools (parsed when a JSON string) and first user turn, as JSON.

    Never raises: a malformed row gets a key too (its side decides in which split it is counted as skipped).
    """
    tools = row.get("tools") if isinstance(row, dict) else None
    if isinstance(tools, str):
        try:
            tools = json.loads(tools)
        except ValueError:
            pass
    conv = row.get("conversations") if isinstance(row, dict) else None
    turns = conv if isinstance(conv, list) else []
    first_user = next((m.get("content") for m in turns if isinstance(m, dict) and m.get("role") == "user"), None)
    return json.dumps([tools, first_user], sort_keys=True, ensure_ascii=False, default=str).encode()


def row_side(row: Any, split_seed: int, test_fraction: float) -> str:
    """A row's side: "test" if its conversation group hashes (with `split_seed`) below `test_fraction`, else "train"."""
    return "test" if hash_fraction(group_key(row), str(split_seed)) < test_fraction else "train"


def hash_fraction(key: bytes, salt: str) -> float:
    """`key` hashed with `salt` (8-byte BLAKE2b keyed by the salt's first 64 bytes), read as a number in [0, 1)."""
    digest = hashlib.blake2b(key, digest_size=8, key=salt.encode()[:64]).digest()
    return int.from_bytes(digest, "big") / 2**64


def check_split(split: str, test_fraction: float) -> None:
    """A ValueError for a split other than SPLITS or a `test_fraction` outside [0, 1]."""
    if split not in SPLITS:
        raise ValueError(f"ToolMind split must be 'train', 'test' or 'all', got {split!r}")
    if not 0.0 <= float(test_fraction) <= 1.0:
        raise ValueError(f"ToolMind test_fraction must be in [0, 1], got {test_fraction!r}")


def split_rows(file: Path, split: str, split_seed: int, test_fraction: float, max_rows: int | None) -> Iterator[Any]:
    """The rows of `split` in one file, in file order, each with `.index` (its row index in the file).

    With the file's index cached (`split_locations`), only those rows are read; otherwise the file is
    streamed once (every row parsed for its group key, only the wanted rows kept) and, if read to its end,
    indexed.
    """
    key = _index_key(file, split_seed, test_fraction, max_rows)
    if key in _INDEX:
        yield from (row for _, row in rows_at((file, loc) for loc in _wanted(_INDEX[key], split)))
    else:
        yield from _stream(file, key, split)


def split_locations(
    file: Path, split: str, split_seed: int, test_fraction: float, max_rows: int | None
) -> list[tuple[int, int, int]]:
    """(byte offset, line, row index) of each row of `split` in `file`, from its index (built by one pass, cached)."""
    key = _index_key(file, split_seed, test_fraction, max_rows)
    if key not in _INDEX:
        for _ in _stream(file, key, "test"):
            pass  # streaming the file to its end indexes it
    return _wanted(_INDEX[key], split)


def rows_at(locations: Iterable[tuple[Path, tuple[int, int, int]]]) -> Iterator[tuple[Path, Any]]:
    """(file, row) at each (file, location from `split_locations`), in that order; each row with `.index`."""
    arrays: dict[Path, list] = {}  # a .json array has no line offsets: it is parsed whole, once per call
    for file, (offset, line, index) in locations:
        if offset < 0:
            if file not in arrays:
                arrays[file] = list(iter_jsonl(file))
            row = arrays[file][index]
        else:
            row = jsonl_row_at(file, offset, line)
        row.index = index
        yield file, row


def _stream(file: Path, key: tuple, split: str) -> Iterator[Any]:
    """Every row of `file` parsed once, the rows of `split` yielded; at the file's end its index is cached."""
    _, _, _, split_seed, test_fraction, max_rows = key
    locs, sides = array("q"), bytearray()
    for i, row in enumerate(iter_jsonl(file, max_rows=max_rows)):
        side = row_side(row, split_seed, test_fraction)
        locs.extend((-1 if row.offset is None else row.offset, row.line, i))
        sides.append(_SIDE[side])
        if split in ("all", side):
            row.index = i
            yield row
    _INDEX.pop(key, None)
    _INDEX[key] = (locs, sides)
    while len(_INDEX) > _INDEX_FILES:  # least recently built first
        _INDEX.pop(next(iter(_INDEX)))


def _wanted(index: tuple[array, bytearray], split: str) -> list[tuple[int, int, int]]:
    locs, sides = index
    want = None if split == "all" else _SIDE[split]
    return [tuple(locs[3 * k : 3 * k + 3]) for k in range(len(sides)) if want is None or sides[k] == want]


def _index_key(file: Path, split_seed: int, test_fraction: float, max_rows: int | None) -> tuple:
    stat = Path(file).stat()
    return (Path(file).resolve(), stat.st_mtime_ns, stat.st_size, int(split_seed), float(test_fraction), max_rows)


#: Per file version, split_seed, test_fraction and max_rows: (offset, line, row index) triples and sides
#: (0 train, 1 test) of every row: 25 bytes a row, about 9 MB for all of ToolMind's 368,611 rows.
_INDEX: dict[tuple, tuple[array, bytearray]] = {}
_INDEX_FILES = 16
