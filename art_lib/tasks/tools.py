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

from ..data import Example, finalize, looks_local, read_jsonl
from ..registry import Benchmark, register_benchmark
from ..rewards import decode_arguments
from .tool_calls import normalize_tool, parse_tool_calls
from .tool_check import bfcl_function_to_tool, bfcl_gold_calls, score_tool_call

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
    rows = read_jsonl(qfile)
    answers: dict[str, list] = {}
    if category != "irrelevance":
        afile = folder / "possible_answer" / qfile.name
        if not afile.is_file():
            raise FileNotFoundError(f"BFCL possible-answer file not found at {afile}: {guidance}")
        answers = {r["id"]: r["ground_truth"] for r in read_jsonl(afile)}
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
    return finalize(examples, limit, seed)


# --------------------------------------------------------------------------- #
# ToolMind
# --------------------------------------------------------------------------- #


def _norm_calls(tool_calls: Any) -> list[dict]:
    calls = []
    for call in tool_calls or []:
        if not isinstance(call, dict):
            continue
        fn = call.get("function") if isinstance(call.get("function"), dict) else call
        calls.append({"name": fn.get("name"), "arguments": decode_arguments(fn.get("arguments"))})
    return calls


def _norm_message(msg: dict) -> dict:
    role = msg.get("role")
    content = msg.get("content")
    if content is not None and not isinstance(content, str):
        content = json.dumps(content, ensure_ascii=False)
    out = {"role": role, "content": content or ""}
    if role == "assistant" and msg.get("tool_calls"):
        out["tool_calls"] = [{"type": "function", "function": c} for c in _norm_calls(msg["tool_calls"])]
    return out


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


def _system_first(messages: list[dict]) -> list[dict]:
    """All system messages merged into one leading message (chat templates reject a system turn elsewhere)."""
    system = [m["content"] for m in messages if m.get("role") == "system" and m.get("content")]
    rest = [m for m in messages if m.get("role") != "system"]
    return ([{"role": "system", "content": "\n\n".join(system)}] if system else []) + rest


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


@functools.lru_cache(maxsize=16)
def _toolmind_file(
    file: Path, mtime_ns: int, max_rows: int | None, include_text_targets: bool
) -> tuple[list[Example], list[str]]:
    """(examples, conversation-group hashes) of one ToolMind file, in file order."""
    examples: list[Example] = []
    groups: list[str] = []
    for i, row in enumerate(read_jsonl(file, max_rows=max_rows)):
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
    return finalize(examples, limit, seed)


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
