"""Peak memory and time of loading ToolMind splits, on a synthetic file of ToolMind's size and shape.

    python benchmarks/toolmind_memory.py [--gib 3.9] [--old-gib 0.4] [--folder /tmp]

ToolMind is ~4 GB of JSONL (368,611 rows, SCHEMA.md); no real row is available offline, so this script
writes rows shaped like tests/data/toolmind's fixture (tools with long descriptions, a system prompt,
turn-level prefix rows of multi-turn conversations with tool results, ~20% plain-text final turns, a
few malformed rows) with lengths drawn from a log-normal around ToolMind's mean of ~11 KB a row. Each
measurement runs in a fresh process: rows, seconds and peak RSS (VmHWM of /proc/self/status) of

* new, test split: `load_toolmind(file, split="test")` (every row parsed for its group key, the test
  rows converted);
* new, train `limit=1000` in file order (`seed=None`) and shuffled (`seed=0`: a first pass indexes the
  file, then 1,000 rows are read at their offsets);
* old (optional, on a smaller file of `--old-gib`): the loader before streaming, every row of the file
  parsed and converted and kept (`read_jsonl` + `convert_rows`), then the split drawn from the list of
  all conversation groups. Its cost grows linearly with the file; the script prints the scaling.

The synthetic files are deleted at the end. Recorded output: benchmarks/toolmind_memory.cpu.txt.
"""

from __future__ import annotations

import argparse
import json
import random
import resource  # page size
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "data" / "toolmind" / "toolmind_fixture.jsonl"
GiB = 2**30
WORDS = "the a tool call returns value of for with list user data query result item field name type".split()


_FILLER = " ".join(random.Random(0).choice(WORDS) for _ in range(200_000))  # ~1 MB of words


def _text(rng: random.Random, n_chars: int) -> str:
    """`n_chars` of words (at most ~1 MB) from a random place of a fixed filler text."""
    start = rng.randrange(len(_FILLER) - min(n_chars, len(_FILLER) // 2))
    return _FILLER[start : start + n_chars]


def _conversation(rng: random.Random, base: dict, conv_id: int, mean_bytes: float) -> list[dict]:
    """The turn-level rows of one synthetic conversation built on a fixture row (1 to 4 prefix rows)."""
    size = rng.lognormvariate(0, 0.8) * mean_bytes / 1.4  # per row; lognormal mean is exp(0.32) ~ 1.4
    tools = json.loads(json.dumps(base["tools"]))
    for tool in tools:
        fn = tool.get("function", tool)
        fn = fn.get("function", fn) if isinstance(fn, dict) else fn
        fn["description"] = f"{fn.get('description', '')} {_text(rng, int(size * 0.4 / len(tools)))}"
    *history, target = base["conversations"]
    first_user = next(m for m in history if m["role"] == "user")
    user = {"role": "user", "content": f"[conversation {conv_id}] {first_user['content']}"}
    system = {"role": "system", "content": _text(rng, int(size * 0.2))}
    rows, turns = [], [system, user]
    for _ in range(rng.randint(1, 4)):
        text_reply = rng.random() < 0.2
        final = {"role": "assistant", "content": f"<think>\n{_text(rng, int(size * 0.05))}\n</think>"}
        if text_reply:
            final["content"] += "\n\n" + _text(rng, 200)
        else:
            final["tool_calls"] = target["tool_calls"]
        rows.append({"conversations": turns + [final], "tools": tools})
        result = {"role": "tool", "content": {"result": _text(rng, int(size * 0.3))}}
        turns = turns + [final] + ([] if text_reply else [result]) + [{"role": "user", "content": _text(rng, 300)}]
    return rows


def write_synthetic(path: Path, n_bytes: int, seed: int = 0, mean_bytes: float = 11_000) -> int:
    """Write ~`n_bytes` of ToolMind-shaped JSONL rows to `path`; returns the number of rows."""
    rng = random.Random(seed)
    bases = [json.loads(line) for line in FIXTURE.read_text().splitlines() if line.strip()]
    bases = [b for b in bases if b["conversations"][-1].get("tool_calls")]
    written = n_rows = conv_id = 0
    with open(path, "w", encoding="utf-8") as f:
        while written < n_bytes:
            conv_id += 1
            for row in _conversation(rng, rng.choice(bases), conv_id, mean_bytes):
                if rng.random() < 0.001:  # a malformed row: ends with a user turn (a counted skip)
                    row = {**row, "conversations": row["conversations"][:-1] + [{"role": "user", "content": "?"}]}
                line = json.dumps(row, ensure_ascii=False) + "\n"
                f.write(line)
                written += len(line.encode())
                n_rows += 1
    return n_rows


def _peak_rss() -> int:
    """Peak RSS of this process's memory since exec (or the last `_reset_peak`): VmHWM, in bytes.

    Not `ru_maxrss`: Linux keeps the parent's peak in it across fork and exec, so a child started by a
    large process (pytest) would report its parent's peak.
    """
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def _reset_peak() -> None:
    """Start VmHWM again from the current RSS (Linux >= 4.0), so import-time peaks are not counted."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _current_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _old_load(file: Path, split: str, test_fraction: float = 0.1, split_seed: int = 0) -> list:
    """The loader before streaming: every row parsed, converted and kept, then the split over all groups."""
    import hashlib
    from functools import partial

    from art_lib.data import convert_rows, read_jsonl
    from art_lib.tasks.toolmind_split import group_key
    from art_lib.tasks.tools import _toolmind_example

    convert = partial(_toolmind_example, file=file, include_text_targets=False)
    rows = read_jsonl(file)
    groups = {r.line: hashlib.sha1(group_key(r)).hexdigest() for r in rows}
    done = convert_rows(rows, convert, file, skip_bad=True)
    by_id = {f"toolmind-{file.stem}-{i:06d}": groups[r.line] for i, r in enumerate(rows)}
    unique = sorted(set(groups.values()))
    random.Random(split_seed).shuffle(unique)
    test = set(unique[: int(round(len(unique) * test_fraction))])
    return [ex for ex in done.examples if (by_id[ex["id"]] in test) == (split == "test")]


def measure(mode: str, file: Path) -> dict:
    """Run one load in this process: rows, seconds, peak RSS and RSS before loading (after imports)."""
    import warnings

    from art_lib.tasks.tools import load_toolmind, tool_call_target

    warnings.simplefilter("ignore")
    tool_call_target({"id": "warm", "answer": "[]"})  # import transformers' template code before measuring
    before = _current_rss()
    _reset_peak()
    t = time.perf_counter()
    if mode == "old-test":
        out = _old_load(file, "test")
    elif mode == "new-test":
        out = load_toolmind(file, split="test")
    elif mode == "new-train-1000":
        out = load_toolmind(file, split="train", limit=1000)
    elif mode == "new-train-1000-seed0":
        out = load_toolmind(file, split="train", limit=1000, seed=0)
    else:
        raise ValueError(f"unknown mode {mode!r}")
    return {
        "mode": mode,
        "rows": len(out),
        "seconds": round(time.perf_counter() - t, 1),
        "peak_rss_gib": round(_peak_rss() / GiB, 3),
        "rss_before_gib": round(before / GiB, 3),
    }


def _run(mode: str, file: Path) -> dict:
    cmd = [sys.executable, __file__, "--measure", mode, str(file)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    result = json.loads(out.strip().splitlines()[-1])
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gib", type=float, default=3.9, help="size of the full-size synthetic file")
    parser.add_argument("--old-gib", type=float, default=0.4, help="size of the file the old loader reads (0: skip)")
    parser.add_argument("--folder", default=None, help="where to write the synthetic files (default: a temp dir)")
    parser.add_argument("--measure", nargs=2, metavar=("MODE", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure[0], Path(args.measure[1]))))
        return
    with tempfile.TemporaryDirectory(dir=args.folder, prefix="toolmind_memory_") as tmp:
        for gib, modes in ((args.old_gib, ("old-test", "new-test")), (args.gib, ("new-test", "new-train-1000"))):
            if not gib:
                continue
            file = Path(tmp) / f"synthetic-{gib}GiB.jsonl"
            t = time.perf_counter()
            n = write_synthetic(file, int(gib * GiB))
            size = file.stat().st_size
            print(f"# {file.name}: {n} rows, {size / GiB:.2f} GiB, written in {time.perf_counter() - t:.0f} s")
            for mode in modes + (("new-train-1000-seed0",) if gib == args.gib else ()):
                _run(mode, file)
            file.unlink()


if __name__ == "__main__":
    main()
