"""Build toolmind_fixture.jsonl: a SYNTHETIC ToolMind-format fixture made from BFCL v4 rows.

    python tests/data/toolmind/make_fixture.py

No real ToolMind row is available offline (see /work/shared/data/toolmind/SOURCE.txt),
so questions, function docs and gold calls are taken from the BFCL subset in
../bfcl (Apache-2.0) and wrapped in the ToolMind row format documented in
/work/shared/data/toolmind/SCHEMA.md: {"conversations": [...], "tools": [...]},
the target being the final assistant message (content "<think>...</think>" plus
"tool_calls": [{"function": {"name", "arguments"}}]). The <think> texts, the
system prompt, the tool results and the text replies are invented here.
Deliberately reproduced format quirks: several rows per conversation (turn-level
prefixes), a plain-text final turn, a double-wrapped tool, a legacy flat
"arguments" map with Python type names ("int", "str, optional"), a
function-level "required" list, "parameters": null, call arguments given as a
JSON string, tool results given as raw JSON, and a row ending with a user turn.
Deterministic: rerunning rewrites the same file.
"""

import json
from pathlib import Path

HERE = Path(__file__).parent
BFCL = HERE.parent / "bfcl"
TYPE = {"dict": "object", "float": "number", "tuple": "array", "any": None}


def load(name):
    rows = {}
    for line in (BFCL / name).read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        rows[row["id"]] = row
    return rows


def schema(node):
    out = {}
    for k, v in node.items():
        if k == "optional":
            continue
        if k == "type":
            if TYPE.get(v, v):
                out["type"] = TYPE.get(v, v)
        elif k == "properties":
            out[k] = {p: schema(s) for p, s in v.items()}
        elif k == "items":
            out[k] = schema(v)
        else:
            out[k] = v
    return out


def tool(fn):
    return {
        "type": "function",
        "function": {"name": fn["name"], "description": fn["description"], "parameters": schema(fn["parameters"])},
    }


def gold(truth):
    calls = []
    for item in truth:
        ((name, params),) = item.items()
        args = {p: accs[0] for p, accs in params.items() if accs and accs[0] != ""}
        calls.append({"name": name, "arguments": args})
    return calls


def think(text):
    return f"<think>\n{text}\n</think>"


def assistant_call(calls, reasoning=None):
    msg = {
        "role": "assistant",
        "content": think(reasoning) if reasoning else "",
        "tool_calls": [{"function": {"name": c["name"], "arguments": c["arguments"]}} for c in calls],
    }
    return msg


def user(row):
    return {"role": "user", "content": row["question"][0][-1]["content"]}


def main():
    simple, parallel = load("BFCL_v4_simple_python.json"), load("BFCL_v4_parallel.json")
    truth = {**load("possible_answer/BFCL_v4_simple_python.json"), **load("possible_answer/BFCL_v4_parallel.json")}
    rows = []

    # 8 single-call rows and 3 parallel-call rows, plain OpenAI-style tools.
    for i in range(8):
        r = simple[f"simple_python_{i}"]
        rows.append(
            {
                "conversations": [
                    user(r),
                    assistant_call(
                        gold(truth[r["id"]]["ground_truth"]), "The user wants one computation; call the tool."
                    ),
                ],
                "tools": [tool(f) for f in r["function"]],
            }
        )
    for i in range(3):
        r = parallel[f"parallel_{i}"]
        rows.append(
            {
                "conversations": [
                    user(r),
                    assistant_call(gold(truth[r["id"]]["ground_truth"]), "Two independent requests: two calls."),
                ],
                "tools": [tool(f) for f in r["function"]],
            }
        )

    # One two-question conversation, stored as two turn-level rows (same tools, same first user turn).
    a, b = simple["simple_python_8"], simple["simple_python_9"]
    tools_ab = [tool(f) for f in a["function"] + b["function"]]
    system = {"role": "system", "content": "You are a helpful assistant with access to geometry tools."}
    call_a, call_b = gold(truth[a["id"]]["ground_truth"]), gold(truth[b["id"]]["ground_truth"])
    rows.append(
        {
            "conversations": [system, user(a), assistant_call(call_a, "Area of a circle: call the tool.")],
            "tools": tools_ab,
        }
    )
    rows.append(
        {
            "conversations": [
                system,
                user(a),
                assistant_call(call_a),
                {"role": "tool", "content": {"area": 314.159, "units": "square meters"}},
                {"role": "assistant", "content": "The area is about 314.16 square meters."},
                user(b),
                assistant_call(call_b, "Second circle: call the other tool."),
            ],
            "tools": tools_ab,
        }
    )

    # Final turn is plain text (a clarification): dropped unless include_text_targets=True.
    r = simple["simple_python_10"]
    rows.append(
        {
            "conversations": [
                user(r),
                {
                    "role": "assistant",
                    "content": think("Units are ambiguous.") + "\n\nWhich unit should I use for the result?",
                },
            ],
            "tools": [tool(f) for f in r["function"]],
        }
    )

    # Quirk: double-wrapped tool; call arguments given as a JSON string.
    r = simple["simple_python_11"]
    call = gold(truth[r["id"]]["ground_truth"])[0]
    rows.append(
        {
            "conversations": [
                user(r),
                {
                    "role": "assistant",
                    "content": think("Triangle area."),
                    "tool_calls": [{"function": {"name": call["name"], "arguments": json.dumps(call["arguments"])}}],
                },
            ],
            "tools": [{"type": "function", "function": tool(f)} for f in r["function"]],
        }
    )

    # Quirk: legacy flat "arguments" map with Python type names, plus a tool with "parameters": null.
    r = simple["simple_python_12"]
    fn = r["function"][0]
    flat = {
        p: {
            "description": s.get("description", ""),
            "type": {"integer": "int", "string": "str", "float": "float"}[s["type"]]
            + ("" if p in fn["parameters"]["required"] else ", optional"),
        }
        for p, s in fn["parameters"]["properties"].items()
    }
    rows.append(
        {
            "conversations": [user(r), assistant_call(gold(truth[r["id"]]["ground_truth"]), "Circumference.")],
            "tools": [
                {
                    "type": "function",
                    "function": {"name": fn["name"], "description": fn["description"], "arguments": flat},
                },
                {
                    "type": "function",
                    "function": {"name": "get_current_time", "description": "Get the current time", "parameters": None},
                },
            ],
        }
    )

    # Quirk: function-level "required", Python-flavoured BFCL types kept as is ("float", "tuple").
    r = simple["simple_python_13"]
    fn = r["function"][0]
    params = {k: v for k, v in fn["parameters"].items() if k != "required"}
    rows.append(
        {
            "conversations": [user(r), assistant_call(gold(truth[r["id"]]["ground_truth"]), "Integral.")],
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": fn["name"],
                        "description": fn["description"],
                        "parameters": params,
                        "required": fn["parameters"]["required"],
                    },
                }
            ],
        }
    )

    # Invalid for evaluation: ends with a user turn (skipped by the loader).
    r = simple["simple_python_14"]
    rows.append({"conversations": [user(r)], "tools": [tool(f) for f in r["function"]]})

    out = HERE / "toolmind_fixture.jsonl"
    out.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    print(out, len(rows))


if __name__ == "__main__":
    main()
