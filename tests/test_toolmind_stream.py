"""ToolMind is read one row at a time: only the named files, only the rows of the split asked for (and only up
to `limit`), with bounded memory; a row's side of the held-out split follows from its conversation group alone.
"""

from __future__ import annotations

import importlib.util
import json
import random
import subprocess
import sys
import warnings
from functools import partial
from pathlib import Path

import pytest

from art_lib.data import DataError, DataWarning, build_examples, read_jsonl
from art_lib.tasks.toolmind_split import row_side
from art_lib.tasks.tools import _toolmind_example, load_toolmind

ROOT = Path(__file__).resolve().parents[1]
TOOLMIND = ROOT / "tests" / "data" / "toolmind" / "toolmind_fixture.jsonl"
ROWS = [json.loads(line) for line in TOOLMIND.read_text().splitlines() if line.strip()]


def _ids(examples: list[dict]) -> list[str]:
    return [ex["id"] for ex in examples]


def _quiet(**kw) -> list[dict]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return load_toolmind(**kw)


def _whole_file(path: Path) -> list[tuple[dict, str]]:
    """(example, side) of every usable row, converted the pre-streaming way: the whole file read, then converted."""
    rows = read_jsonl(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        examples = build_examples(rows, partial(_toolmind_example, file=path, include_text_targets=False), path, True)
    side = {f"toolmind-{path.stem}-{i:06d}": row_side(row, 0, 0.25) for i, row in enumerate(rows)}
    return [(ex, side[ex["id"]]) for ex in examples]


def test_streamed_examples_are_the_whole_file_conversion_on_each_side():
    reference = _whole_file(TOOLMIND)
    assert _quiet(source=TOOLMIND, split="all") == [ex for ex, _ in reference]
    for split in ("train", "test"):
        got = _quiet(source=TOOLMIND, split=split, test_fraction=0.25)
        assert got == [ex for ex, side in reference if side == split], split
        assert got, split


def test_a_seeded_load_is_the_shuffled_split_and_a_limit_takes_its_first_rows(tmp_path):
    clean = tmp_path / "clean.jsonl"  # no row skipped or left out: seeded order = shuffling the examples
    clean.write_text("".join(json.dumps(r) + "\n" for r in ROWS if r["conversations"][-1].get("tool_calls")))
    everything = _quiet(source=clean, split="all")
    shuffled = list(everything)
    random.Random(7).shuffle(shuffled)
    assert _quiet(source=clean, split="all", seed=7) == shuffled
    for path in (clean, TOOLMIND):
        full = _quiet(source=path, split="train", seed=3, test_fraction=0.25)
        for k in (1, 4, len(full)):
            assert _quiet(source=path, split="train", seed=3, test_fraction=0.25, limit=k) == full[:k]


def test_a_rows_side_does_not_depend_on_the_other_files_loaded(tmp_path):
    """The pre-streaming split shuffled the list of every group loaded: adding a file moved rows across."""
    (tmp_path / "ToolACE-query.jsonl").write_text(TOOLMIND.read_text())
    other = [json.loads(json.dumps(r)) for r in ROWS]
    for n, row in enumerate(other):  # other conversations: new first user turns
        user = next(m for m in row["conversations"] if m["role"] == "user")
        user["content"] = f"({n}) {user['content']}"
    (tmp_path / "When2Call-query.jsonl").write_text("".join(json.dumps(r) + "\n" for r in other))
    for split_seed in range(4):
        kw = dict(split="test", test_fraction=0.3, split_seed=split_seed)
        alone = _ids(_quiet(source=tmp_path, subsets=["ToolACE-query"], **kw))
        both = _ids(_quiet(source=tmp_path, **kw))
        assert alone == [i for i in both if "ToolACE" in i], split_seed


def test_only_the_named_subsets_file_is_opened(tmp_path):
    (tmp_path / "ToolACE-query.jsonl").write_text(TOOLMIND.read_text())
    unreadable = tmp_path / "graphsyn.jsonl"
    unreadable.write_bytes(b"\xff\xfe not JSON, not UTF-8\n")  # root ignores file modes: bad bytes instead
    opened: list[str] = []
    recording = [True]

    def record(event, args):
        if recording[0] and event == "open" and args and isinstance(args[0], str | Path):
            opened.append(str(args[0]))

    sys.addaudithook(record)  # an audit hook cannot be removed: it records only while this test reads
    examples = _quiet(source=tmp_path, subsets=["ToolACE-query"], split="test", test_fraction=0.25)
    recording[0] = False
    opened_here = list(opened)
    assert examples and str(unreadable) not in opened_here
    assert str(tmp_path / "ToolACE-query.jsonl") in opened_here
    with pytest.raises(DataError, match=r"graphsyn.jsonl:1: not UTF-8"):
        _quiet(source=tmp_path, split="test", test_fraction=0.25)


def test_a_limit_in_file_order_stops_reading_the_file(tmp_path):
    path = tmp_path / "tail.jsonl"
    path.write_text(TOOLMIND.read_text() + "{broken\n")  # a fatal line after the rows a limit needs
    assert len(_quiet(source=path, split="all", limit=3)) == 3
    with pytest.raises(DataError, match=rf"{path}:19: invalid JSON"):
        _quiet(source=path, split="all")


def test_malformed_rows_are_counted_in_the_split_that_reads_them():
    counts = {}
    for split in ("train", "test"):
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            examples = load_toolmind(TOOLMIND, split=split, test_fraction=0.25)
        msgs = [str(w.message) for w in rec if issubclass(w.category, DataWarning)]
        counts[split] = len(msgs)
        for msg in msgs:  # rows read for this split: its examples, the row left out (if here), the skip
            assert f"skipped 1 of {len(examples) + 1}" in msg or f"skipped 1 of {len(examples) + 2}" in msg
            assert f"{TOOLMIND}:18: field 'conversations[0]'" in msg
    assert sorted(counts.values()) == [0, 1]  # the one malformed row is on one side


def _benchmark_script():
    spec = importlib.util.spec_from_file_location("toolmind_memory", ROOT / "benchmarks" / "toolmind_memory.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_loading_the_test_split_of_a_large_file_grows_memory_far_less_than_the_file(tmp_path):
    bench = _benchmark_script()
    path = tmp_path / "synthetic.jsonl"
    bench.write_synthetic(path, 40 * 2**20)
    size = path.stat().st_size
    cmd = [sys.executable, str(ROOT / "benchmarks" / "toolmind_memory.py"), "--measure", "new-test", str(path)]
    out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout.splitlines()[-1])
    growth = (out["peak_rss_gib"] - out["rss_before_gib"]) * 2**30
    assert out["rows"] > 100
    assert growth < size / 4, f"peak RSS grew by {growth / 2**20:.0f} MiB loading a {size / 2**20:.0f} MiB file"
