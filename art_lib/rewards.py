"""What every scorer reads first: the text of a completion, its answer part, and the scorer of a benchmark.

A completion reaches a scorer as a string, `None`, bytes, a chat message (an OpenAI-style assistant
message whose `tool_calls` are rendered back into `<tool_call>` blocks by `render_tool_calls`) or a
list of them (TRL's conversational form, the last message being the answer). `completion_text` turns
any of these into text and `strip_thinking` keeps only the answer part of it: the text after the last
`</think>` (so `<think>...</think>` blocks and, in thinking mode, the preamble are dropped), cut at an
unclosed `<think>` (generation stopped while thinking). `answer_line` is the rest of the line after the
last `Answer:`, the line the maths and multiple-choice parsers read.

The scorers themselves live with their benchmark family (`art_lib.tasks`); `get_scorer` looks one up
in `art_lib.registry`. Scorers never raise on model output, but they do raise on the kit's own bugs
(a malformed gold answer, an example of the wrong type): they catch only what model output can cause.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from .registry import get_benchmark

__all__ = ["completion_text", "strip_thinking", "decode_arguments", "render_tool_calls", "answer_line", "get_scorer"]


def decode_arguments(args: Any) -> Any:
    """Tool-call arguments as a value: a JSON string decoded (blank: `{}`), None -> `{}`, else as given.

    Text that is not JSON stays a string, for the scorer to reject.
    """
    if args is None:
        return {}
    if isinstance(args, str):
        try:
            return json.loads(args) if args.strip() else {}
        except (ValueError, RecursionError):  # not JSON, too deep, or an integer past Python's digit limit
            return args
    return args


def render_tool_calls(calls: Any) -> str:
    """OpenAI-style `tool_calls` (or bare `{"name", "arguments"}` calls) as Qwen's `<tool_call>` blocks.

    A server run with a tool parser (vLLM `--enable-auto-tool-choice`) returns calls in `tool_calls`
    instead of the text; rendered back, the same parser reads both forms.
    """
    text = ""
    for call in calls if isinstance(calls, list) else []:
        fn = call.get("function", call) if isinstance(call, dict) else {}
        fn = fn if isinstance(fn, dict) else {}
        block = json.dumps(
            {"name": fn.get("name"), "arguments": decode_arguments(fn.get("arguments"))},
            ensure_ascii=False,
            default=str,
        )
        text += f"\n<tool_call>\n{block}\n</tool_call>"
    return text


def completion_text(completion: Any) -> str:
    """Text of one completion: str as is; None -> ""; bytes decoded; chat message(s) -> content + tool calls."""
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, bytes):
        return completion.decode("utf-8", errors="replace")
    if isinstance(completion, (list, tuple)):
        return completion_text(completion[-1]) if completion else ""
    if isinstance(completion, dict):
        content = completion.get("content")
        if not isinstance(content, str):
            content = "" if content is None else json.dumps(content, ensure_ascii=False, default=str)
        return content + render_tool_calls(completion.get("tool_calls"))
    try:
        return str(completion)
    except ValueError:  # an int past Python's digit limit for str()
        return ""


def strip_thinking(text: Any) -> str:
    """The answer part of a completion: after the last `</think>`, cut at an unclosed `<think>`; linear time."""
    text = completion_text(text)
    end = text.rfind("</think>")
    if end != -1:
        text = text[end + len("</think>") :]
    start = text.find("<think>")
    if start != -1:
        text = text[:start]
    return text


_ANSWER_MARK = re.compile(r"answer\s*+(?:\*\*|__)?+\s*+:", re.IGNORECASE)


def answer_line(text: Any) -> str | None:
    """The rest of the line after the last `Answer:` of the answer part (`**Answer:**` too), or None."""
    body = strip_thinking(text)
    marks = list(_ANSWER_MARK.finditer(body))
    return body[marks[-1].end() :].split("\n", 1)[0] if marks else None


def get_scorer(benchmark_name: str) -> Callable[[Any, dict], float]:
    """`scorer(completion, example) -> float` of a registered benchmark; unknown name -> ValueError."""
    return get_benchmark(benchmark_name).score
