"""Tool calls: tool descriptions as JSON schema, and the calls a completion makes.

`normalize_tool` turns any OpenAI-ish, BFCL or legacy tool description into a JSON-schema tool, with
the one map of type names (`JSON_TYPES`); `parse_tool_calls` reads the calls of a completion (Qwen's
JSON blocks and Qwen3.5's XML form), typing XML values with those schemas. Whether the calls are right
is `art_lib.tasks.tool_check`'s business; calls rendered back to text are `art_lib.rewards`'.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

from ..rewards import decode_arguments, strip_thinking

__all__ = ["JSON_TYPES", "normalize_tool", "schema_type", "tool_param_schemas", "parse_tool_calls"]

# --------------------------------------------------------------------------- #

#: The one map of type names: JSON-schema, BFCL and Python names -> JSON-schema type ("any": no constraint).
#: Tool descriptions are converted with it, and the parser and the checker read parameter types through it.
JSON_TYPES = {
    "string": "string",
    "str": "string",
    "text": "string",
    "integer": "integer",
    "int": "integer",
    "long": "integer",
    "float": "number",
    "double": "number",
    "number": "number",
    "boolean": "boolean",
    "bool": "boolean",
    "array": "array",
    "list": "array",
    "tuple": "array",
    "set": "array",
    "dict": "object",
    "object": "object",
    "mapping": "object",
    "null": "null",
    "none": "null",
    "any": None,
}


def _json_type(type_name: Any) -> tuple[Any, dict, bool]:
    """(JSON type or None, extra schema keys, optional flag) for a type annotation."""
    if isinstance(type_name, list):
        mapped = [_json_type(t)[0] for t in type_name]
        mapped = [t for t in mapped if t]
        return (mapped if len(mapped) > 1 else (mapped[0] if mapped else None)), {}, False
    if not isinstance(type_name, str):
        return None, {}, False
    s = type_name.strip()
    optional = False
    if re.search(r",\s*optional\s*$", s, re.IGNORECASE):
        s, optional = re.sub(r",\s*optional\s*$", "", s, flags=re.IGNORECASE).strip(), True
    m = re.fullmatch(r"(?:typing\.)?Optional\[(.*)\]", s)
    if m:
        s, optional = m.group(1).strip(), True
    low = s.lower()
    if low in JSON_TYPES:
        return JSON_TYPES[low], {}, optional
    m = re.fullmatch(r"(?:typing\.)?(list|tuple|set|sequence)\[(.*)\]", s, re.IGNORECASE)
    if m:
        inner = m.group(2).split(",")[0].strip()
        item_type = _json_type(inner)[0]
        return "array", ({"items": {"type": item_type}} if item_type else {}), optional
    if re.fullmatch(r"(?:typing\.)?(dict|mapping)\[.*\]", s, re.IGNORECASE):
        return "object", {}, optional
    m = re.fullmatch(r"(?:typing\.)?Union\[(.*)\]", s)
    if m:
        parts = [_json_type(p.strip())[0] for p in m.group(1).split(",")]
        if "null" in parts:
            optional = True
        parts = [p for p in dict.fromkeys(parts) if p and p != "null"]
        return (parts[0] if len(parts) == 1 else None), {}, optional
    return None, {}, optional


def _convert_schema(node: Any) -> dict:
    """BFCL/Python-flavoured schema node -> JSON schema (recursively)."""
    if not isinstance(node, dict):
        return {}
    out: dict = {}
    for key, value in node.items():
        if key == "optional":
            continue
        if key == "type":
            jtype, extra, _ = _json_type(value)
            if jtype is not None:
                out["type"] = jtype
            for k, v in extra.items():
                out.setdefault(k, v)
        elif key == "properties" and isinstance(value, dict):
            out["properties"] = {k: _convert_schema(v) for k, v in value.items()}
        elif key == "items":
            out["items"] = _convert_schema(value) if isinstance(value, dict) else value
        elif key == "additionalProperties" and isinstance(value, dict):
            out[key] = _convert_schema(value)
        else:
            out[key] = value
    return out


def _flat_map_to_schema(arguments: dict) -> dict:
    """Legacy `{"param": {"type": "str, optional", ...}}` map -> JSON-schema object."""
    props, required = {}, []
    for name, spec in arguments.items():
        spec = spec if isinstance(spec, dict) else {"description": str(spec)}
        props[name] = _convert_schema(spec)
        optional = _json_type(spec.get("type"))[2] or bool(spec.get("optional"))
        if not optional and "default" not in spec:
            required.append(name)
    return {"type": "object", "properties": props, "required": required}


def _function_of(tool: Any) -> dict | None:
    """The function description inside a tool (`{"function": {...}}` wrappers removed), None without a name."""
    fn = tool
    while isinstance(fn, dict) and "name" not in fn and isinstance(fn.get("function"), dict):
        fn = fn["function"]
    return fn if isinstance(fn, dict) and isinstance(fn.get("name"), str) else None


def normalize_tool(tool: Any) -> dict | None:
    """Any OpenAI-ish / BFCL / legacy tool description -> `{"type": "function",
    "function": {"name", "description", "parameters": <JSON schema object>}}`.

    Handles double wrapping, `parameters: null`, a legacy flat `arguments`
    map, Python type names, and a function-level `required` list. Returns None
    when no function name can be found.
    """
    fn = _function_of(tool)
    if fn is None:
        return None
    params = fn.get("parameters")
    if not isinstance(params, dict) and isinstance(fn.get("arguments"), dict):
        params = _flat_map_to_schema(fn["arguments"])
    elif isinstance(params, dict) and "type" not in params and "properties" not in params and params:
        params = _flat_map_to_schema(params)  # flat map given under "parameters"
    else:
        params = _convert_schema(params) if isinstance(params, dict) else {}
    params.setdefault("type", "object")
    if params.get("type") != "object":
        params["type"] = "object"
    params.setdefault("properties", {})
    if "required" not in params and isinstance(fn.get("required"), list):
        params["required"] = list(fn["required"])
    function = {"name": fn["name"], "description": str(fn.get("description") or "")}
    function["parameters"] = params
    return {"type": "function", "function": function}


# --------------------------------------------------------------------------- #
# Parsing
# --------------------------------------------------------------------------- #

_TOOL_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)
# A name stops at `<`: a scan for `>` from every `<function=` of a long run would take quadratic time.
_XML_FUNCTION = re.compile(r"<function=([^<>\n]*)>(.*?)(?:</function>|(?=<function=)|$)", re.DOTALL)
_XML_PARAM = re.compile(r"<parameter=([^<>\n]*)>(.*?)(?:</parameter>|(?=<parameter=)|(?=</function>)|$)", re.DOTALL)


def schema_type(schema: Any) -> str | None:
    """JSON-schema type of a (JSON-schema or BFCL) property schema, None if unknown or any."""
    if not isinstance(schema, dict):
        return None
    t = schema.get("type")
    if isinstance(t, list):
        t = next((x for x in t if isinstance(x, str) and x.lower() != "null"), None)
    if not isinstance(t, str):
        return None
    return JSON_TYPES.get(t.strip().lower())


def tool_param_schemas(tools: Any) -> dict[str, dict]:
    """`{function name: parameters schema}` from JSON-schema tools or BFCL docs."""
    out: dict[str, dict] = {}
    if not isinstance(tools, (list, tuple)):
        return out
    for fn in filter(None, map(_function_of, tools)):
        params = fn.get("parameters")
        out[fn["name"]] = params if isinstance(params, dict) else {}
    return out


def _decode_xml_value(raw: str, schema: Any = None) -> Any:
    """Value of an XML `<parameter>`: typed by the tool schema when known,
    otherwise JSON-decoded when possible, else the raw string."""
    value = raw
    if value.startswith("\n"):
        value = value[1:]
    if value.endswith("\n"):
        value = value[:-1]
    kind = schema_type(schema)
    stripped = value.strip()
    if kind == "string":
        return value
    if kind in ("integer", "number") and re.fullmatch(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)", stripped, re.ASCII):
        # Digits only, so the conversion cannot fail; Python's int digit limit can.
        if len(stripped) <= 4000:
            return float(stripped) if "." in stripped else int(stripped)
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
    args = decode_arguments(obj.get("arguments", obj.get("parameters", {})))
    if not isinstance(args, dict):  # text that is not JSON stays a string: rejected here
        return None
    return [{"name": name.strip(), "arguments": args}]


def parse_tool_calls(text: Any, tools: Any = None) -> list[dict] | None:
    """Tool calls in a completion, as `[{"name": str, "arguments": dict}, ...]`.

    Recognises (after dropping `<think>` reasoning):

    * Qwen/Hermes JSON blocks `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`
      (`arguments` may be a JSON string; a block may hold a list of calls);
    * Qwen3.5's XML blocks `<tool_call><function=NAME><parameter=P>VALUE</parameter>
      </function></tool_call>`. A VALUE is typed with the tool's JSON schema when
      `tools` is given (as Qwen's own parser does: a `string` parameter keeps
      its raw text, so `"3"` stays `"3"`), otherwise JSON-decoded when
      possible (`3` -> 3, `[1, 2]` -> list, `True`/`None` too), else kept
      as a string.

    A missing final `</tool_call>` (stop token) is tolerated. Returns `[]`
    when the text holds no tool call, `None` when a `<tool_call>` block is
    present but cannot be parsed (BFCL then counts the output as "no valid call").
    """
    body = strip_thinking(text)
    schemas = tool_param_schemas(tools)
    try:
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
    except RecursionError:  # calls nested deeper than Python's stack (a list of lists of ... calls)
        return None
