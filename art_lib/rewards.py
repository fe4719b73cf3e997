"""Scorers and training rewards for the ART benchmarks.

Every public scorer takes raw model output and **never raises** on it: any
string (empty, huge, unicode, markup), ``None``, a chat-message dict/list (TRL's
conversational completions) or any other object gives a score, not an error.

Maths (GSM8K, SVAMP)
    :func:`extract_answer` reads the value after the last ``Answer:`` line
    (strict) or the last number in the text (lenient fallback);
    :func:`score_math` compares it numerically with the gold answer;
    :func:`math_reward` is the batched training reward (optionally shaped).
Multiple choice (GPQA)
    :func:`score_choice` reads the letter after the last ``Answer:``.
Tool calls (ToolMind, BFCL)
    :func:`parse_tool_calls` parses Qwen's ``<tool_call>{json}</tool_call>``
    blocks and Qwen3.5's XML form; :func:`score_tool_call` checks them against
    a gold call list or BFCL possible answers (rules documented there).
:func:`get_scorer` maps a benchmark name of :mod:`art_lib.data` to a
``scorer(completion, example) -> float``.

Reasoning is ignored by every scorer: only the text after the last
``</think>`` counts (this drops ``<think>...</think>`` blocks and, in thinking
mode where the chat template already opened the block, the whole preamble), and
an unclosed ``<think>`` (generation cut off while thinking) drops everything
after it (:func:`strip_thinking`).
"""

from __future__ import annotations

import ast
import json
import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Iterable

__all__ = [
    "strip_thinking",
    "normalize_number",
    "extract_answer",
    "numeric_equal",
    "score_math",
    "math_reward",
    "SHAPED_FORMAT_CREDIT",
    "extract_choice",
    "score_choice",
    "parse_tool_calls",
    "standardize_string",
    "score_tool_call",
    "get_scorer",
]

# --------------------------------------------------------------------------- #
# Shared helpers
# --------------------------------------------------------------------------- #

def _completion_text(completion: Any) -> str:
    """Text of one completion: str as is; None -> ""; chat message(s) -> content.

    Accepts TRL's conversational form (a list of ``{"role", "content"}`` dicts,
    the last one being the answer) and an assistant message carrying
    OpenAI-style ``tool_calls`` (rendered back into ``<tool_call>`` blocks).
    """
    try:
        if completion is None:
            return ""
        if isinstance(completion, str):
            return completion
        if isinstance(completion, bytes):
            return completion.decode("utf-8", errors="replace")
        if isinstance(completion, (list, tuple)):
            if not completion:
                return ""
            return _completion_text(completion[-1])
        if isinstance(completion, dict):
            text = completion.get("content")
            text = text if isinstance(text, str) else ("" if text is None else str(text))
            for call in completion.get("tool_calls") or []:
                fn = call.get("function", call) if isinstance(call, dict) else {}
                args = fn.get("arguments", {})
                if isinstance(args, str):
                    try:
                        args = json.loads(args)
                    except ValueError:
                        pass
                block = json.dumps({"name": fn.get("name"), "arguments": args}, ensure_ascii=False)
                text += f"\n<tool_call>\n{block}\n</tool_call>"
            return text
        return str(completion)
    except Exception:  # noqa: BLE001 - scorers never raise on model output
        return ""


def strip_thinking(text: Any) -> str:
    """The answer part of a completion: the text after the last ``</think>``
    (reasoning blocks and a thinking-mode preamble dropped), cut at an unclosed
    ``<think>`` (generation stopped while thinking). Linear time."""
    text = _completion_text(text)
    end = text.rfind("</think>")
    if end != -1:
        text = text[end + len("</think>"):]
    start = text.find("<think>")
    if start != -1:
        text = text[:start]
    return text


# --------------------------------------------------------------------------- #
# Numbers
# --------------------------------------------------------------------------- #

_MINUS = "-\u2212\u2013"  # hyphen-minus, unicode minus, en dash
_CURRENCY = "$\u20ac\u00a3\u00a5"  # $ € £ ¥
# Digits with optional thousands commas (``1,080``), optional decimals, or ``.5``;
# never followed by more digits/comma-digits (so ``1,08`` is not read as ``1``).
_NUM_CORE = r"(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?![\d]|,\d)"
_NUMBER = re.compile(
    rf"(?P<sign>[{_MINUS}])?\s?(?:[{_CURRENCY}]\s?(?P<sign2>[{_MINUS}])?)?(?P<num>{_NUM_CORE})"
    rf"(?:\s?/\s?(?P<den>\d+(?:\.\d+)?)(?![\d]))?",
    re.ASCII,
)
# Lenient search: a sign only counts when not glued to a preceding word/number ("3-4").
_LENIENT_NUMBER = re.compile(
    rf"(?:(?<![\w)\]])(?P<sign>[{_MINUS}]))?(?:[{_CURRENCY}](?P<sign2>[{_MINUS}])?)?"
    rf"(?<![\d.,])(?P<num>{_NUM_CORE})(?:/(?P<den>\d+)(?![\d]))?",
    re.ASCII,
)


def _to_decimal(x: Any) -> Decimal | None:
    """Parse a number (str/int/float/Decimal) into a finite Decimal, else None."""
    try:
        if x is None or isinstance(x, bool):
            return None
        if isinstance(x, Decimal):
            d = x
        elif isinstance(x, int):
            d = Decimal(x)
        elif isinstance(x, float):
            if not math.isfinite(x):
                return None
            d = Decimal(repr(x))
        else:
            s = str(x).strip()
            if not s or len(s) > 200:
                return None
            s = s.replace("\u2212", "-").replace("\u2013", "-")
            s = s.strip().rstrip(".").strip()
            s = s.strip("*` ")
            if s.endswith("%"):
                s = s[:-1].strip()
            neg = False
            if s[:1] in "-+":
                neg = s[0] == "-"
                s = s[1:].strip()
            s = s.lstrip(_CURRENCY).strip()
            if s[:1] in "-+":
                neg = neg != (s[0] == "-")
                s = s[1:].strip()
            m = re.fullmatch(rf"({_NUM_CORE})(?:\s*/\s*(\d+(?:\.\d+)?))?", s, re.ASCII)
            if not m:
                return None
            d = Decimal(m.group(1).replace(",", ""))
            if m.group(2) is not None:
                den = Decimal(m.group(2))
                if den == 0:
                    return None
                d = d / den
            if neg:
                d = -d
        if not d.is_finite():
            return None
        return d
    except (InvalidOperation, ValueError, TypeError, ArithmeticError):
        return None


def _format_decimal(d: Decimal) -> str:
    if d == d.to_integral_value():
        return str(int(d))
    s = format(d.normalize(), "f")
    return "0" if s in ("-0", "0") else s


def normalize_number(x: Any) -> str | None:
    """Canonical string of a number, or None if ``x`` is not one.

    Handles thousands commas (``"1,080"``), ``$``, ``%``, a trailing period,
    negatives (also the unicode minus), decimals (``"8.0"`` -> ``"8"``,
    ``".5"`` -> ``"0.5"``, ``"3.50"`` -> ``"3.5"``) and simple fractions
    (``"1/2"`` -> ``"0.5"``). Floats are read through ``repr`` (no binary noise).
    Only ASCII digits count.
    """
    d = _to_decimal(x)
    return None if d is None else _format_decimal(d)


def _match_to_str(m: re.Match) -> str | None:
    neg = bool(m.group("sign")) != bool(m.group("sign2"))
    num = m.group("num")
    den = m.group("den")
    text = ("-" if neg else "") + num + (f"/{den}" if den else "")
    return normalize_number(text)


_ANSWER_MARK = re.compile(r"answer\s*+(?:\*\*|__)?+\s*+:", re.IGNORECASE)
# Decorations allowed between "Answer:" and the number in strict mode (same line only).
_STRICT_PREFIX = re.compile(
    r"[ \t*_`]*(?:\\\(|\\\[|\$\$|\$(?=\s*\\))?[ \t]*(?:\\boxed\s*\{|\\text\s*\{|\\mathbf\s*\{)?[ \t*_`]*"
)


def extract_answer(text: Any, strict: bool = True) -> str | None:
    """The normalised numeric answer of a completion, or None.

    strict=True: the number right after the LAST ``Answer:`` (case-insensitive;
    ``**Answer:**``, ``**Answer**:``, ``Final answer:`` all work), on the same
    line, allowing only markup before it (spaces, ``**``, ``$``, ``\\boxed{``);
    anything after the number (units, ``.``, ``%``, prose) is ignored. A number
    on the next line is NOT read (``"Answer:\\n42"`` -> None).

    strict=False (lenient): the strict value if there is one, otherwise the last
    number anywhere in the text.
    """
    try:
        body = strip_thinking(text)
        marks = list(_ANSWER_MARK.finditer(body))
        if marks:
            rest = body[marks[-1].end():]
            line = rest.split("\n", 1)[0]
            pre = _STRICT_PREFIX.match(line)
            m = _NUMBER.match(line, pre.end() if pre else 0)
            if m is not None:
                value = _match_to_str(m)
                if value is not None:
                    return value
        if strict:
            return None
        last = None
        for m in _LENIENT_NUMBER.finditer(body):
            value = _match_to_str(m)
            if value is not None:
                last = value
        return last
    except Exception:  # noqa: BLE001
        return None


def numeric_equal(a: Any, b: Any, tol: float = 1e-6) -> bool:
    """True if ``a`` and ``b`` parse as numbers within ``tol``.

    The tolerance is absolute for |values| <= 1 and relative above
    (``|a-b| <= tol * max(1, |a|, |b|)``). Unparseable input -> False.
    """
    try:
        x, y = _to_decimal(a), _to_decimal(b)
        if x is None or y is None:
            return False
        scale = max(Decimal(1), abs(x), abs(y))
        return abs(x - y) <= Decimal(str(tol)) * scale
    except Exception:  # noqa: BLE001
        return False


def score_math(completion: Any, answer: Any, strict: bool = True) -> float:
    """1.0 if the extracted answer equals the gold ``answer`` numerically, else 0.0."""
    pred = extract_answer(completion, strict=strict)
    return 1.0 if pred is not None and numeric_equal(pred, answer) else 0.0


#: Partial credit of the shaped maths reward for a well-formatted wrong answer.
SHAPED_FORMAT_CREDIT = 0.1


def math_reward(
    completions: Iterable[Any],
    answers: Iterable[Any] | None = None,
    shaped: bool = False,
    strict: bool = True,
    **kwargs: Any,
) -> list[float]:
    """Batched maths reward (TRL reward-function compatible).

    ``answers`` may also come as the keyword ``answer`` (TRL passes dataset
    columns as keyword arguments). Unshaped: :func:`score_math` per item.

    ``shaped=True`` is **our shaped reward (the authors' exact shaping is not
    public)**: 1.0 correct, :data:`SHAPED_FORMAT_CREDIT` (0.1) for a
    well-formatted but wrong strict ``Answer: <number>`` line, 0.0 otherwise.
    """
    if answers is None:
        answers = kwargs.get("answer", kwargs.get("answers", []))
    completions = list(completions) if completions is not None else []
    answers = list(answers) if answers is not None else []
    out: list[float] = []
    for i, comp in enumerate(completions):
        gold = answers[i] if i < len(answers) else None
        score = score_math(comp, gold, strict=strict)
        if shaped and score == 0.0 and extract_answer(comp, strict=True) is not None:
            score = SHAPED_FORMAT_CREDIT
        out.append(score)
    return out


# --------------------------------------------------------------------------- #
# Multiple choice
# --------------------------------------------------------------------------- #

_CHOICE = re.compile(r"[ \t*_`$(\[{]*+(?:\\boxed\s*+\{|\\text\s*+\{)?+[ \t*_`(\[{]*+([A-D])(?![A-Za-z0-9])")


def extract_choice(text: Any, letters: str = "ABCD") -> str | None:
    """The letter (A-D, upper case) right after the last ``Answer:``, or None."""
    try:
        body = strip_thinking(text)
        marks = list(_ANSWER_MARK.finditer(body))
        if not marks:
            return None
        line = body[marks[-1].end():].split("\n", 1)[0]
        m = _CHOICE.match(line)
        if m and m.group(1) in letters:
            return m.group(1)
        return None
    except Exception:  # noqa: BLE001
        return None


def score_choice(completion: Any, letter: Any) -> float:
    """1.0 if the last ``Answer: X`` names the gold letter, else 0.0."""
    gold = str(letter).strip().upper() if letter is not None else ""
    pred = extract_choice(completion)
    return 1.0 if pred is not None and pred == gold else 0.0


# --------------------------------------------------------------------------- #
# Tool calls: parsing
# --------------------------------------------------------------------------- #

_TOOL_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)
_XML_FUNCTION = re.compile(r"<function=([^>\n]*)>(.*?)(?:</function>|(?=<function=)|$)", re.DOTALL)
_XML_PARAM = re.compile(
    r"<parameter=([^>\n]*)>(.*?)(?:</parameter>|(?=<parameter=)|(?=</function>)|$)", re.DOTALL
)

# JSON-schema / BFCL / Python type names -> canonical kinds used by the checker.
_KIND = {
    "string": "string", "str": "string",
    "integer": "integer", "int": "integer",
    "float": "float", "double": "float",
    "number": "number",
    "boolean": "boolean", "bool": "boolean",
    "array": "array", "list": "array", "tuple": "array",
    "dict": "object", "object": "object",
    "null": "null", "none": "null",
}


def _kind(schema: Any) -> str | None:
    """Canonical kind of a (JSON-schema or BFCL) property schema, None if unknown/any."""
    if not isinstance(schema, dict):
        return None
    t = schema.get("type")
    if isinstance(t, list):
        t = next((x for x in t if isinstance(x, str) and x.lower() != "null"), None)
    if not isinstance(t, str):
        return None
    return _KIND.get(t.strip().lower())


def _tool_param_schemas(tools: Any) -> dict[str, dict]:
    """``{function name: parameters schema}`` from JSON-schema tools or BFCL docs."""
    out: dict[str, dict] = {}
    if not isinstance(tools, (list, tuple)):
        return out
    for tool in tools:
        fn = tool
        while isinstance(fn, dict) and "name" not in fn and isinstance(fn.get("function"), dict):
            fn = fn["function"]
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            continue
        params = fn.get("parameters")
        out[fn["name"]] = params if isinstance(params, dict) else {}
    return out


def _decode_xml_value(raw: str, schema: Any = None) -> Any:
    """Value of an XML ``<parameter>``: typed by the tool schema when known,
    otherwise JSON-decoded when possible, else the raw string."""
    value = raw
    if value.startswith("\n"):
        value = value[1:]
    if value.endswith("\n"):
        value = value[:-1]
    kind = _kind(schema)
    stripped = value.strip()
    if kind == "string":
        return value
    if kind in ("integer", "float", "number"):
        d = _to_decimal(stripped) if re.fullmatch(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)", stripped, re.ASCII) else None
        if d is not None:
            if kind == "float" or "." in stripped:
                return float(d)
            return int(d)
    if kind == "boolean":
        if stripped.lower() in ("true", "1"):
            return True
        if stripped.lower() in ("false", "0"):
            return False
    try:
        return json.loads(stripped)
    except (ValueError, RecursionError):
        pass
    if stripped in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[stripped]
    if stripped[:1] in "[{(" and len(stripped) < 100_000:
        try:
            return ast.literal_eval(stripped)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            pass
    return value


def _parse_xml_calls(block: str, schemas: dict[str, dict]) -> list[dict] | None:
    calls = []
    for fm in _XML_FUNCTION.finditer(block):
        name = fm.group(1).strip()
        if not name:
            return None
        props = (schemas.get(name) or {}).get("properties") or {}
        args = {}
        for pm in _XML_PARAM.finditer(fm.group(2)):
            pname = pm.group(1).strip()
            if not pname:
                return None
            args[pname] = _decode_xml_value(pm.group(2), props.get(pname) if isinstance(props, dict) else None)
        calls.append({"name": name, "arguments": args})
    return calls or None


def _call_from_obj(obj: Any) -> list[dict] | None:
    """Calls from a decoded JSON tool-call object (or list of them)."""
    if isinstance(obj, list):
        calls = []
        for item in obj:
            sub = _call_from_obj(item)
            if sub is None:
                return None
            calls.extend(sub)
        return calls or None
    if not isinstance(obj, dict):
        return None
    if "name" not in obj and isinstance(obj.get("function"), dict):
        obj = obj["function"]
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip():
        return None
    args = obj.get("arguments", obj.get("parameters", {}))
    if args is None:
        args = {}
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except (ValueError, RecursionError):
            return None
    if not isinstance(args, dict):
        return None
    return [{"name": name.strip(), "arguments": args}]


def parse_tool_calls(text: Any, tools: Any = None) -> list[dict] | None:
    """Tool calls in a completion, as ``[{"name": str, "arguments": dict}, ...]``.

    Recognises (after dropping ``<think>`` reasoning):

    * Qwen/Hermes JSON blocks ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``
      (``arguments`` may be a JSON string; a block may hold a list of calls);
    * Qwen3.5's XML blocks ``<tool_call><function=NAME><parameter=P>VALUE</parameter>
      </function></tool_call>``. A VALUE is typed with the tool's JSON schema when
      ``tools`` is given (as Qwen's own parser does: a ``string`` parameter keeps
      its raw text, so ``"3"`` stays ``"3"``), otherwise JSON-decoded when
      possible (``3`` -> 3, ``[1, 2]`` -> list, ``True``/``None`` too), else kept
      as a string.

    A missing final ``</tool_call>`` (stop token) is tolerated. Returns ``[]``
    when the text holds no tool call, ``None`` when a ``<tool_call>`` block is
    present but cannot be parsed (BFCL then counts the output as "no valid call").
    """
    try:
        body = strip_thinking(text)
        schemas = _tool_param_schemas(tools)
        if "<tool_call>" not in body:
            if "<function=" in body:
                return _parse_xml_calls(body, schemas)
            return []
        calls: list[dict] = []
        for bm in _TOOL_BLOCK.finditer(body):
            block = bm.group(1).strip()
            if not block:
                return None
            if "<function=" in block:
                sub = _parse_xml_calls(block, schemas)
            else:
                if block.startswith("```"):
                    block = re.sub(r"^```(?:json)?\s*|\s*```$", "", block)
                try:
                    obj = json.loads(block)
                except (ValueError, RecursionError):
                    if len(block) > 100_000:
                        return None
                    try:
                        obj = ast.literal_eval(block)
                    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                        return None
                sub = _call_from_obj(obj)
            if sub is None:
                return None
            calls.extend(sub)
        return calls
    except Exception:  # noqa: BLE001
        return None


# --------------------------------------------------------------------------- #
# Tool calls: checking (BFCL AST-checker rules, re-implemented)
# --------------------------------------------------------------------------- #

_STD_STRIP = re.compile(r"[ ,./\-_*^]")


def standardize_string(s: str) -> str:
    """BFCL string normalisation: drop spaces and ``,./-_*^``, lower-case, ``'`` -> ``"``."""
    return _STD_STRIP.sub("", s).lower().replace("'", '"')


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _eq(a: Any, b: Any) -> bool:
    """Normalised equality: numbers by value (int/float alike, bool apart),
    strings BFCL-standardised, lists/tuples element-wise in order, dicts by keys."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) and _is_number(b):
        try:
            return a == b or math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
        except (OverflowError, ValueError):
            return False
    if isinstance(a, str) and isinstance(b, str):
        return standardize_string(a) == standardize_string(b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_eq(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_eq(a[k], b[k]) for k in a)
    if a is None or b is None:
        return a is None and b is None
    return False


def _is_possible_dict(x: Any) -> bool:
    """A BFCL nested possible answer: ``{key: [acceptable values]}``."""
    return isinstance(x, dict) and bool(x) and all(isinstance(v, list) for v in x.values())


def _match_possible_dict(value: dict, possible: dict) -> bool:
    for key, v in value.items():
        if key not in possible:
            return False
        if not any(_value_matches(v, acc) for acc in possible[key] if not (isinstance(acc, str) and acc == "")):
            return False
    return all(key in value or "" in accs for key, accs in possible.items())


def _value_matches(value: Any, acceptable: Any) -> bool:
    if _eq(value, acceptable):
        return True
    if isinstance(value, dict) and _is_possible_dict(acceptable):
        return _match_possible_dict(value, acceptable)
    if (
        isinstance(value, (list, tuple))
        and isinstance(acceptable, list)
        and len(value) == len(acceptable)
        and acceptable
        and all(_is_possible_dict(a) for a in acceptable)
    ):
        return all(isinstance(v, dict) and _match_possible_dict(v, a) for v, a in zip(value, acceptable))
    return False


def _kind_ok(value: Any, kind: str | None) -> bool:
    if kind is None:
        return True
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return type(value) is int
    if kind in ("float", "number"):
        return _is_number(value)  # BFCL promotes int -> float
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "array":
        return isinstance(value, (list, tuple))
    if kind == "object":
        return isinstance(value, dict)
    if kind == "null":
        return value is None
    return True


def _check_param(value: Any, acceptables: list, schema: Any) -> bool:
    accs = [a for a in acceptables if not (isinstance(a, str) and a == "")]
    if not accs:
        return False
    kind = _kind(schema)
    first_type = type(accs[0])
    if not _kind_ok(value, kind):
        # BFCL "variable" rule: a value whose type matches the possible answer's
        # type (e.g. a variable name given as a string) is still compared.
        if not (kind is not None and type(value) is first_type):
            return False
    elif kind == "array" and isinstance(schema, dict):
        item_kind = _kind(schema.get("items"))
        if item_kind not in (None, "object", "array") and not all(_kind_ok(v, item_kind) for v in value):
            if not any(_eq(value, a) and type(a) is type(value) for a in accs if isinstance(a, list)):
                return False
    return any(_value_matches(value, acc) for acc in accs)


def _check_call(call: dict, expected_name: str, possible: dict, schema: dict | None, literal: bool) -> bool:
    if call.get("name") != expected_name:
        return False
    args = call.get("arguments")
    if not isinstance(args, dict):
        return False
    props = (schema or {}).get("properties") if isinstance(schema, dict) else None
    props = props if isinstance(props, dict) else {}
    if literal:
        return args.keys() == possible.keys() and all(_eq(args[k], possible[k][0]) for k in args)
    required = (schema or {}).get("required") if isinstance(schema, dict) else None
    for param in required if isinstance(required, list) else []:
        if param in possible and param not in args:
            return False
    for param, value in args.items():
        if param not in possible:
            return False  # unexpected parameter
        if not _check_param(value, possible[param], props.get(param)):
            return False
    return all(param in args or "" in accs for param, accs in possible.items())


def _perfect_matching(n: int, ok: list[list[bool]]) -> bool:
    """Kuhn's algorithm: can every expected call i get its own model call j?"""
    owner = [-1] * n

    def augment(i: int, seen: list[bool]) -> bool:
        for j in range(n):
            if ok[i][j] and not seen[j]:
                seen[j] = True
                if owner[j] == -1 or augment(owner[j], seen):
                    owner[j] = i
                    return True
        return False

    return all(augment(i, [False] * n) for i in range(n))


def _expected_from_answer(answer_json: Any) -> list[tuple[str, dict]] | None:
    if isinstance(answer_json, str):
        obj = json.loads(answer_json) if answer_json.strip() else []
    else:
        obj = answer_json
    if obj is None:
        return []
    if isinstance(obj, dict):
        obj = [obj]
    out = []
    for call in obj:
        if "name" not in call and isinstance(call.get("function"), dict):
            call = call["function"]
        args = call.get("arguments") or {}
        if isinstance(args, str):
            args = json.loads(args) if args.strip() else {}
        out.append((call["name"], {k: [v] for k, v in args.items()}))
    return out


def score_tool_call(
    completion: Any,
    answer_json: Any,
    possible_answers: list | None = None,
    tools: Any = None,
) -> float:
    """1.0 if the completion's tool calls match the gold, else 0.0.

    Gold: ``possible_answers`` in BFCL form (``[{func: {param: [acceptable, ...]}}, ...]``,
    ``""`` among the acceptable values = the parameter may be omitted) when given,
    else ``answer_json`` (``[{"name", "arguments"}]`` as JSON or Python), where every
    gold argument is required and no extra one is allowed. ``[]`` = no call expected.
    ``tools`` (JSON-schema tools or BFCL function docs) types the XML-form values
    and drives BFCL's type checks.

    Rules (re-implementing BFCL's AST checker ``ast_checker.py``, Python flavour):

    * function name: exact match; the number of calls must equal the gold's;
      parallel calls are matched order-free (a perfect matching, so never worse
      than BFCL's greedy one);
    * no unexpected parameter; every gold parameter not marked optional (``""``)
      and every schema-``required`` one must be present;
    * types follow the schema: ``integer`` needs an int (``3.0`` and ``"3"`` fail,
      as in BFCL), ``float``/``number`` accept ints (BFCL's int -> float
      promotion), ``boolean`` needs a bool (``1`` fails), ``array``/``tuple`` accept
      a list; a value of the possible answer's own type is still compared
      (BFCL's "variable" rule). Without a schema, ``"3"`` never equals ``3``;
    * strings compare after BFCL standardisation: case-insensitive, ignoring
      spaces and ``,./-_*^``, ``'`` = ``"``; lists compare element-wise, in order,
      with the same string rule; dict parameters use BFCL's nested possible
      answers (``{key: [acceptable values]}``), list-of-dict likewise;
    * deviation: ints inside a float array are accepted (BFCL promotes only
      top-level ints).

    ``no call`` expected (BFCL irrelevance): 1.0 iff no tool call parses out of
    the completion (unparseable ``<tool_call>`` blocks count as no call, as in BFCL).
    """
    try:
        schemas = _tool_param_schemas(tools)
        if possible_answers is not None:
            expected = []
            for item in possible_answers:
                (name, params), = item.items()
                expected.append((name, params))
            literal = False
        else:
            expected = _expected_from_answer(answer_json)
            if expected is None:
                return 0.0
            literal = True
        calls = parse_tool_calls(completion, tools=tools)
        if not expected:
            return 1.0 if not calls else 0.0
        if not calls or len(calls) != len(expected):
            return 0.0
        n = len(expected)
        ok = [
            [_check_call(calls[j], name, params, schemas.get(name), literal) for j in range(n)]
            for name, params in expected
        ]
        return 1.0 if _perfect_matching(n, ok) else 0.0
    except Exception:  # noqa: BLE001
        return 0.0


def get_scorer(benchmark_name: str) -> Callable[[Any, dict], float]:
    """``scorer(completion, example) -> float`` of a registered benchmark (see :mod:`art_lib.registry`);
    unknown name -> ValueError listing the valid names."""
    from .registry import get_benchmark

    return get_benchmark(benchmark_name).score
