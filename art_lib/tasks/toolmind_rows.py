"""ToolMind rows, checked and normalised: the conversation, the calls of its assistant turns and its tools.

Each function takes a row from `art_lib.data.read_jsonl` and raises `DataError` naming file, line and field
(`row.bad`) for a value the loader must not keep: `art_lib.tasks.tools.load_toolmind` skips such rows,
counted and reported, instead of keeping a wrong example (a call to a tool the prompt never offers, a
conversation the chat template cannot render).
"""

from __future__ import annotations

import json
from typing import Any

from ..rewards import decode_arguments
from .tool_calls import normalize_tool

__all__ = ["TOOLMIND_ROLES", "norm_calls", "norm_message", "system_first", "toolmind_tools", "toolmind_conversation"]

#: Message roles of ToolMind conversations (SCHEMA.md); the chat template renders no other.
TOOLMIND_ROLES = ("system", "user", "assistant", "tool")


def norm_calls(tool_calls: Any, row: dict, key: str) -> list[dict]:
    """`[{"name", "arguments"}]` of a message's `tool_calls` (OpenAI-wrapped or flat); a malformed call: DataError."""
    if tool_calls is None:
        return []
    if not isinstance(tool_calls, list):
        raise row.bad(key, f"must be a list of calls, got {type(tool_calls).__name__}")
    calls = []
    for j, call in enumerate(tool_calls):
        fn = (call["function"] if isinstance(call.get("function"), dict) else call) if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise row.bad(f"{key}[{j}]", f"must be a call with a function name, got {str(call)[:80]!r}")
        arguments = decode_arguments(fn.get("arguments"))
        if not isinstance(arguments, dict):  # the chat template renders arguments as a mapping
            raise row.bad(f"{key}[{j}].arguments", f"must be a JSON object, got {str(fn.get('arguments'))[:80]!r}")
        calls.append({"name": fn["name"], "arguments": arguments})
    return calls


def norm_message(msg: dict, calls: list[dict]) -> dict:
    """A message as the chat template takes it: text content (raw JSON serialised), its parsed `calls`."""
    role = msg.get("role")
    content = msg.get("content")
    if content is not None and not isinstance(content, str):
        content = json.dumps(content, ensure_ascii=False)
    out = {"role": role, "content": content or ""}
    if role == "assistant" and calls:
        out["tool_calls"] = [{"type": "function", "function": c} for c in calls]
    return out


def system_first(messages: list[dict]) -> list[dict]:
    """All system messages merged into one leading message (chat templates reject a system turn elsewhere)."""
    system = [m["content"] for m in messages if m.get("role") == "system" and m.get("content")]
    rest = [m for m in messages if m.get("role") != "system"]
    return ([{"role": "system", "content": "\n\n".join(system)}] if system else []) + rest


def toolmind_tools(row: dict) -> tuple[list, list[dict]]:
    """(raw tools as parsed, normalised JSON-schema tools) of a row; malformed JSON or a nameless tool: DataError."""
    raw = row.get("tools")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else []
        except ValueError as err:
            raise row.bad("tools", f"is a string that is not JSON ({err})") from None
    raw = [] if raw is None else raw
    if not isinstance(raw, list):
        raise row.bad("tools", f"must be a list of tools, got {type(raw).__name__}")
    tools = [normalize_tool(t) for t in raw]
    for k, tool in enumerate(tools):
        if tool is None:
            raise row.bad(f"tools[{k}]", f"has no function name: {str(raw[k])[:80]!r}")
    return raw, tools


def toolmind_conversation(row: dict) -> list[dict]:
    """The row's messages, checked: a list of message objects with known roles, ending with the assistant target."""
    conv = row["conversations"]
    if not isinstance(conv, list) or not conv:
        raise row.bad("conversations", f"must be a non-empty list of messages, got {str(conv)[:80]!r}")
    for k, msg in enumerate(conv):
        if not isinstance(msg, dict) or msg.get("role") not in TOOLMIND_ROLES:
            raise row.bad(
                f"conversations[{k}]", f"must be a message with a role in {TOOLMIND_ROLES}: {str(msg)[:80]!r}"
            )
    if conv[-1]["role"] != "assistant":
        raise row.bad(f"conversations[{len(conv) - 1}]", f"is a {conv[-1]['role']!r} turn, not the assistant target")
    return conv
