"""The loaders refuse bad data loudly: a bad value is a `DataError` naming file, line and field, a malformed
row of a large noisy source (ToolMind) is a counted skip reported in one `DataWarning`, and an empty result
is an error naming the file. Each test writes the smallest file that shows one defect of the hostile review.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import sys
import types
from pathlib import Path

import pytest

from art_lib.data import DataError, DataWarning
from art_lib.tasks.choice import load_gpqa
from art_lib.tasks.maths import load_gsm8k, load_svamp
from art_lib.tasks.tools import load_bfcl, load_toolmind

DATA = Path(__file__).parent / "data"
TOOLMIND_ROWS = [
    json.loads(line) for line in (DATA / "toolmind" / "toolmind_fixture.jsonl").read_text().splitlines() if line
]


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _at(path: Path, line: int | str, field: str) -> str:
    """A pattern for the start of a message naming file, line (or JSON-array item) and field."""
    where = f"{path}:{line}" if isinstance(line, int) else f"{path} {line}"
    return re.escape(f"{where}: field {field!r}")


# --------------------------------------------------------------------------- D1: GSM8K final answers

GOOD_GSM8K = {"question": "What is 2 + 3?", "answer": "2 + 3 = 5\n#### 5"}


@pytest.mark.parametrize("answer", ["the answer is 5", "2 + 3 = 5\n#### five", "####", "#### NaN", "#### 5\n#### 6"])
def test_gsm8k_answer_without_one_number_after_the_marker_names_file_line_field(tmp_path, answer):
    path = _jsonl(tmp_path / "test.jsonl", [GOOD_GSM8K, {"question": "q", "answer": answer}])
    with pytest.raises(DataError, match=_at(path, 2, "answer")):
        load_gsm8k(path)


def test_gsm8k_hub_rows_go_through_the_same_checks(monkeypatch):
    fake = types.ModuleType("datasets")
    fake.load_dataset = lambda *a, **k: [GOOD_GSM8K, {"question": "q", "answer": "#### lots"}]
    monkeypatch.setitem(sys.modules, "datasets", fake)
    with pytest.raises(DataError, match=r"openai/gsm8k \(test\) row 1: field 'answer'"):
        load_gsm8k("openai/gsm8k")


# --------------------------------------------------------------------------- D2, D3: ToolMind rows


def _toolmind(tmp_path: Path, bad: list) -> Path:
    """Two good rows (lines 1-2), then the bad ones (lines 3...)."""
    return _jsonl(tmp_path / "tm.jsonl", TOOLMIND_ROWS[:2] + bad)


def _call(name="calculate_triangle_area", arguments=None) -> dict:
    return {"function": {"name": name, "arguments": {"base": 1, "height": 2} if arguments is None else arguments}}


def _with_calls(calls) -> dict:
    row = json.loads(json.dumps(TOOLMIND_ROWS[0]))
    row["conversations"][-1]["tool_calls"] = calls
    return row


def test_toolmind_row_with_malformed_tools_json_is_skipped_and_counted(tmp_path):
    bad = dict(TOOLMIND_ROWS[0], tools='[{"type": "function", "function": {"name": "calc')
    path = _toolmind(tmp_path, [bad])
    with pytest.warns(DataWarning, match=r"skipped 1 of 3 rows") as rec:
        examples = load_toolmind(path, split="all")
    assert len(examples) == 2 and all(ex["meta"]["tools"] for ex in examples)
    assert re.search(_at(path, 3, "tools"), str(rec[0].message))


def test_toolmind_row_calling_a_function_its_tools_do_not_offer_is_skipped(tmp_path):
    bad = dict(TOOLMIND_ROWS[0], tools=TOOLMIND_ROWS[1]["tools"])  # offers math.factorial, calls the triangle
    path = _toolmind(tmp_path, [bad])
    with pytest.warns(DataWarning, match=r"skipped 1 of 3 rows") as rec:
        assert len(load_toolmind(path, split="all")) == 2
    assert "calculate_triangle_area" in str(rec[0].message) and f"{path}:3" in str(rec[0].message)


MALFORMED_TOOLMIND = {
    "call not an object": _with_calls([5]),
    "call name not a string": _with_calls([_call(name=3)]),
    "arguments not JSON": _with_calls([_call(arguments="{base: 1")]),
    "arguments a list": _with_calls([_call(arguments=[1, 2])]),
    "conversation entry not an object": dict(TOOLMIND_ROWS[0], conversations=[5] + TOOLMIND_ROWS[0]["conversations"]),
    "conversations not a list": dict(TOOLMIND_ROWS[0], conversations=5),
}


def test_toolmind_malformed_rows_are_counted_with_their_lines_and_fields(tmp_path):
    path = _toolmind(tmp_path, list(MALFORMED_TOOLMIND.values()))
    with pytest.warns(DataWarning, match=rf"skipped {len(MALFORMED_TOOLMIND)} of {2 + len(MALFORMED_TOOLMIND)} rows"):
        assert len(load_toolmind(path, split="all")) == 2
    # each one alone is an error naming the file, line and field (an all-malformed file has no examples)
    for i, (what, row) in enumerate(MALFORMED_TOOLMIND.items()):
        alone = _jsonl(tmp_path / f"alone{i}.jsonl", [row])
        with pytest.raises(DataError) as err:
            load_toolmind(alone, split="all")
        assert f"{alone}: no examples" in str(err.value) and f"{alone}:1: field 'conversations" in str(err.value), what


# --------------------------------------------------------------------------- D4: BFCL


def _bfcl(tmp_path: Path, questions: list, answers: list) -> Path:
    (tmp_path / "possible_answer").mkdir(exist_ok=True)
    _jsonl(tmp_path / "BFCL_v4_simple_python.json", questions)
    _jsonl(tmp_path / "possible_answer" / "BFCL_v4_simple_python.json", answers)
    return tmp_path


def _bfcl_rows(n: int = 2) -> tuple[list, list]:
    src = DATA / "bfcl"
    qs = [json.loads(line) for line in (src / "BFCL_v4_simple_python.json").read_text().splitlines()[:n]]
    ans = (src / "possible_answer" / "BFCL_v4_simple_python.json").read_text().splitlines()
    ans = [json.loads(line) for line in ans]
    by_id = {a["id"]: a for a in ans}
    return qs, [by_id[q["id"]] for q in qs]


def test_bfcl_two_questions_with_one_id_are_an_error_naming_both_lines(tmp_path):
    qs, ans = _bfcl_rows(2)
    qs[1]["id"] = qs[0]["id"]
    folder = _bfcl(tmp_path, qs, ans[:1])
    with pytest.raises(DataError, match=rf"BFCL_v4_simple_python.json:2: duplicate id {qs[0]['id']!r}.*:1"):
        load_bfcl("simple", source=folder)
    qs, ans = _bfcl_rows(2)
    ans[1]["id"] = ans[0]["id"]
    with pytest.raises(DataError, match=r"possible_answer/BFCL_v4_simple_python.json:2: duplicate id"):
        load_bfcl("simple", source=_bfcl(tmp_path, qs, ans))


@pytest.mark.parametrize(
    "field, value",
    [
        ("question", [{"role": "user", "content": "flat, not a list of turns"}]),
        ("question", "a string"),
        ("function", {"name": "f", "parameters": {}}),
    ],
)
def test_bfcl_malformed_question_or_function_names_file_line_field(tmp_path, field, value):
    qs, ans = _bfcl_rows(2)
    qs[1][field] = value
    folder = _bfcl(tmp_path, qs, ans)
    with pytest.raises(DataError, match=_at(folder / "BFCL_v4_simple_python.json", 2, field)):
        load_bfcl("simple", source=folder)


def test_bfcl_question_without_its_possible_answer_is_an_error(tmp_path):
    qs, ans = _bfcl_rows(2)
    folder = _bfcl(tmp_path, qs, ans[:1])
    with pytest.raises(DataError, match=rf"BFCL_v4_simple_python.json:2: .*{qs[1]['id']!r}.*possible_answer"):
        load_bfcl("simple", source=folder)


# --------------------------------------------------------------------------- D5: SVAMP

SVAMP_ROWS = json.loads((DATA / "svamp" / "SVAMP.json").read_text())


def _svamp(tmp_path: Path, rows: list) -> Path:
    (tmp_path / "SVAMP.json").write_text(json.dumps(rows))
    return tmp_path / "SVAMP.json"


@pytest.mark.parametrize("answer", ["lots", True, None, "", float("nan")])
def test_svamp_non_numeric_answer_names_item_and_field(tmp_path, answer):
    rows = [dict(r) for r in SVAMP_ROWS[:5]]
    rows[3]["Answer"] = answer
    path = _svamp(tmp_path, rows)
    with pytest.raises(DataError, match=_at(path, "item 3", "Answer")):
        load_svamp(path, split="all")


def test_svamp_duplicate_ids_are_an_error(tmp_path):
    rows = [dict(r) for r in SVAMP_ROWS[:5]]
    rows[4]["ID"] = rows[1]["ID"]
    path = _svamp(tmp_path, rows)
    for split in ("all", "train", "test"):
        with pytest.raises(DataError, match=rf"{re.escape(str(path))} item 4: duplicate id {rows[1]['ID']!r}"):
            load_svamp(path, split=split)


def test_svamp_split_of_a_small_file_keeps_the_700_300_proportion(tmp_path):
    path = _svamp(tmp_path, SVAMP_ROWS[:10])
    with pytest.warns(DataWarning, match="10 rows, not 1000"):
        train, test = load_svamp(path, split="train"), load_svamp(path, split="test")
    assert (len(train), len(test)) == (7, 3)
    assert {e["id"] for e in train} | {e["id"] for e in test} == {r["ID"] for r in SVAMP_ROWS[:10]}


def test_svamp_split_file_naming_an_unknown_id_names_the_file_and_id(tmp_path):
    path = _svamp(tmp_path, SVAMP_ROWS[:5])
    split_file = tmp_path / "chilled_split_ids.json"
    split_file.write_text(json.dumps({"train_ids": [r["ID"] for r in SVAMP_ROWS[:4]], "test_ids": ["chal-9999"]}))
    with pytest.raises(DataError, match=rf"{re.escape(str(split_file))}: .*'chal-9999'.*not in {re.escape(str(path))}"):
        load_svamp(path, split="test")


def test_svamp_full_split_file_with_a_partial_data_file_is_an_error(tmp_path):
    path = _svamp(tmp_path, SVAMP_ROWS[:5])
    shutil.copy(DATA / "svamp" / "chilled_split_ids.json", tmp_path)
    with pytest.raises(DataError, match="chilled_split_ids.json"):
        load_svamp(path, split="train")


# --------------------------------------------------------------------------- D6: GPQA

GPQA_COLUMNS = ["Record ID", "Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2"]
GPQA_COLUMNS += ["Incorrect Answer 3"]


def _gpqa(tmp_path: Path, rows: list[list[str]]) -> Path:
    path = tmp_path / "gpqa.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([GPQA_COLUMNS] + rows)
    return path


GPQA_GOOD = ["rec-1", "SYNTHETIC: which?", "right", "wrong a", "wrong b", "wrong c"]


@pytest.mark.parametrize(
    "row, field",
    [
        (["rec-2", "q", "  ", "a", "b", "c"], "Correct Answer"),
        (["rec-2", "q", "right", "a", " right ", "c"], "Incorrect Answer 2"),
        (["rec-2", "q", "right", "a", "", "c"], "Incorrect Answer 2"),
        (["rec-2", "", "right", "a", "b", "c"], "Question"),
    ],
)
def test_gpqa_empty_or_repeated_option_names_line_and_field(tmp_path, row, field):
    path = _gpqa(tmp_path, [GPQA_GOOD, row])
    with pytest.raises(DataError, match=_at(path, 3, field)):
        load_gpqa(path)


def test_gpqa_duplicate_record_ids_are_an_error(tmp_path):
    path = _gpqa(tmp_path, [GPQA_GOOD, ["rec-1"] + GPQA_GOOD[1:]])
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}:3: duplicate id 'rec-1'.*:2"):
        load_gpqa(path)


# --------------------------------------------------------------------------- D7: empty files


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_an_empty_jsonl_is_an_error_naming_the_file(tmp_path, text):
    path = tmp_path / "test.jsonl"
    path.write_text(text)
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: no rows"):
        load_gsm8k(path)
    tm = tmp_path / "tm.jsonl"
    tm.write_text(text)
    with pytest.raises(DataError, match=rf"{re.escape(str(tm))}: no rows"):
        load_toolmind(tm, split="all")


def test_an_empty_json_array_or_header_only_csv_is_an_error_naming_the_file(tmp_path):
    svamp = tmp_path / "SVAMP.json"
    svamp.write_text("[]")
    with pytest.raises(DataError, match=rf"{re.escape(str(svamp))}: no rows"):
        load_svamp(svamp, split="all")
    path = _gpqa(tmp_path, [])
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: no rows"):
        load_gpqa(path)


def test_a_toolmind_file_of_only_text_targets_is_an_error_saying_why(tmp_path):
    path = _jsonl(tmp_path / "text.jsonl", [r for r in TOOLMIND_ROWS if not r["conversations"][-1].get("tool_calls")])
    with pytest.raises(DataError, match=r"include_text_targets"):
        load_toolmind(path, split="all")


def test_an_empty_toolmind_split_is_an_error(tmp_path):
    path = _jsonl(tmp_path / "one.jsonl", TOOLMIND_ROWS[:1])
    assert len(load_toolmind(path, split="all")) == 1
    with pytest.raises(DataError, match=rf"split 'test'.*{re.escape(str(path))}"):
        load_toolmind(path, split="test")
