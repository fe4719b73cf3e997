"""`reproduce --plan` is an upper bound (resample rounds, evaluation batches, measured prompts, per-size speeds,
everything alive at the memory peak), and `--calibrate` measures the speeds it assumes (CPU: the stand-in)."""

import json

import pytest

from art_lib import calibrate, cost, plan, prompt_lengths, reproduce

QUICK = ["00_quickstart"]


def _row(df, **match):
    sel = df
    for k, v in match.items():
        sel = sel[sel[k] == v]
    assert len(sel) == 1, match
    return sel.iloc[0]


# --------------------------------------------------------------------------- the plan's arithmetic


def test_dapo_counts_every_resample_round_of_dynamic_sampling():
    df = plan.plan("paper", only=["tab2_art_vs_lora"])
    row = _row(df, benchmark="svamp", arm="art", objective="dapo")
    from art_lib.config import TrainConfig

    rounds = 1 + TrainConfig.max_resample_rounds
    # rollouts: steps x prompts x generations x budget in each of the rounds, plus the greedy test split
    assert row.generated_tokens == 200 * 16 * 8 * 512 * rounds + 300 * 512
    arm = plan.plan_arms("00_quickstart", plan.load_params("00_quickstart", "paper"))[0]
    assert arm["objective"] == "dapo"
    tp = cost.Throughput()
    with_rounds = cost.arm_cost(arm, {}, tp)
    without = cost.arm_cost(arm, {"max_resample_rounds": 0}, tp)
    off = cost.arm_cost(arm, {"dynamic_sampling": False}, tp)
    assert with_rounds["seconds_hf"] > without["seconds_hf"] == off["seconds_hf"]
    assert with_rounds["generated_tokens"] > without["generated_tokens"]
    assert cost.arm_cost(arm | {"objective": "grpo"}, {}, tp)["resample_rounds"] == 0  # GRPO does not resample


def test_a_smaller_evaluation_batch_costs_more_time_and_a_larger_one_more_memory():
    small = plan.plan("paper", only=QUICK, overrides={"eval_batch_size": 8})
    large = plan.plan("paper", only=QUICK, overrides={"eval_batch_size": 1024})
    ctl_small, ctl_large = (_row(d, arm="controls") for d in (small, large))
    assert ctl_small.gpu_hours_hf > ctl_large.gpu_hours_hf  # 8 rows per decoding step instead of 1024
    assert ctl_large.peak_gpu_gb > ctl_small.peak_gpu_gb  # the evaluation cache of 1024 rows to the full budget
    # the DAPO arm evaluates too: its peak covers the evaluation cache, not only the rollouts and training
    assert _row(large, arm="art").peak_gpu_gb > _row(small, arm="art").peak_gpu_gb


def test_prompt_lengths_are_measured_from_the_notebooks_data(tmp_path):
    model = "Qwen/Qwen3.5-0.8B"
    tool, svamp = prompt_lengths.measure("toolmind", model), prompt_lengths.measure("svamp", model)
    assert tool.examples > 0 and svamp.examples > 0 and "tests/data" in tool.source
    assert tool.prompt > 2 * svamp.prompt  # every tool's JSON schema is in ToolMind's system turn
    df = plan.plan("paper", only=["fig_artworks"])
    visual = prompt_lengths.visual_tokens(model, 256, 256)
    assert visual == 64
    assert _row(df, benchmark="toolmind").prompt_tokens == tool.prompt + visual > 300  # the old fixed assumption
    # a notebook's local data_dir is what is measured: one long question there makes GSM8K's prompts long
    question = "How many apples does Ann have after she " + "gives one away and buys two more, " * 150 + "?"
    (tmp_path / "test.jsonl").write_text(json.dumps({"question": question, "answer": "#### 3"}) + "\n")
    long = plan.plan("paper", only=QUICK, overrides={"data_dir": {"gsm8k": str(tmp_path / "test.jsonl")}})
    assert _row(long, arm="art").prompt_tokens >= prompt_lengths.token_bound(question) // 2
    assert _row(long, arm="art").prompt_tokens > _row(plan.plan("paper", only=QUICK), arm="art").prompt_tokens


def test_the_character_bound_is_at_least_the_count_of_a_byte_level_bpe():
    from art_lib.models import tiny_tokenizer

    tok = tiny_tokenizer()  # a byte-level BPE with few merges: more tokens per character than Qwen's
    texts = ['{"name": "get_weather", "arguments": {"city": "Paris"}}', "12345 + 678 = 13023", "naïve café 東京"]
    for text in texts:
        assert prompt_lengths.token_bound(text) >= 0.5 * len(tok(text).input_ids), text


def test_speeds_are_per_model_size_and_a_calibration_replaces_only_what_it_measured(tmp_path):
    base = plan.plan("paper", only=["tab1_model_sizes"])
    record = {
        "device": "test GPU",
        "created": "now",
        "sizes": {"0.8B": {"speed": {"hf_step_ms": 2 * cost.ASSUMED["0.8B"].hf_step_ms}, "raw": {}}},
    }
    (tmp_path / "c.json").write_text(json.dumps(record))
    tp = calibrate.load_calibration(tmp_path / "c.json")
    assert tp.measured == {"0.8B": ["hf_step_ms"]}
    slow = plan.plan("paper", only=["tab1_model_sizes"], tp=tp)
    small = base.model == "Qwen/Qwen3.5-0.8B"
    assert (slow[small].gpu_hours_hf > base[small].gpu_hours_hf).all()
    assert (slow[~small].gpu_hours_hf == base[~small].gpu_hours_hf).all()  # 2B and 4B keep their own speeds
    assert (slow.gpu_hours_vllm == base.gpu_hours_vllm).all()  # vLLM's speeds were not measured
    assert any("0.8B: hf_step_ms" in line for line in calibrate.replaced(tp))


def test_peak_memory_holds_weights_trainable_state_and_the_largest_phase():
    df = plan.plan("paper", only=["tab3_dimensionality_alignment"])
    assert _row(df, arm="lora-r16").peak_gpu_gb > _row(df, arm="lora-r1").peak_gpu_gb  # Adam states of the adapter
    assert _row(df, arm="art-512px").peak_gpu_gb > _row(df, arm="art-256px").peak_gpu_gb  # 256 visual tokens, not 64
    arm = plan.plan_arms("tab1_model_sizes", plan.load_params("tab1_model_sizes", "paper"))[-1]
    assert arm["model"].endswith("4B") and arm["method"] == "lora"
    parts = cost.memory_parts(arm, {"micro_batch_size": 8, "gradient_checkpointing": True})
    assert parts["trainable"] == 16 * cost.lora_parameters(arm["model"], 8)  # fp32 weight, grad, two Adam moments
    assert parts["weights"] == 2 * cost.parameters(arm["model"])
    peak = cost.peak_memory_gb(arm, {"micro_batch_size": 8, "gradient_checkpointing": True})
    phases = max(parts["rollout_cache"], parts["eval_cache"], parts["activations"])
    assert peak * 1e9 >= parts["weights"] + parts["trainable"] + phases


def test_fitted_step_times_bound_every_measured_batch():
    for points in ([(128, 20.0), (64, 14.0)], [(128, 10.0), (64, 11.0)], [(8, 1.0), (8, 1.2)]):
        step, row = calibrate.fit_steps(points, new_tokens=512)
        speed = cost.Speed(step, row, 1, 0, 1, 0, 0)
        assert all(speed.gen_seconds(r, 512) >= s - 1e-9 for r, s in points), points


# --------------------------------------------------------------------------- calibration on CPU (the stand-in)


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    root = tmp_path_factory.mktemp("calibration")
    reproduce.main(["paper", "--only", "00_quickstart", "--calibrate", "--results-root", str(root)])
    return root


def test_calibrate_without_cuda_measures_the_standin_on_cpu_and_says_so(calibrated, capsys):
    record = json.loads((calibrated / "calibration.json").read_text())
    assert record["device"].startswith("CPU") and "stand-in" in record["note"]
    (size, got), *_ = record["sizes"].items()
    assert size == "standin-qwen3_5" and set(got["speed"]) >= set(calibrate.HF_FIELDS)
    assert all(v > 0 for k, v in got["speed"].items() if k != "hf_row_ms")
    assert got["raw"]["hf_rollout_tokens_per_s"] > 0 and got["raw"]["train_tokens_per_s"] > 0
    argv = ["paper", "--only", "00_quickstart", "--plan", "--dry-run", "--results-root", str(calibrated)]
    reproduce.main([*argv, "--calibration", str(calibrated / "calibration.json")])
    out = capsys.readouterr().out
    assert "measured on CPU" in out and "measured: hf_row_ms, hf_step_ms, load_s, train_tflops" in out
    assert "vLLM speeds are assumptions" in out


def test_the_gpu_smoke_vllm_step_refuses_without_cuda_like_the_others():
    import subprocess
    import sys

    import torch

    if torch.cuda.is_available():
        pytest.skip("on a GPU the smoke test runs for real (scripts/gpu_smoke.sh)")
    script = plan.ROOT / "scripts" / "gpu_smoke.py"
    done = subprocess.run([sys.executable, str(script), "--vllm"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "no CUDA device visible to torch" in done.stderr, done.stderr
