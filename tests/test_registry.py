"""The benchmark registry: one object per benchmark, used by loaders, scorers, parsers and the trainer."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from art_lib import registry
from art_lib.data import load_benchmark
from art_lib.rewards import get_scorer
from art_lib.scoring import parse_prediction, score_completions


@pytest.fixture(autouse=True)
def _registry_restored():
    """Benchmarks a test registers are removed after it: other tests iterate over every registered name."""
    before = set(registry.benchmark_names())
    yield
    for name in set(registry.benchmark_names()) - before:
        registry.unregister_benchmark(name)


def test_a_user_benchmark_works_wherever_a_builtin_one_does():
    examples = [{"id": "u0", "prompt": "Say yes", "answer": "yes", "meta": {}}]
    bench = registry.Benchmark(
        "my_yes",
        load=lambda **kw: examples,
        score=lambda c, e: float(c.strip() == e["answer"]),
        parse=lambda c, e: c.strip(),
        max_new_tokens=4,
        aliases=("my-yes-alias",),
    )
    registry.register_benchmark(bench, replace=True)
    try:
        assert load_benchmark("MY-YES") == examples
        assert load_benchmark("my_yes_alias") == examples
        assert get_scorer("my_yes")(" yes", examples[0]) == 1.0
        assert parse_prediction(" yes ", examples[0], "my_yes") == "yes"
        res = score_completions(examples, ["yes"], "my_yes")
        assert res.accuracy == 1.0
        with pytest.raises(ValueError, match="already registered"):
            registry.register_benchmark(bench)
    finally:
        registry.unregister_benchmark("my_yes")  # other tests iterate over every registered benchmark
    assert "my_yes" not in registry.benchmark_names()
    with pytest.raises(ValueError, match="Unknown benchmark"):
        load_benchmark("my_yes_alias")


# Run in a fresh interpreter: which modules an import brings in, and what it registers, depends on what ran before.
_IMPORT_PROBE = """
import sys
opened = []
sys.addaudithook(lambda event, args: opened.append(str(args[0])) if event == "open" else None)
import art_lib.registry as registry
print(sorted(m for m in sys.modules if m.startswith(("art_lib.tasks", "art_lib.toy"))))
print(sorted(registry._BENCHMARKS), sorted(registry._SCHEMES))
import art_lib.toy
print(sorted(registry._BENCHMARKS), sorted(registry._SCHEMES))
print(sorted(p for p in opened if p.startswith(sys.argv[1]) and not p.endswith((".py", ".pyc"))))
"""


def test_the_registry_imports_nothing_and_the_toy_world_registers_itself_on_import():
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE, str(root / "art_lib")],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
    ).stdout.splitlines()
    assert out[0] == "[]"  # importing the registry imports no benchmark module
    assert out[1] == "[] []"  # ... and registers nothing
    names, schemes = out[2].split("] [")
    for name in ("gsm8k", "gpqa", "bfcl", "toy_add", "toy_tool"):  # the toy world uses the built-ins' scorers
        assert f"'{name}'" in names
    assert schemes == "'toy']"
    assert out[3] == "[]"  # no file of the kit read at import (no checkpoint, no data): only its code


def test_unknown_benchmark_lists_the_registered_names():
    with pytest.raises(ValueError, match="gsm8k"):
        get_scorer("no_such_benchmark")


def test_parsed_column_shows_what_the_scorer_read():
    # An arithmetic toy benchmark is parsed as a number, the toy tool task as tool calls.
    add = {"id": "a", "prompt": "3 and 4", "answer": "7", "meta": {}}
    assert parse_prediction("Answer: 7", add, "toy_add") == "7"
    tool = load_benchmark("toy_tool", split="test", limit=1)[0]
    calls = parse_prediction(tool["meta"]["target"], tool, "toy_tool")
    assert isinstance(calls, list) and calls and calls[0]["name"]
    assert get_scorer("toy_tool")(tool["meta"]["target"], tool) == 1.0


def test_model_names_of_unregistered_schemes_are_left_alone():
    assert registry.resolve_model("Qwen/Qwen3.5-0.8B") == ("Qwen/Qwen3.5-0.8B", "Qwen/Qwen3.5-0.8B")
    assert registry.model_scheme("toy:base")[0].scheme == "toy"


def test_sft_trains_toward_the_benchmarks_own_target():
    from art_lib.models import tiny_model
    from art_lib.train import train

    seen = []

    def target(example):
        seen.append(example["id"])
        return "Answer: yes"

    examples = [{"id": f"t{i}", "prompt": "Say yes", "answer": "yes", "meta": {}} for i in range(2)]
    registry.register_benchmark(
        registry.Benchmark(
            "my_target", load=lambda **kw: examples, score=lambda c, e: 0.0, parse=lambda c, e: c, sft_target=target
        ),
        replace=True,
    )
    model, proc = tiny_model(seed=0)
    train(
        model,
        proc,
        examples,
        method="art",
        objective="sft",
        steps=1,
        batch_size=2,
        image_size=256,
        benchmark="my_target",
        progress=False,
    )
    assert sorted(seen) == ["t0", "t1"]


@pytest.mark.parametrize("name", registry.benchmark_names()[-5:])  # the toy world's five tasks
def test_toy_parse_gives_exactly_what_the_score_compares(name):
    """The `parsed` column is the value the scorer judged: score 1 exactly when it equals the gold."""
    from decimal import Decimal

    bench = registry.get_benchmark(name)
    assert name.startswith("toy_")
    for ex in load_benchmark(name, split="test", limit=4):
        target = ex["meta"]["target"]
        if name == "toy_tool":  # the gold call with its first argument off by one
            call = json.loads(ex["answer"])
            key = next(iter(call["arguments"]))
            call["arguments"][key] += 1
            wrong = f"<tool_call>{json.dumps(call)}</tool_call>"
        else:
            wrong = f"Answer: {Decimal(ex['answer']) + 1}"
        for completion in (target, wrong, "Answer: 5", " Answer: 12 apples", "no answer", "", "<tool_call>{}"):
            parsed, score = bench.parse(completion, ex), bench.score(completion, ex)
            if name == "toy_tool":  # the gold is one call: the parsed calls must be exactly it
                same = parsed == [json.loads(ex["answer"])]
            else:  # a number: the parsed string must equal the gold numerically
                same = parsed is not None and Decimal(parsed) == Decimal(ex["answer"])
            assert score == float(same), (completion, parsed, ex["answer"])
            row = score_completions([ex], [completion], name).rows.iloc[0]
            assert row["parsed"] == (json.dumps(parsed) if isinstance(parsed, list) else parsed)
        assert bench.score(target, ex) == 1.0 and bench.score(wrong, ex) == 0.0
