"""Tool-calling benchmarks (BFCL, ToolMind): loaders, gold calls and the SFT target of a tool task.

Every example's `prompt` is the bare last user turn; `meta["tools"]` holds JSON-schema tools (rendered
by the chat template's own tool support), `meta["messages"]` the conversation before the prompt and
`answer` the gold calls as JSON `[{"name", "arguments"}]` (`"[]"`: no call expected). Calls are
parsed by `art_lib.tasks.tool_calls` and checked by `art_lib.tasks.tool_check`. `register()` adds
`toolmind`, `bfcl` and `bfcl_<category>` to `art_lib.registry`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import random
import re
from functools import partial
from pathlib import Path
from typing import Any

from ..data import Converted, Example, build_examples, convert_rows, finalize, index_rows, looks_local, read_jsonl
from ..registry import Benchmark, register_benchmark
from .tool_calls import parse_tool_calls
from .tool_check import bfcl_function_to_tool, bfcl_gold_calls, score_tool_call
from .toolmind_rows import norm_calls, norm_message, system_first, toolmind_conversation, toolmind_tools

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


def _toolmind_example(i: int, row: dict, file: Path, include_text_targets: bool, groups: dict) -> Example | str:
    """One ToolMind row as an example (its conversation group into `groups`); a malformed row is a DataError."""
    conv = toolmind_conversation(row)
    calls = {k: norm_calls(m.get("tool_calls"), row, f"conversations[{k}].tool_calls") for k, m in enumerate(conv)}
    target = calls[len(conv) - 1]
    if not target and not include_text_targets:
        return TEXT_TARGET_LEFT_OUT
    raw_tools, tools = toolmind_tools(row)
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
    first_user = next(m.get("content") for m in conv if m["role"] == "user")
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
    groups[ex["id"]] = hashlib.sha1(
        json.dumps([raw_tools, first_user], sort_keys=True, ensure_ascii=False, default=str).encode()
    ).hexdigest()
    return ex


@functools.lru_cache(maxsize=16)
def _toolmind_file(
    file: Path, mtime_ns: int, max_rows: int | None, include_text_targets: bool
) -> tuple[Converted, dict[str, str]]:
    """(examples with the rows skipped as malformed, conversation-group hash per id) of one ToolMind file."""
    groups: dict[str, str] = {}
    convert = partial(_toolmind_example, file=file, include_text_targets=include_text_targets, groups=groups)
    return convert_rows(read_jsonl(file, max_rows=max_rows), convert, file, skip_bad=True), groups


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
    """ToolMind rows (`{"conversations": [...], "tools": [...]}`, see SCHEMA.md).

    `source`: a JSONL file, a folder of them, or the hub repo id (then the
    `subsets` files of revision `TOOLMIND_REVISION` are downloaded).
    `subsets`: file stems to read (e.g. `["ToolACE-query"]`, see
    `TOOLMIND_FILES`); None reads every file (all of ToolMind, ~4 GB).
    ToolMind has no test split: a held-out `split="test"` (`test_fraction`
    of the conversations) and `split="train"` (the rest) are drawn with
    `random.Random(split_seed)` over conversation groups (rows sharing tools
    and first user turn are turn-level prefixes of one conversation, so they
    stay on the same side). `split_seed` is fixed by default and independent
    of `seed` (which, as for every loader, only shuffles before `limit`), so
    training seeds never move test rows into training. `split="all"` keeps every row.

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
    counted: one `DataWarning` per file names the first few by file:line and field. A file without a usable
    row, or an empty split, is a `DataError`.
    """
    guidance = (
        f"download ToolMind JSONL files (e.g. {TOOLMIND_FILES[0]}) from https://huggingface.co/datasets/"
        f"{TOOLMIND_REPO} (revision {TOOLMIND_REVISION}) and pass source=<path to a .jsonl or their folder>."
    )
    if split not in ("train", "test", "all"):
        raise ValueError(f"ToolMind split must be 'train', 'test' or 'all', got {split!r}")
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

    examples: list[Example] = []
    groups: list[str] = []
    for file in files:
        # Parsed once per file and process (a notebook loads the same split for every arm); copies go out.
        done, by_id = _toolmind_file(file.resolve(), file.stat().st_mtime_ns, max_rows, include_text_targets)
        examples += [dict(ex, meta=dict(ex["meta"])) for ex in done.report()]
        groups += [by_id[ex["id"]] for ex in done.examples]
    source = ", ".join(str(f) for f in files)
    if split != "all":
        unique = sorted(set(groups))
        random.Random(split_seed).shuffle(unique)
        n_test = int(round(len(unique) * float(test_fraction)))
        if len(unique) > 1 and test_fraction > 0:
            n_test = min(max(n_test, 1), len(unique) - 1)
        test_groups = set(unique[:n_test])
        want_test = split == "test"
        examples = [ex for ex, g in zip(examples, groups) if (g in test_groups) == want_test]
        source = f"split {split!r} ({len(unique)} conversation groups, test_fraction={test_fraction}) of {source}"
    return finalize(examples, limit, seed, source)


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
