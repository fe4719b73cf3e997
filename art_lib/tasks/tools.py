"""Tool-calling benchmarks (BFCL, ToolMind): loaders, gold calls and the SFT target of a tool task.

Every example's `prompt` is the bare last user turn; `meta["tools"]` holds JSON-schema tools (rendered
by the chat template's own tool support), `meta["messages"]` the conversation before the prompt and
`answer` the gold calls as JSON `[{"name", "arguments"}]` (`"[]"`: no call expected). Calls are
parsed by `art_lib.tasks.tool_calls` and checked by `art_lib.tasks.tool_check`. `register()` adds
`toolmind`, `bfcl` and `bfcl_<category>` to `art_lib.registry`.
"""

from __future__ import annotations

import functools
import json
import os
import random
import re
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from ..data import Converted, DataError, Example, build_examples, finalize, index_rows, looks_local, read_jsonl
from ..registry import Benchmark, register_benchmark
from .tool_calls import parse_tool_calls
from .tool_check import bfcl_function_to_tool, bfcl_gold_calls, score_tool_call
from .toolmind_rows import norm_calls, norm_message, system_first, toolmind_conversation, toolmind_tools
from .toolmind_split import check_split, rows_at, split_locations, split_rows

__all__ = [
    "BFCL_CATEGORIES",
    "TOOLMIND_FILES",
    "load_bfcl",
    "load_toolmind",
    "bfcl_function_to_tool",
    "bfcl_gold_calls",
    "tool_call_target",
    "reference_chat_template",
    "tool_parse",
    "tool_score",
    "register",
]

BFCL_CATEGORIES = ("simple", "multiple", "parallel", "parallel_multiple", "irrelevance")
TOOLMIND_REPO = "Nanbeige/ToolMind"
TOOLMIND_REVISION = "8020ed1c03c367e4eb720ac3828ab4b0b95d8baf"
#: Every ToolMind file at TOOLMIND_REVISION (SCHEMA.md); `load_toolmind(subsets=[<stem>, ...])` picks some.
TOOLMIND_FILES = (
    "open_datasets/ToolACE-query.jsonl",
    "open_datasets/APIGen-MT-5k-query.jsonl",
    "open_datasets/BUTTONInstruct-query.jsonl",
    "open_datasets/When2Call-query.jsonl",
    "open_datasets/glaive-function-calling-v2-query.jsonl",
    "open_datasets/tau-train-query.jsonl",
    "open_datasets/xlam-function-calling-60k-query.jsonl",
    "graph_syn_datasets/graphsyn.jsonl",
)
BFCL_URL = (
    "https://github.com/ShishirPatil/gorilla/tree/main/berkeley-function-call-leaderboard/bfcl_eval/data"
    " (or `pip install bfcl-eval`, which ships them under bfcl_eval/data/)"
)


def _split_prompt(messages: list[dict]) -> tuple[str, list[dict], list[dict]] | None:
    """(last user turn, messages before it, messages after it) or None without a user turn."""
    idx = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=None)
    if idx is None:
        return None
    content = messages[idx].get("content")
    content = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    return content, messages[:idx], messages[idx + 1 :]


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

    `source`: the folder holding `BFCL_v4_<category>.json` and
    `possible_answer/` (`simple` reads `BFCL_v4_simple_python.json`; older
    `BFCL_v3_*` names work too); default: the data folder of an installed
    `bfcl-eval` package. `split` is accepted for API symmetry (BFCL is a
    test set). Per example: `meta["tools"]` (JSON-schema tools converted from
    the BFCL docs), `meta["functions"]` (the original docs),
    `meta["possible_answers"]` (BFCL ground truth, `[]` for irrelevance),
    `meta["category"]` and `meta["messages"]`. `answer` is the gold call
    list built from each parameter's first acceptable value (`"[]"` for
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
    answers: dict[str, list] = {}
    afile = None
    if category != "irrelevance":
        afile = folder / "possible_answer" / qfile.name
        if not afile.is_file():
            raise FileNotFoundError(f"BFCL possible-answer file not found at {afile}: {guidance}")
        answer_rows = index_rows(read_jsonl(afile, fields={"id": str, "ground_truth": list}), "id")
        answers = {key: row["ground_truth"] for key, row in answer_rows.items()}
    rows = read_jsonl(qfile, fields={"id": str, "question": list, "function": list})
    convert = partial(_bfcl_example, category=category, answers=answers, afile=afile)
    return finalize(build_examples(rows, convert, qfile), limit, seed, qfile)


def _bfcl_example(i: int, row: dict, category: str, answers: dict[str, list], afile: Path | None) -> Example:
    """One BFCL question as an example; a malformed field or a question without its answer is a DataError."""
    question, functions = row["question"], row["function"]
    if not all(isinstance(turn, list) and all(isinstance(m, dict) for m in turn) for turn in question):
        raise row.bad("question", f"must be a list of turns, each a list of messages, got {str(question)[:80]!r}")
    if not all(isinstance(f, dict) for f in functions):
        raise row.bad("function", f"must be a list of function objects, got {str(functions)[:80]!r}")
    split_prompt = _split_prompt([m for turn in question for m in turn])
    if split_prompt is None or not split_prompt[0].strip():
        raise row.bad("question", "has no non-empty user turn")
    prompt, before, after = split_prompt
    if category != "irrelevance" and row["id"] not in answers:
        raise row.bad("id", f"{row['id']!r} has no possible answer in {afile}")
    possible = answers.get(row["id"], [])
    return {
        "id": row["id"],
        "prompt": prompt,
        "answer": json.dumps(bfcl_gold_calls(possible, functions), ensure_ascii=False),
        "meta": {
            "tools": [bfcl_function_to_tool(f) for f in functions],
            "functions": functions,
            "possible_answers": possible,
            "category": category,
            "messages": before,
            "followup": after,
        },
    }


# --------------------------------------------------------------------------- #
# ToolMind
# --------------------------------------------------------------------------- #


def _toolmind_files(path: Path, subsets: list[str] | None) -> list[Path]:
    """The JSONL files of a ToolMind file or folder; with `subsets`, those whose stem (or name) is listed."""
    files = (
        sorted(p for p in path.rglob("*") if p.suffix in (".jsonl", ".json") and p.is_file())
        if path.is_dir()
        else [path]
    )
    if subsets is None:
        return files
    wanted = {_toolmind_stem(s) for s in subsets}
    found = [f for f in files if _toolmind_stem(f.name) in wanted]
    missing = wanted - {_toolmind_stem(f.name) for f in found}
    if missing:
        raise FileNotFoundError(
            f"ToolMind subsets {sorted(missing)} not found under {path} "
            f"(files there: {[f.name for f in files]}); known subsets: {list(TOOLMIND_FILES)}"
        )
    return found


def _toolmind_stem(name: str) -> str:
    """'open_datasets/ToolACE-query.jsonl', 'ToolACE-query.jsonl', 'ToolACE-query' -> 'ToolACE-query'."""
    return Path(name).name.removesuffix(".jsonl").removesuffix(".json")


@functools.cache
def reference_chat_template(family: str = "qwen3_5", size: str = "0.8B") -> str:
    """The published chat template shipped with the kit (art_lib/assets/<family>/<size>/chat_template.jinja)."""
    return (Path(__file__).resolve().parents[1] / "assets" / family / size / "chat_template.jinja").read_text()


@functools.lru_cache(maxsize=8)
def _generation_prefix(template: str) -> str:
    """A one-user-turn conversation plus the generation prompt (thinking off), rendered by `template`."""
    from transformers.utils.chat_template_utils import render_jinja_template

    out = render_jinja_template(
        [[{"role": "user", "content": "?"}]], chat_template=template, add_generation_prompt=True, enable_thinking=False
    )
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
    return full[len(prefix) :].removesuffix("\n").removesuffix("<|im_end|>")


#: Why `load_toolmind` leaves a row with a plain-text final turn out by default.
TEXT_TARGET_LEFT_OUT = "the final turn is text, not a tool call; include_text_targets=True keeps such rows"


def _toolmind_example(i: int, row: dict, file: Path, include_text_targets: bool) -> Example | str:
    """One ToolMind row as an example; a malformed row is a DataError."""
    conv = toolmind_conversation(row)
    calls = {k: norm_calls(m.get("tool_calls"), row, f"conversations[{k}].tool_calls") for k, m in enumerate(conv)}
    target = calls[len(conv) - 1]
    if not target and not include_text_targets:
        return TEXT_TARGET_LEFT_OUT
    _, tools = toolmind_tools(row)
    offered = {t["function"]["name"] for t in tools}
    for j, call in enumerate(target):
        if call["name"] not in offered:  # training it would teach a call the prompt never offers
            key = f"conversations[{len(conv) - 1}].tool_calls[{j}]"
            raise row.bad(key, f"calls {call['name']!r}, which the row's tools do not offer ({sorted(offered)[:8]})")
    user = max((k for k, m in enumerate(conv) if m["role"] == "user"), default=None)
    messages = [norm_message(m, calls[k]) for k, m in enumerate(conv[:-1])]
    if user is None or not messages[user]["content"].strip():
        raise row.bad("conversations", "has no non-empty user turn before the target")
    before, after = messages[:user], messages[user + 1 :]
    ex = {
        "id": f"toolmind-{file.stem}-{i:06d}",
        "prompt": messages[user]["content"],
        "answer": json.dumps(target, ensure_ascii=False),
        "meta": {
            "tools": tools,
            # A system turn after the prompt cannot move before it; its text joins the leading system turn.
            "messages": system_first(before + [m for m in after if m["role"] == "system"]),
            "followup": [m for m in after if m["role"] != "system"],
            "source_file": file.name,
        },
    }
    if target:
        ex["meta"]["target"] = tool_call_target(ex)
    return ex


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
    """ToolMind rows (`{"conversations": [...], "tools": [...]}`, see SCHEMA.md), read one row at a time.

    `source`: a JSONL file, a folder of them, or the hub repo id (then the
    `subsets` files of revision `TOOLMIND_REVISION` are downloaded).
    `subsets`: file stems to read (e.g. `["ToolACE-query"]`, see
    `TOOLMIND_FILES`); only their files are opened; None reads every file (all of ToolMind, ~4 GB).
    ToolMind has no test split: `split="test"` holds out the conversation
    groups (rows sharing tools and first user turn are turn-level prefixes of
    one conversation, so they stay on the same side) whose hash with
    `split_seed` falls below `test_fraction` (about that fraction of them),
    `split="train"` the rest (`art_lib.tasks.toolmind_split`). A row's side
    depends on its group, `split_seed` and `test_fraction` only: not on
    `seed`, so training seeds never move test rows into training, nor on which
    other files are loaded. `split="all"` keeps every row. `max_rows`: read only
    the first rows of each file.

    Only the rows of `split` are converted, and with a `limit` only until
    `limit` examples are made. `seed`: None keeps file order; an int shuffles
    the split's rows with `random.Random(seed)` before conversion (the same
    order as shuffling the examples whenever no row of the split is skipped
    or left out), then `limit` keeps the first usable ones. Memory: the
    examples returned plus 25 bytes a row for the file's split index (kept
    for the file's next load); no file is held whole.

    Target (`answer`): the final assistant message's tool call(s) as a JSON
    `[{"name", "arguments"}]`; rows whose final turn is plain text are dropped
    unless `include_text_targets` (then `answer="[]"`, i.e. "no call").
    `prompt` = the last user turn; `meta["messages"]` = the normalised turns
    before it (system messages merged into one first turn), `meta["followup"]`
    = assistant/tool turns between it and the target (to be appended after it);
    `meta["tools"]` = normalised JSON-schema tools; `meta["target"]` = the
    SFT target (`tool_call_target`, Qwen3.5's template), for call targets.
    ids: `toolmind-<file stem>-<row index>`.

    A malformed row (`art_lib.tasks.toolmind_rows`: tools that are not JSON, a malformed call, a target call
    to a tool the row does not offer, a conversation not ending with the assistant target) is skipped and
    counted: one `DataWarning` per file names the first few by file:line and field (counting the rows read
    for this split). With `split="all"` and no `limit`, a file without a usable row is a `DataError`; an
    empty result always is.
    """
    check_split(split, test_fraction)
    files = _toolmind_paths(source, subsets)
    convert = partial(_toolmind_example, include_text_targets=include_text_targets)
    done = {file: Converted([], source=str(file)) for file in files}
    want = None if limit is None else max(int(limit), 1)  # finalize turns limit <= 0 into no examples
    rows = _toolmind_rows(files, split, split_seed, test_fraction, max_rows, seed)
    examples, read_all = _convert_rows(rows, convert, done, want)
    if read_all and split == "all":
        for file, converted in done.items():
            if not converted.examples:
                raise DataError(f"{file}: no examples ({converted.summary() or 'no rows'})")
    for converted in done.values():
        converted.report()
    where = ", ".join(str(f) for f in files)
    if split != "all":
        where = f"split {split!r} (test_fraction={test_fraction}, split_seed={split_seed}) of {where}"
    if not examples:
        why = "; ".join(f"{file.name}: {c.summary()}" for file, c in done.items() if c.summary())
        raise DataError(f"{where}: no examples" + (f" ({why})" if why else ""))
    return finalize(examples, limit, None, where)


def _convert_rows(
    rows: Iterator[tuple[Path, Any]],
    convert: Callable[[int, Any, Path], Example | str],
    done: dict[Path, Converted],
    want: int | None,
) -> tuple[list[Example], bool]:
    """Convert `rows` ((file, row) pairs) in order until `want` examples are made (None: every row), recording
    each row in its file's `done` entry (an example, a skip with its `DataError`, or a left-out reason); the
    examples, and whether every row was read (`rows` is closed when `want` stops it early)."""
    examples: list[Example] = []
    for file, row in rows:
        try:
            ex = convert(row.index, row, file)
        except DataError as err:
            done[file].skipped.append(str(err))
            continue
        if isinstance(ex, str):
            done[file].left_out[ex] += 1
            continue
        done[file].examples.append(ex)
        examples.append(ex)
        if want is not None and len(examples) >= want:
            rows.close()
            return examples, False
    return examples, True


def _toolmind_rows(
    files: list[Path], split: str, split_seed: int, test_fraction: float, max_rows: int | None, seed: int | None
) -> Iterator[tuple[Path, Any]]:
    """(file, row) of each row of `split`: in file order, or shuffled with `random.Random(seed)`."""
    if seed is None:
        for file in files:
            yield from ((file, row) for row in split_rows(file, split, split_seed, test_fraction, max_rows))
        return
    where = [(f, loc) for f in files for loc in split_locations(f, split, split_seed, test_fraction, max_rows)]
    random.Random(seed).shuffle(where)
    yield from rows_at(where)


def _toolmind_paths(source: str | os.PathLike, subsets: list[str] | None) -> list[Path]:
    """The ToolMind files to read: local ones under `source`, or the `subsets` files downloaded from the hub."""
    guidance = (
        f"download ToolMind JSONL files (e.g. {TOOLMIND_FILES[0]}) from https://huggingface.co/datasets/"
        f"{TOOLMIND_REPO} (revision {TOOLMIND_REVISION}) and pass source=<path to a .jsonl or their folder>."
    )
    if looks_local(source):
        path = Path(source).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"ToolMind data not found at {path}: {guidance}")
        files = _toolmind_files(path, subsets)
    else:
        wanted = [
            f for f in TOOLMIND_FILES if subsets is None or _toolmind_stem(f) in {_toolmind_stem(s) for s in subsets}
        ]
        try:
            from huggingface_hub import hf_hub_download

            files = [
                Path(hf_hub_download(repo_id=str(source), repo_type="dataset", filename=f, revision=TOOLMIND_REVISION))
                for f in wanted
            ]
        except Exception as exc:  # noqa: BLE001
            raise FileNotFoundError(
                f"Could not download {wanted} of {source!r} from the Hugging Face hub "
                f"({type(exc).__name__}: {exc}). If you are offline: {guidance}"
            ) from exc
    if not files:
        raise FileNotFoundError(f"No .jsonl/.json ToolMind files in {source}: {guidance}")
    return files


# --------------------------------------------------------------------------- #
# Registration
# --------------------------------------------------------------------------- #


def tool_parse(completion: Any, example: dict) -> list[dict] | None:
    """What `tool_score` checks: the completion's calls, XML values typed with the example's tools."""
    return parse_tool_calls(completion, tools=(example.get("meta") or {}).get("tools"))


def tool_score(completion: Any, example: dict) -> float:
    """`score_tool_call` against the example's gold calls (or BFCL possible answers) and tools."""
    meta = example.get("meta") or {}
    return score_tool_call(completion, example["answer"], meta.get("possible_answers"), tools=meta.get("tools"))


def register() -> None:
    """Register `toolmind`, `bfcl` and `bfcl_<category>` (512 new tokens, as the authors' evaluation)."""
    toolmind_files = (
        f"ToolMind .jsonl files (any of {', '.join(TOOLMIND_FILES)}) from "
        f"https://huggingface.co/datasets/{TOOLMIND_REPO}"
    )
    bfcl_files = ("bfcl", f"BFCL_v4_<category>.json and possible_answer/ from {BFCL_URL}")
    register_benchmark(
        Benchmark(
            "toolmind", load_toolmind, tool_score, tool_parse, max_new_tokens=512, data=("toolmind", toolmind_files)
        ),
        replace=True,
    )
    register_benchmark(
        Benchmark("bfcl", load_bfcl, tool_score, tool_parse, max_new_tokens=512, data=bfcl_files), replace=True
    )
    for category in BFCL_CATEGORIES:
        aliases = ("bfcl_simple_python",) if category == "simple" else ()
        register_benchmark(
            Benchmark(
                f"bfcl_{category}",
                partial(load_bfcl, category=category),
                tool_score,
                tool_parse,
                max_new_tokens=512,
                aliases=aliases,
                data=bfcl_files,
            ),
            replace=True,
        )
