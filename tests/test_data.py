"""Tests for art_lib.data: the benchmark loaders.

Stand-alone: all data comes from tests/data/ (see each folder's SOURCE.txt); the
full BFCL files in /work/shared/data/bfcl are used too when present.
"""

from __future__ import annotations

import csv
import json
import random
import shutil
import sys
import types
from pathlib import Path

import pytest

from art_lib import data as D
from art_lib.data import load_benchmark
from art_lib.registry import benchmark_names
from art_lib.tasks.choice import CHOICE_SUFFIX, GPQA_TEST_FRACTION, load_gpqa
from art_lib.tasks.maths import MATH_SUFFIX, load_gsm8k, load_svamp
from art_lib.tasks.tools import BFCL_CATEGORIES, load_bfcl, load_toolmind

DATA = Path(__file__).parent / "data"
GSM8K = DATA / "gsm8k"
SVAMP = DATA / "svamp"
BFCL = DATA / "bfcl"
TOOLMIND = DATA / "toolmind" / "toolmind_fixture.jsonl"
SHARED_BFCL = Path("/work/shared/data/bfcl")
BFCL_DIRS = [BFCL] + ([SHARED_BFCL] if (SHARED_BFCL / "BFCL_v4_simple_python.json").is_file() else [])


def _check_schema(example: dict) -> None:
    assert set(example) == {"id", "prompt", "answer", "meta"}
    assert isinstance(example["id"], str) and example["id"]
    assert isinstance(example["prompt"], str) and example["prompt"]
    assert isinstance(example["answer"], str)
    assert isinstance(example["meta"], dict)


def _ids(examples):
    return [e["id"] for e in examples]


# --------------------------------------------------------------------------- #
# GSM8K
# --------------------------------------------------------------------------- #


def test_math_suffix_matches_authors_instruction():
    assert MATH_SUFFIX == "End your response with: Answer: <number>"


def test_gsm8k_local_folder_and_file_give_same_examples():
    from_folder = load_gsm8k(GSM8K, split="test")
    from_file = load_gsm8k(str(GSM8K / "test.jsonl"), split="test")
    assert len(from_folder) == 1319
    assert from_folder == from_file
    for ex in from_folder:
        _check_schema(ex)
        assert ex["prompt"].endswith("\n" + MATH_SUFFIX)
        assert ex["meta"]["question"] in ex["prompt"]
    first = from_folder[0]
    assert first["id"] == "gsm8k-test-0000"
    assert first["answer"] == "18"
    assert first["prompt"].startswith("Janet\u2019s ducks lay 16 eggs")


def test_gsm8k_answers_drop_commas_and_keep_sign():
    answers = {ex["meta"]["solution"].split("####")[-1].strip(): ex["answer"] for ex in load_gsm8k(GSM8K)}
    assert answers["2,125"] == "2125"
    assert answers["1,450,000"] == "1450000"
    assert answers["-10"] == "-10"
    assert all("," not in a for a in answers.values())


def test_gsm8k_limit_and_seed_are_deterministic():
    plain = load_gsm8k(GSM8K, limit=5)
    assert _ids(plain) == [f"gsm8k-test-{i:04d}" for i in range(5)]
    a = load_gsm8k(GSM8K, limit=20, seed=123)
    b = load_gsm8k(GSM8K, limit=20, seed=123)
    c = load_gsm8k(GSM8K, limit=20, seed=7)
    assert _ids(a) == _ids(b)
    assert _ids(a) != _ids(c)
    assert _ids(a) != _ids(load_gsm8k(GSM8K, limit=20))


def test_gsm8k_missing_file_gives_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_gsm8k(tmp_path, split="train")
    msg = str(err.value)
    assert "train.jsonl" in msg and "github.com/openai/grade-school-math" in msg and "source=" in msg
    with pytest.raises(FileNotFoundError, match="test.jsonl"):
        load_gsm8k(tmp_path / "nope" / "test.jsonl")


def _fake_datasets(monkeypatch, fn):
    fake = types.ModuleType("datasets")
    fake.load_dataset = fn
    monkeypatch.setitem(sys.modules, "datasets", fake)


def test_hub_failure_becomes_file_not_found_with_guidance(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'openai/gsm8k' on the Hub (LocalEntryNotFoundError)")

    _fake_datasets(monkeypatch, offline)
    with pytest.raises(FileNotFoundError) as err:
        load_gsm8k("openai/gsm8k", split="test")
    msg = str(err.value)
    assert "openai/gsm8k" in msg and "test.jsonl" in msg and "grade-school-math" in msg
    assert isinstance(err.value.__cause__, ConnectionError)
    with pytest.raises(FileNotFoundError, match="SVAMP.json"):
        load_svamp("ChilleD/SVAMP")
    with pytest.raises(FileNotFoundError, match="gpqa"):
        load_gpqa("Idavidrein/gpqa")


def test_hub_rows_are_converted_like_local_rows(monkeypatch):
    calls = []

    def fake_load(source, *args, **kwargs):
        calls.append((source, args, kwargs))
        if source == "openai/gsm8k":
            return [{"question": "Q?", "answer": "step\n#### 1,234"}]
        return [
            {
                "ID": "chal-1",
                "Body": "Body.",
                "Question": "How many?",
                "Answer": "51.0",
                "Equation": "( 76.0 - 25.0 )",
                "Type": "Subtraction",
            }
        ]

    _fake_datasets(monkeypatch, fake_load)
    (g,) = load_gsm8k()
    assert calls[0] == ("openai/gsm8k", ("main",), {"split": "test"})
    assert g["answer"] == "1234" and g["prompt"] == "Q?\n" + MATH_SUFFIX
    (s,) = load_svamp(split="train")
    assert calls[1] == ("ChilleD/SVAMP", (), {"split": "train"})
    assert s["answer"] == "51" and s["prompt"].startswith("Body. How many?")


# --------------------------------------------------------------------------- #
# SVAMP
# --------------------------------------------------------------------------- #


def test_svamp_reproduces_chilled_700_300_split():
    train, test = load_svamp(SVAMP, split="train"), load_svamp(SVAMP, split="test")
    assert (len(train), len(test)) == (700, 300)
    assert not set(_ids(train)) & set(_ids(test))
    assert set(_ids(train)) | set(_ids(test)) == {f"chal-{i}" for i in range(1, 1001)}
    assert train[0]["id"] == "chal-777"  # first row of ChilleD/SVAMP train on the HF viewer
    everything = load_svamp(SVAMP / "SVAMP.json", split="all")
    assert len(everything) == 1000 and everything[0]["id"] == "chal-1"
    for ex in train + test:
        _check_schema(ex)
        assert ex["prompt"].endswith("\n" + MATH_SUFFIX)


def test_svamp_question_and_answer_format():
    (ex,) = [e for e in load_svamp(SVAMP, split="all") if e["id"] == "chal-1"]
    assert ex["meta"]["question"] == (
        "Each pack of dvds costs 76 dollars. If there is a discount of 25 dollars on each pack "
        "How much do you have to pay to buy each pack?"
    )
    assert ex["answer"] == "51"  # SVAMP stores 51.0
    assert ex["meta"]["equation"] == "( 76.0 - 25.0 )"
    assert all(not e["answer"].endswith(".0") for e in load_svamp(SVAMP, split="all"))


def test_svamp_split_reconstructed_without_ids_file(tmp_path):
    shutil.copy(SVAMP / "SVAMP.json", tmp_path / "SVAMP.json")
    for split in ("train", "test"):
        assert _ids(load_svamp(tmp_path, split=split)) == _ids(load_svamp(SVAMP, split=split))


def test_svamp_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="SVAMP.json"):
        load_svamp(tmp_path)
    with pytest.raises(ValueError, match="split"):
        load_svamp(SVAMP, split="validation")


# --------------------------------------------------------------------------- #
# GPQA (synthetic CSV: GPQA itself is gated)
# --------------------------------------------------------------------------- #


def _synthetic_gpqa(n: int) -> list[dict]:
    """`n` clearly synthetic rows in the GPQA CSV layout -- not GPQA questions."""
    return [
        {
            "Record ID": f"synthetic-{i}",
            "Question": f"SYNTHETIC question {i}: which option is right?",
            "Correct Answer": f"right-{i}",
            "Incorrect Answer 1": f"wrong-{i}-a",
            "Incorrect Answer 2": f"wrong-{i}-b",
            "Incorrect Answer 3": f"  wrong-{i}-c\n",
        }
        for i in range(n)
    ]


SYNTHETIC_GPQA = _synthetic_gpqa(12)


def _write_gpqa(path: Path, rows) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) + ["Subdomain"])
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "Subdomain": "synthetic"})
    return path


def _gpqa_splits(path: Path) -> dict[str, set[str]]:
    return {split: set(_ids(load_gpqa(path, split=split))) for split in ("train", "test")}


def test_gpqa_synthetic_csv(tmp_path):
    csv_path = _write_gpqa(tmp_path / "gpqa_diamond.csv", SYNTHETIC_GPQA)
    examples = load_gpqa(csv_path, split="train") + load_gpqa(csv_path, split="test")
    assert sorted(_ids(examples)) == sorted(row["Record ID"] for row in SYNTHETIC_GPQA)
    rows = {row["Record ID"]: row for row in SYNTHETIC_GPQA}
    letters = set()
    for ex in examples:
        row = rows[ex["id"]]
        _check_schema(ex)
        assert ex["answer"] in "ABCD" and len(ex["answer"]) == 1
        letters.add(ex["answer"])
        choices = ex["meta"]["choices"]
        assert sorted(choices) == sorted([f"right-{ex['id'][10:]}"] + [f"wrong-{ex['id'][10:]}-{k}" for k in "abc"])
        assert choices["ABCD".index(ex["answer"])] == row["Correct Answer"]
        assert f"{ex['answer']}) {row['Correct Answer']}\n" in ex["prompt"]
        assert ex["prompt"].startswith(row["Question"]) and ex["prompt"].endswith("\n" + CHOICE_SUFFIX)
    assert len(letters) > 1  # options really are shuffled
    # fixed per example: same letters from a folder path and with the rows reversed
    train = load_gpqa(csv_path, split="train")
    assert load_gpqa(tmp_path, split="train") == train
    reversed_csv = _write_gpqa(tmp_path / "rev.csv", SYNTHETIC_GPQA[::-1])
    assert {e["id"]: e["answer"] for e in load_gpqa(reversed_csv)} == {e["id"]: e["answer"] for e in train}
    assert _ids(load_gpqa(csv_path, seed=3, limit=4)) == _ids(load_gpqa(csv_path, seed=3, limit=4))


def test_gpqa_train_and_test_are_disjoint_cover_every_row_and_hold_out_a_quarter(tmp_path):
    rows = _synthetic_gpqa(200)
    sides = _gpqa_splits(_write_gpqa(tmp_path / "gpqa_diamond.csv", rows))
    assert not sides["train"] & sides["test"]
    assert sides["train"] | sides["test"] == {row["Record ID"] for row in rows}
    # binomial(200, 0.25): mean 50, sd 6.1; 3 sd either side
    assert abs(len(sides["test"]) - 200 * GPQA_TEST_FRACTION) <= 18


def test_gpqa_split_ignores_row_order_and_added_rows(tmp_path):
    rows = _synthetic_gpqa(200)
    sides = _gpqa_splits(_write_gpqa(tmp_path / "all.csv", rows))
    shuffled = random.Random(0).sample(rows, len(rows))
    assert _gpqa_splits(_write_gpqa(tmp_path / "shuffled.csv", shuffled)) == sides
    fewer = shuffled[:120]  # the file before 80 rows were added
    kept = {row["Record ID"] for row in fewer}
    assert _gpqa_splits(_write_gpqa(tmp_path / "fewer.csv", fewer)) == {k: v & kept for k, v in sides.items()}


def test_gpqa_limit_and_seed_apply_within_the_split_and_unknown_splits_are_named(tmp_path):
    csv_path = _write_gpqa(tmp_path / "gpqa_diamond.csv", _synthetic_gpqa(40))
    test = load_gpqa(csv_path, split="test")
    shuffled = load_gpqa(csv_path, split="test", seed=5, limit=3)
    assert shuffled == D.finalize(test, 3, 5) and len(shuffled) == 3
    with pytest.raises(ValueError, match=r"\('train', 'test'\).*'all'"):
        load_gpqa(csv_path, split="all")


def test_gpqa_through_the_registry_and_the_hub_draws_the_same_split(tmp_path, monkeypatch):
    rows = _synthetic_gpqa(60)
    (tmp_path / "gpqa").mkdir()
    local = load_gpqa(_write_gpqa(tmp_path / "gpqa" / "gpqa_diamond.csv", rows), split="test")
    assert load_benchmark("gpqa", data_dir=tmp_path, split="test") == local
    calls = []

    def fake_load(source, *args, **kwargs):
        calls.append((source, args, kwargs))
        return rows

    _fake_datasets(monkeypatch, fake_load)
    assert load_gpqa(split="test") == local
    assert calls == [("Idavidrein/gpqa", ("gpqa_diamond",), {"split": "train"})]  # the hub's one split


def test_gpqa_missing_csv(tmp_path):
    with pytest.raises(FileNotFoundError, match="huggingface.co/datasets/Idavidrein/gpqa"):
        load_gpqa(tmp_path / "gpqa_diamond.csv")


# --------------------------------------------------------------------------- #
# ToolMind (ToolMind-format fixture built from BFCL rows, see its SOURCE.txt)
# --------------------------------------------------------------------------- #


def test_toolmind_rows_and_targets():
    with pytest.warns(D.DataWarning, match=rf"skipped 1 of 18 rows.*{TOOLMIND}:18: field 'conversations\[0\]'"):
        rows = load_toolmind(TOOLMIND, split="all")
    assert len(rows) == 16  # 18 rows - 1 plain-text final turn (left out) - 1 ending with a user turn (skipped)
    assert len(load_toolmind(TOOLMIND, split="all", include_text_targets=True)) == 17
    for ex in rows:
        _check_schema(ex)
        calls = json.loads(ex["answer"])
        assert calls and all(set(c) == {"name", "arguments"} and isinstance(c["arguments"], dict) for c in calls)
        names = {t["function"]["name"] for t in ex["meta"]["tools"]}
        assert {c["name"] for c in calls} <= names
        for tool in ex["meta"]["tools"]:
            assert tool["type"] == "function" and tool["function"]["parameters"]["type"] == "object"
    first = rows[0]
    assert first["prompt"] == "Find the area of a triangle with a base of 10 units and height of 5 units."
    assert json.loads(first["answer"]) == [
        {"name": "calculate_triangle_area", "arguments": {"base": 10, "height": 5, "unit": "units"}}
    ]
    assert first["meta"]["messages"] == [] and first["meta"]["followup"] == []
    assert len(json.loads(rows[8]["answer"])) == 2  # parallel calls


def test_toolmind_multi_turn_history_goes_to_meta():
    (ex,) = [e for e in load_toolmind(TOOLMIND, split="all") if len(e["meta"]["messages"]) > 1]
    roles = [m["role"] for m in ex["meta"]["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "assistant"]
    assert ex["meta"]["messages"][2]["tool_calls"][0]["function"]["name"] == "geometry.area_circle"
    assert isinstance(ex["meta"]["messages"][3]["content"], str)  # raw JSON tool result serialised
    assert "radius of 5 units" in ex["prompt"]
    assert json.loads(ex["answer"])[0]["name"] == "geometry.calculate_area_circle"


def test_toolmind_tool_quirks_are_normalised():
    rows = {e["id"][-2:]: e for e in load_toolmind(TOOLMIND, split="all")}
    # double-wrapped tool; call arguments stored as a JSON string
    assert rows["14"]["meta"]["tools"][0]["function"]["name"] == "calculate_triangle_area"
    assert json.loads(rows["14"]["answer"])[0]["arguments"] == {"base": 10, "height": 5}
    # legacy flat "arguments" map with Python type names; "parameters": null
    circ, clock = rows["15"]["meta"]["tools"]
    props = circ["function"]["parameters"]["properties"]
    assert props["radius"]["type"] == "integer" and props["units"]["type"] == "string"
    assert circ["function"]["parameters"]["required"] == ["radius"]
    assert clock["function"]["parameters"] == {"type": "object", "properties": {}}
    # function-level "required" and BFCL/Python type names ("float", "array" of "float")
    params = rows["16"]["meta"]["tools"][0]["function"]["parameters"]
    assert params["required"] == ["function", "interval"]
    assert params["properties"]["interval"]["items"]["type"] == "number"


def test_toolmind_split_is_deterministic_disjoint_and_grouped():
    everything = set(_ids(load_toolmind(TOOLMIND, split="all")))
    for split_seed in (0, 1, 2):
        kw = dict(split_seed=split_seed, test_fraction=0.25)
        test = load_toolmind(TOOLMIND, split="test", **kw)
        train = load_toolmind(TOOLMIND, split="train", **kw)
        assert _ids(test) == _ids(load_toolmind(TOOLMIND, split="test", **kw))
        assert not set(_ids(test)) & set(_ids(train))
        assert set(_ids(test)) | set(_ids(train)) == everything
        assert 0 < len(test) < len(everything)
        # the two turn-level rows of the one conversation stay on the same side
        pair = {"toolmind-toolmind_fixture-000011", "toolmind-toolmind_fixture-000012"}
        assert pair <= set(_ids(test)) or pair <= set(_ids(train))
    splits = {tuple(_ids(load_toolmind(TOOLMIND, split="test", split_seed=s, test_fraction=0.25))) for s in range(5)}
    assert len(splits) > 1
    assert len(load_toolmind(TOOLMIND, split="train", limit=3)) == 3


def test_toolmind_held_out_split_does_not_move_with_the_training_seed():
    test = set(_ids(load_toolmind(TOOLMIND, split="test", test_fraction=0.25)))
    for seed in (0, 1, 2, 3):
        train = load_toolmind(TOOLMIND, split="train", seed=seed, test_fraction=0.25)
        assert not test & set(_ids(train))
        assert set(_ids(load_toolmind(TOOLMIND, split="test", seed=seed, test_fraction=0.25))) == test


def test_every_toolmind_sft_target_scores_one_under_the_toolmind_scorer():
    from art_lib.rewards import get_scorer

    scorer = get_scorer("toolmind")
    rows = load_toolmind(TOOLMIND, split="all")
    assert rows and all(scorer(ex["meta"]["target"], ex) == 1.0 for ex in rows)
    assert all(ex["meta"]["target"].startswith("<tool_call>\n<function=") for ex in rows)


def test_toolmind_target_is_what_the_real_chat_template_renders_after_the_prompt():
    from art_lib.models import tiny_model
    from art_lib.prompting import example_messages

    _, processor = tiny_model()  # the real Qwen3.5 chat template
    rows = load_toolmind(TOOLMIND, split="all")
    assert any(ex["meta"]["messages"] for ex in rows)
    for ex in rows:  # whole conversations: tools, history, tool results
        calls = [{"type": "function", "function": c} for c in json.loads(ex["answer"])]
        msgs = example_messages(ex, {"type": "image"})
        kw = dict(tools=ex["meta"]["tools"], tokenize=False, enable_thinking=False)
        prompt = processor.apply_chat_template(msgs, add_generation_prompt=True, **kw)
        full = processor.apply_chat_template(msgs + [{"role": "assistant", "content": "", "tool_calls": calls}], **kw)
        assert full == prompt + ex["meta"]["target"] + "<|im_end|>\n", ex["id"]


def test_toolmind_system_messages_anywhere_render(tmp_path):
    from art_lib.models import tiny_model
    from art_lib.prompting import example_text

    rows = [json.loads(line) for line in TOOLMIND.read_text().splitlines() if line.strip()]
    row = next(r for r in rows if sum(m["role"] == "user" for m in r["conversations"]) > 1)
    conv = list(row["conversations"])
    conv.insert(2, {"role": "system", "content": "Late rule: be brief."})  # not first
    conv.insert(len(conv) - 1, {"role": "system", "content": "Rule after the prompt."})
    (tmp_path / "sys.jsonl").write_text(json.dumps({**row, "conversations": conv}) + "\n")
    (ex,) = load_toolmind(tmp_path / "sys.jsonl", split="all")
    roles = [m["role"] for m in ex["meta"]["messages"]]
    assert roles.count("system") == 1 and roles[0] == "system"
    assert "Late rule" in ex["meta"]["messages"][0]["content"]
    assert "Rule after the prompt" in ex["meta"]["messages"][0]["content"]
    _, processor = tiny_model()
    assert "Late rule: be brief." in example_text(processor, ex)


def test_toolmind_named_subsets(tmp_path):
    (tmp_path / "open_datasets").mkdir()
    (tmp_path / "open_datasets" / "ToolACE-query.jsonl").write_text(TOOLMIND.read_text())
    (tmp_path / "open_datasets" / "When2Call-query.jsonl").write_text(TOOLMIND.read_text())
    both = load_toolmind(tmp_path, split="all")
    one = load_toolmind(tmp_path, split="all", subsets=["ToolACE-query"])
    assert len(both) == 2 * len(one) and {e["meta"]["source_file"] for e in one} == {"ToolACE-query.jsonl"}
    with pytest.raises(FileNotFoundError, match="graphsyn"):
        load_toolmind(tmp_path, split="all", subsets=["graphsyn"])


def test_gsm8k_sft_target_carries_the_worked_solution_without_calculator_annotations():
    from art_lib.registry import default_sft_target as sft_completion
    from art_lib.rewards import get_scorer

    for ex in load_gsm8k(GSM8K, limit=50):
        target = sft_completion(ex)
        steps = ex["meta"]["solution"].split("####")[0].strip()
        assert "<<" not in target and ">>" not in target and "####" not in target
        assert target.endswith(f"\nAnswer: {ex['answer']}")
        assert len(target.splitlines()) == len(steps.splitlines()) + 1  # every solution line, then the answer
        assert get_scorer("gsm8k")(target, ex) == 1.0
    first = load_gsm8k(GSM8K, limit=1)[0]
    assert sft_completion(first) == (
        "Janet sells 16 - 3 - 4 = 9 duck eggs a day.\n"
        "She makes 9 * 2 = $18 every day at the farmer\u2019s market.\nAnswer: 18"
    )


def test_data_dir_resolves_per_benchmark_sources_and_names_missing_files(tmp_path):
    from art_lib.data import data_kwargs

    assert data_kwargs("gsm8k", None) == {} and data_kwargs("toy_add", tmp_path) == {}
    assert data_kwargs("svamp", DATA) == {"source": str(DATA / "svamp")}
    assert data_kwargs("bfcl_simple", DATA) == {"source": str(DATA / "bfcl")}
    assert data_kwargs("toolmind", {"toolmind": {"source": "x", "subsets": ["a"]}}) == {"source": "x", "subsets": ["a"]}
    assert data_kwargs("gsm8k", {"svamp": "y"}) == {}
    assert len(load_benchmark("svamp", data_dir=DATA, split="test")) == 300
    with pytest.raises(FileNotFoundError, match="gpqa_diamond.csv"):
        load_benchmark("gpqa", data_dir=DATA)
    with pytest.raises(FileNotFoundError, match="train.jsonl"):
        load_benchmark("gsm8k", data_dir=DATA, split="train")


def test_a_local_looking_missing_path_is_never_sent_to_the_hub(tmp_path, monkeypatch):
    import time

    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    t = time.perf_counter()
    with pytest.raises(FileNotFoundError, match="test.jsonl"):
        load_gsm8k("data/gsm8k")  # the README's example, folder not there yet
    assert time.perf_counter() - t < 2


def test_toolmind_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="ToolMind"):
        load_toolmind(tmp_path / "missing.jsonl")
    with pytest.raises(ValueError):
        load_toolmind(TOOLMIND, split="validation")
    fake = types.ModuleType("huggingface_hub")

    def offline(**kwargs):
        raise OSError("offline")

    fake.hf_hub_download = offline
    monkeypatch.setitem(sys.modules, "huggingface_hub", fake)
    with pytest.raises(FileNotFoundError, match="Nanbeige/ToolMind"):
        load_toolmind("Nanbeige/ToolMind", subsets=["ToolACE-query"])


# --------------------------------------------------------------------------- #
# BFCL
# --------------------------------------------------------------------------- #

_BFCL_FILE = {"simple": "simple_python"}


def _json_types(node, found):
    if isinstance(node, dict):
        if "type" in node and isinstance(node["type"], str):
            found.add(node["type"])
        assert "optional" not in node
        for value in node.values():
            _json_types(value, found)
    elif isinstance(node, list):
        for value in node:
            _json_types(value, found)
    return found


@pytest.mark.parametrize("folder", BFCL_DIRS, ids=lambda p: "shared-full" if p == SHARED_BFCL else "tests-subset")
@pytest.mark.parametrize("category", BFCL_CATEGORIES)
def test_bfcl_every_category_loads(folder, category):
    qfile = folder / f"BFCL_v4_{_BFCL_FILE.get(category, category)}.json"
    examples = load_bfcl(category, source=folder)
    assert len(examples) == sum(1 for line in qfile.read_text().splitlines() if line.strip())
    for ex in examples:
        _check_schema(ex)
        meta = ex["meta"]
        assert meta["category"] == category and meta["messages"] == []
        assert len(meta["tools"]) == len(meta["functions"])
        assert _json_types([t["function"]["parameters"] for t in meta["tools"]], set()) <= {
            "object",
            "string",
            "integer",
            "number",
            "boolean",
            "array",
        }
        calls = json.loads(ex["answer"])
        if category == "irrelevance":
            assert ex["answer"] == "[]" and meta["possible_answers"] == []
        else:
            assert len(calls) == len(meta["possible_answers"]) >= 1
            assert [c["name"] for c in calls] == [next(iter(p)) for p in meta["possible_answers"]]
        if category in ("simple", "multiple"):
            assert len(calls) == 1


def test_bfcl_conversion_and_gold_rendering():
    (ex,) = load_bfcl("simple", source=BFCL, limit=1)
    assert ex["id"] == "simple_python_0"
    assert ex["prompt"] == "Find the area of a triangle with a base of 10 units and height of 5 units."
    assert ex["meta"]["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "calculate_triangle_area",
                "description": "Calculate the area of a triangle given its base and height.",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "base": {"type": "integer", "description": "The base of the triangle."},
                        "height": {"type": "integer", "description": "The height of the triangle."},
                        "unit": {
                            "type": "string",
                            "description": "The unit of measure (defaults to 'units' if not specified)",
                        },
                    },
                    "required": ["base", "height"],
                },
            },
        }
    ]
    assert json.loads(ex["answer"]) == [
        {"name": "calculate_triangle_area", "arguments": {"base": 10, "height": 5, "unit": "units"}}
    ]
    # dict parameter: nested possible answers rendered to a plain dict; tuple -> array; float -> number
    (dict_ex,) = [e for e in load_bfcl("simple", source=BFCL) if e["id"] == "simple_python_94"]
    assert json.loads(dict_ex["answer"])[0]["arguments"]["update_info"] == {
        "name": "John Doe",
        "email": "johndoe@email.com",
    }
    assert dict_ex["meta"]["tools"][0]["function"]["parameters"]["properties"]["update_info"]["type"] == "object"
    (tuple_ex,) = [e for e in load_bfcl("simple", source=BFCL) if e["id"] == "simple_python_83"]
    coord = tuple_ex["meta"]["tools"][0]["function"]["parameters"]["properties"]["coord1"]
    assert coord["type"] == "array" and coord["items"]["type"] == "number"
    # "" first means optional: omitted from the rendered gold
    (opt_ex,) = [e for e in load_bfcl("simple", source=BFCL) if e["id"] == "simple_python_2"]
    assert json.loads(opt_ex["answer"])[0]["arguments"] == {"x": 4, "y": 5}


def test_bfcl_errors_and_aliases(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_bfcl("simple", source=tmp_path)
    assert "BFCL_v4_simple_python.json" in str(err.value) and "gorilla" in str(err.value)
    (tmp_path / "BFCL_v4_parallel.json").write_text((BFCL / "BFCL_v4_parallel.json").read_text())
    with pytest.raises(FileNotFoundError, match="possible_answer"):
        load_bfcl("parallel", source=tmp_path)
    with pytest.raises(ValueError, match="parallel_multiple"):
        load_bfcl("live_simple", source=BFCL)
    assert _ids(load_bfcl("simple_python", source=BFCL, limit=3)) == [
        "simple_python_0",
        "simple_python_1",
        "simple_python_2",
    ]
    a = load_bfcl("multiple", source=BFCL, seed=5, limit=10)
    assert _ids(a) == _ids(load_bfcl("multiple", source=BFCL, seed=5, limit=10))


# --------------------------------------------------------------------------- #
# Dispatch
# --------------------------------------------------------------------------- #


def test_load_benchmark_dispatch():
    assert load_benchmark("gsm8k", source=GSM8K, limit=2) == load_gsm8k(GSM8K, limit=2)
    assert load_benchmark("SVAMP", source=SVAMP, split="train", limit=2) == load_svamp(SVAMP, split="train", limit=2)
    assert load_benchmark("toolmind", source=TOOLMIND, split="all") == load_toolmind(TOOLMIND, split="all")
    assert load_benchmark("bfcl", category="parallel", source=BFCL) == load_bfcl("parallel", source=BFCL)
    assert load_benchmark("bfcl_parallel_multiple", source=BFCL) == load_bfcl("parallel_multiple", source=BFCL)
    assert load_benchmark("bfcl-irrelevance", source=BFCL) == load_bfcl("irrelevance", source=BFCL)
    assert set(benchmark_names()) >= {"gsm8k", "svamp", "gpqa", "toolmind", "bfcl", "bfcl_simple"}


def test_load_benchmark_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as err:
        load_benchmark("mmlu")
    for name in ("gsm8k", "svamp", "gpqa", "toolmind", "bfcl"):
        assert name in str(err.value)


def test_looks_local_distinguishes_hub_ids():
    assert not D.looks_local("openai/gsm8k")
    assert D.looks_local("/abs/path") and D.looks_local("data/x/test.jsonl") and D.looks_local("file.csv")


# --------------------------------------------------------------------------- data errors name file, line, field


def _gsm8k_file(tmp_path: Path, lines: list[str], data: bytes | None = None) -> Path:
    path = tmp_path / "test.jsonl"
    path.write_bytes(data if data is not None else "\n".join(lines).encode() + b"\n")
    return path


GOOD = json.dumps({"question": "What is 1 + 1?", "answer": "1 + 1 = 2\n#### 2"})


def test_a_malformed_line_names_the_file_and_line(tmp_path):
    path = _gsm8k_file(tmp_path, [GOOD, GOOD, '{"question": "x", "answer": '])
    with pytest.raises(D.DataError, match=rf"{path}:3: invalid JSON"):
        load_benchmark("gsm8k", source=path)


def test_a_missing_key_names_the_key_file_and_line(tmp_path):
    path = _gsm8k_file(tmp_path, [GOOD, json.dumps({"question": "x"})])
    with pytest.raises(KeyError, match=rf"{path}:2: missing field 'answer'"):
        load_benchmark("gsm8k", source=path)


def test_a_non_string_field_is_named(tmp_path):
    path = _gsm8k_file(tmp_path, [json.dumps({"question": 7, "answer": "#### 7"})])
    with pytest.raises(D.DataError, match=rf"{path}:1: field 'question' must be str, got int"):
        load_benchmark("gsm8k", source=path)
    path.write_text("[1, 2]\n")
    with pytest.raises(D.DataError, match=rf"{path}:1: expected a JSON object, got list"):
        load_benchmark("gsm8k", source=path)


def test_a_utf8_bom_is_accepted_and_other_encodings_are_a_clear_error(tmp_path):
    plain = load_benchmark("gsm8k", source=_gsm8k_file(tmp_path, [GOOD]))
    bom = load_benchmark("gsm8k", source=_gsm8k_file(tmp_path, [], b"\xef\xbb\xbf" + GOOD.encode() + b"\n"))
    assert bom == plain
    latin1 = json.dumps({"question": "Caf\u00e9?", "answer": "#### 1"}, ensure_ascii=False).encode("latin-1")
    path = _gsm8k_file(tmp_path, [], GOOD.encode() + b"\n" + latin1 + b"\n")
    with pytest.raises(D.DataError, match=rf"{path}:2: not UTF-8 text"):
        load_benchmark("gsm8k", source=path)


def test_json_array_files_with_a_bom_and_bad_items_are_checked(tmp_path):
    src = json.loads((DATA / "svamp" / "SVAMP.json").read_text())
    path = tmp_path / "SVAMP.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(src).encode())
    assert len(load_benchmark("svamp", source=path, split="all")) == len(src)
    del src[5]["Body"]
    path.write_text(json.dumps(src))
    with pytest.raises(KeyError, match=rf"{path} item 5: missing field 'Body'"):
        load_benchmark("svamp", source=path, split="all")


def test_a_gpqa_csv_with_a_short_row_names_its_line(tmp_path):
    path = tmp_path / "gpqa.csv"
    cols = ["Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols), w.writerow(["q", "a", "b", "c", "d"]), w.writerow(["q2", "a"])
    with pytest.raises(D.DataError, match=rf"{path}:3: field 'Incorrect Answer 1' must be str, got NoneType"):
        load_benchmark("gpqa", source=path)


def test_load_benchmark_once_reads_a_split_once_and_hands_out_copies(monkeypatch):
    from art_lib import data

    reads, load = [], data.load_benchmark
    monkeypatch.setattr(data, "load_benchmark", lambda *a, **kw: reads.append(kw) or load(*a, **kw))  # the real one
    monkeypatch.setattr(data, "_LOADED", {})
    first = data.load_benchmark_once("toy_add", split="test", limit=5)
    first[0]["prompt"] = "changed by a caller"
    second = data.load_benchmark_once("toy_add", split="test", limit=5)
    assert len(reads) == 1 and second == load("toy_add", split="test", limit=5)
    data.load_benchmark_once("toy_add", split="train", limit=5)  # other arguments: read again
    assert len(reads) == 2
