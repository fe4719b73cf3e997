"""Whether a completion's tool calls are right: BFCL's AST-checker rules, re-implemented.

`score_tool_call` parses the completion with `art_lib.tasks.tool_calls.parse_tool_calls` and checks the
calls against a gold call list or BFCL's possible answers. Model output never makes it raise; a
malformed gold does.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from .tool_calls import normalize_tool, parse_tool_calls, schema_type, tool_param_schemas

__all__ = ["standardize_string", "score_tool_call"]

_STD_STRIP = re.compile(r"[ ,./\-_*^]")


def standardize_string(s: str) -> str:
    """BFCL string normalisation: drop spaces and `,./-_*^`, lower-case, `'` -> `"`."""
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
    """A BFCL nested possible answer: `{key: [acceptable values]}`."""
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
    if kind == "number":
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
    kind = schema_type(schema)
    first_type = type(accs[0])
    if not _kind_ok(value, kind):
        # BFCL "variable" rule: a value whose type matches the possible answer's
        # type (e.g. a variable name given as a string) is still compared.
        if not (kind is not None and type(value) is first_type):
            return False
    elif kind == "array" and isinstance(schema, dict):
        item_kind = schema_type(schema.get("items"))
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


def _expected_from_answer(answer_json: Any) -> list[tuple[str, dict]]:
    """Gold calls `[{"name", "arguments"}]` (JSON text or Python) as `(name, {param: [value]})` pairs."""
    if isinstance(answer_json, str):
        obj = json.loads(answer_json) if answer_json.strip() else []
    else:
        obj = answer_json
    if obj is None:
        return []
    if isinstance(obj, dict):
        obj = [obj]
    if not isinstance(obj, list):
        raise ValueError(f"the gold answer {answer_json!r} is not a list of tool calls")
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
    completion: Any, answer_json: Any, possible_answers: list | None = None, tools: Any = None
) -> float:
    """1.0 if the completion's tool calls match the gold, else 0.0.

    Gold: `possible_answers` in BFCL form (`[{func: {param: [acceptable, ...]}}, ...]`,
    `""` among the acceptable values = the parameter may be omitted) when given,
    else `answer_json` (`[{"name", "arguments"}]` as JSON or Python), where every
    gold argument is required and no extra one is allowed. `[]` = no call expected.
    `tools` (JSON-schema tools or BFCL function docs) types the XML-form values
    and drives BFCL's type checks.

    Rules (re-implementing BFCL's AST checker `ast_checker.py`, Python flavour):

    * function name: exact match; the number of calls must equal the gold's;
      parallel calls are matched order-free (a perfect matching, so never worse
      than BFCL's greedy one);
    * no unexpected parameter; every gold parameter not marked optional (`""`)
      and every schema-`required` one must be present;
    * types follow the schema: `integer` needs an int (`3.0` and `"3"` fail,
      as in BFCL), `float`/`number` accept ints (BFCL's int -> float
      promotion), `boolean` needs a bool (`1` fails), `array`/`tuple` accept
      a list; a value of the possible answer's own type is still compared
      (BFCL's "variable" rule). Without a schema, `"3"` never equals `3`;
    * strings compare after BFCL standardisation: case-insensitive, ignoring
      spaces and `,./-_*^`, `'` = `"`; lists compare element-wise, in order,
      with the same string rule; dict parameters use BFCL's nested possible
      answers (`{key: [acceptable values]}`), list-of-dict likewise;
    * deviation: ints inside a float array are accepted (BFCL promotes only
      top-level ints).

    `no call` expected (BFCL irrelevance): 1.0 iff no tool call parses out of
    the completion (unparseable `<tool_call>` blocks count as no call, as in BFCL).
    """
    schemas = tool_param_schemas(tools)
    # The gold is the kit's: a malformed one raises here instead of scoring every completion 0.
    if possible_answers is not None:
        expected = [_one_call(item) for item in possible_answers]
        literal = False
    else:
        expected = _expected_from_answer(answer_json)
        literal = True
    calls = parse_tool_calls(completion, tools=tools)
    if not expected:
        return 1.0 if not calls else 0.0
    if not calls or len(calls) != len(expected):
        return 0.0
    n = len(expected)
    try:
        ok = [
            [_check_call(calls[j], name, params, schemas.get(name), literal) for j in range(n)]
            for name, params in expected
        ]
    except RecursionError:  # argument values nested deeper than the comparison can follow
        return 0.0
    return 1.0 if _perfect_matching(n, ok) else 0.0


def _one_call(item: Any) -> tuple[str, dict]:
    """`(name, {param: [values]})` of one BFCL possible answer; anything else is a malformed gold: ValueError."""
    if not (isinstance(item, dict) and len(item) == 1 and isinstance(next(iter(item.values())), dict)):
        raise ValueError(f"a BFCL possible answer must be {{function: {{param: [values]}}}}, got {item!r}")
    return next(iter(item.items()))


# BFCL gold answers: its possible-answer lists -> one gold call list (for SFT targets)


def bfcl_function_to_tool(fn: dict) -> dict:
    """One BFCL function doc -> JSON-schema tool dict (`dict` -> `object`,
    `float` -> `number`, `tuple` -> `array`, `any` -> untyped; BFCL's
    non-standard `optional` flag dropped)."""
    tool = normalize_tool(fn)
    if tool is None:
        raise ValueError(f"BFCL function without a name: {fn!r}")
    return tool


def _first_acceptable(values: list, schema: dict | None, required: bool) -> tuple[bool, Any]:
    """(present?, value) for the first acceptable value of a BFCL possible-answer list."""
    non_empty = [v for v in values if not (isinstance(v, str) and v == "")]
    if not values or (values[0] == "" and not required) or not non_empty:
        return False, None
    value = values[0] if values[0] != "" else non_empty[0]
    ptype = (schema or {}).get("type")
    item_type = ((schema or {}).get("items") or {}).get("type")
    if ptype == "dict" and isinstance(value, dict):
        value = _render_possible_dict(value)
    elif ptype == "array" and item_type == "dict" and isinstance(value, list):
        value = [_render_possible_dict(v) if isinstance(v, dict) else v for v in value]
    return True, value


def _render_possible_dict(possible: dict) -> dict:
    out = {}
    for key, accs in possible.items():
        if isinstance(accs, list):
            present, value = _first_acceptable(accs, None, required=False)
            if present:
                out[key] = value
        else:
            out[key] = accs
    return out


def bfcl_gold_calls(ground_truth: list, functions: list) -> list[dict]:
    """BFCL possible answers -> one gold call list `[{"name", "arguments"}]`,
    taking each parameter's first acceptable value (`""` first = omitted,
    unless the parameter is required)."""
    docs = {f["name"]: f for f in functions}
    calls = []
    for item in ground_truth:
        ((name, params),) = item.items()
        doc = docs.get(name, {}).get("parameters", {})
        props, required = doc.get("properties", {}), set(doc.get("required", []))
        args = {}
        for pname, accs in params.items():
            present, value = _first_acceptable(accs, props.get(pname), pname in required)
            if present:
                args[pname] = value
        calls.append({"name": name, "arguments": args})
    return calls
