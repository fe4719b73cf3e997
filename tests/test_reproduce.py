"""`reproduce --plan` on every paper yaml; notebook runtime settings reach the model; arms resume and skip."""

import dataclasses
import json
import re

import pytest
import torch

from art_lib import plan, reproduce
from art_lib.experiments import Arm, Checkpointing, Runtime, arm_checkpoints, config_hash, resolve_runtime, run_arm
from art_lib.transforms import resize_to

PAPER = sorted((plan.ROOT / "notebooks" / "params").glob("*.paper.yaml"))


@pytest.mark.parametrize("path", PAPER, ids=lambda p: p.name)
def test_plan_runs_on_every_paper_yaml_without_loading_a_model(path):
    stem = path.name.split(".")[0]
    df = plan.plan("paper", only=[stem])
    assert len(df) and (df.notebook == stem).all()
    assert (df.gpu_hours_hf > 0).all() and (df.gpu_hours_vllm > 0).all() and (df.peak_gpu_gb > 1).all()
    assert (df.generated_tokens > 0).all()
    trained = df[df.steps > 0]
    assert len(trained) and (trained.peak_gpu_gb < 80).all()


def test_plan_counts_follow_the_parameters():
    df = plan.plan("paper", only=["tab2_art_vs_lora"])
    rl = df[df.objective == "dapo"]
    assert len(rl) == 6 and (rl.generations == 8).all() and (rl.budget == 512).all()
    # rollouts: steps x prompts x generations x budget in each of DAPO's rounds, plus the greedy test split
    row = rl[(rl.benchmark == "svamp") & (rl.arm == "art")].iloc[0]
    assert row.generated_tokens == 200 * 16 * 8 * 512 * (1 + row.resample_rounds) + 300 * 512
    sft = df[(df.benchmark == "svamp") & (df.arm == "art") & (df.objective == "sft")].iloc[0]
    assert row.gpu_hours_hf > sft.gpu_hours_hf and row.gpu_hours_vllm > sft.gpu_hours_vllm


def test_plan_memory_shrinks_with_micro_batches_and_checkpointing():
    arm = plan.plan_arms(
        "00_quickstart",
        {
            "model": "Qwen/Qwen3.5-0.8B",
            "benchmark": "gsm8k",
            "method": "art",
            "objective": "dapo",
            "steps": 1,
            "batch_size": 16,
            "num_generations": 8,
        },
    )[0]
    tp = plan.Throughput()
    whole = plan.peak_memory_gb(arm, {}, tp)
    micro = plan.peak_memory_gb(arm, {"micro_batch_size": 8}, tp)
    ckpt = plan.peak_memory_gb(arm, {"micro_batch_size": 8, "gradient_checkpointing": True}, tp)
    assert whole > micro > ckpt > 2 * 0.85  # at least the bfloat16 weights of 0.85B parameters


def test_cuda_asked_without_cuda_is_an_error():
    if torch.cuda.is_available():
        assert resolve_runtime("auto", "auto") == ("cuda", "bfloat16")
        return
    assert resolve_runtime("auto", "auto") == ("cpu", "float32")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        resolve_runtime("cuda", "auto")


def test_config_hash_is_stable_and_sees_every_setting():
    a = {"steps": 2, "eot": resize_to((32, 32)), "lr": 0.1}
    assert config_hash(a) == config_hash({"steps": 2, "eot": resize_to((32, 32)), "lr": 0.1})
    assert config_hash(a) != config_hash(a | {"eot": resize_to((64, 64))})
    assert config_hash(a) != config_hash(a | {"lr": 0.2})
    from art_lib.transforms import RandomEOT  # holds a torch.Generator: hashed by state, not by address

    def jpeg(seed):
        return {"eot": RandomEOT(["jpeg"], p=0.8, seed=seed)}

    assert config_hash(jpeg(0)) == config_hash(jpeg(0))
    assert config_hash(jpeg(0)) != config_hash(jpeg(1))


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    return reproduce.standin_checkpoint(tmp_path_factory.mktemp("standin"))


def test_dtype_reaches_the_model_and_a_finished_arm_is_skipped_on_resume(standin, tmp_path, capsys):
    arm = Arm(
        standin,
        "gsm8k",
        "art",
        n_train=2,
        n_test=2,
        image_size=256,
        max_new_tokens=4,
        train=dict(steps=2, batch_size=2),
    )
    data = {"gsm8k": str(reproduce.DATA / "gsm8k" / "test.jsonl")}
    rt = Runtime(device="cpu", dtype="bfloat16", data_dir=data, eval_batch_size=2)
    ck = Checkpointing(tmp_path, every=1, resume=True)
    row, res = run_arm(arm, rt, ck)
    assert row["dtype"] == "bfloat16" and row["device"] == "cpu" and res is not None
    assert res.artwork.raw.dtype == torch.float32  # the artwork stays float32
    assert [p.name for p in arm_checkpoints(tmp_path, "art-gsm8k-sft-seed0", 1).checkpoints()] == [
        "step-000001",
        "step-000002",
    ]
    (rec,) = [json.loads(line) for line in (tmp_path / "arms.jsonl").read_text().splitlines()]
    assert rec["row"] == json.loads(json.dumps(row, default=str))
    again, res2 = run_arm(arm, rt, ck)
    assert res2 is None and again == rec["row"] and "finished earlier" in capsys.readouterr().out
    changed, res3 = run_arm(dataclasses.replace(arm, train=dict(steps=3, batch_size=2)), rt, ck)  # trained (resumed)
    assert res3 is not None and changed["steps"] == 3


def test_paper_checks_fail_on_a_missing_arm_a_control_above_the_arm_or_an_rl_arm_without_update():
    import pandas as pd

    from art_lib.results import table_checks

    good = pd.DataFrame(
        [
            {
                "benchmark": "gsm8k",
                "method": "art",
                "objective": "dapo",
                "accuracy": 0.5,
                "ci_low": 0.3,
                "ci_high": 0.7,
                "n_test": 10,
                "policy_updates": 3,
            },
            {
                "benchmark": "gsm8k",
                "method": "control:seed",
                "objective": "none",
                "accuracy": 0.0,
                "ci_low": 0.0,
                "ci_high": 0.3,
                "n_test": 10,
                "policy_updates": 0,
            },
        ]
    )
    expected = [{"benchmark": "gsm8k", "method": "art"}, {"method": "control:seed"}]
    assert all(table_checks(good, expected).values())
    assert not all(table_checks(good, expected + [{"method": "lora"}]).values())
    control_wins = good.assign(accuracy=[0.5, 0.6], ci_low=[0.3, 0.4], ci_high=[0.7, 0.8])
    assert not all(table_checks(control_wins, expected).values())
    assert not all(table_checks(good.assign(policy_updates=0), expected).values())


def test_config_hash_accepts_engine_like_objects():
    # A rollout engine holds locks (builtin methods have no __closure__) and refers to itself.
    import threading

    from art_lib.experiments import config_hash

    class Engine:
        def __init__(self, name):
            self.name, self.lock = name, threading.Lock()
            self.acquire, self.me = self.lock.acquire, self

    assert config_hash({"rollout_engine": Engine("a")}) == config_hash({"rollout_engine": Engine("a")})
    assert config_hash({"rollout_engine": Engine("a")}) != config_hash({"rollout_engine": Engine("b")})


# --------------------------------------------------------------------------- loud names: notebooks, scales, -p


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--only", "00_quickstrt"], "unknown notebook '00_quickstrt'; did you mean '00_quickstart'?"),
        (["--only", "00_quickstart", "tab2_art_vs_lorra"], "did you mean 'tab2_art_vs_lora'?"),
        (["--only", "/elsewhere/00_quickstart.ipynb"], "reproduce runs the kit's own notebooks"),
        (["tiny"], r"unknown scale 'tiny' \(valid: default, paper"),
        (["papr", "--plan"], "unknown scale 'papr'; did you mean 'paper'?"),
        (["--only", "00_quickstart", "-p", "stesp=3"], "00_quickstart has no parameter 'stesp'; did you mean 'steps'?"),
        (["paper", "-p", "model=toy:base"], "tab1_model_sizes has no parameter 'model'; did you mean 'models'?"),
        (["--only", "00_quickstart", "-p", "steps=2.5"], r"steps must be of type int, got 2.5"),
        (["--only", "00_quickstart", "-p", "lr=1e-2"], "got '1e-2' \\(str\\) \\(YAML reads 1e-2 as text"),
        (["--only", "00_quickstart", "-p", "steps"], "-p takes name=value"),
    ],
)
def test_a_typo_in_a_name_or_value_exits_non_zero_naming_the_nearest_valid_one(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        reproduce.main([*argv, "--results-root", str(tmp_path)])  # should anything run, never into results/
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err


def test_a_notebook_path_selects_its_stem_and_a_scale_no_chosen_notebook_has_is_refused(tmp_path):
    by_path = plan.select("paper", ["notebooks/00_quickstart.ipynb", str(plan.ROOT / "notebooks" / "fig_artworks.py")])
    assert [nb.stem for nb, _ in by_path] == ["00_quickstart", "fig_artworks"]
    assert all(params for _, params in by_path)
    (tmp_path / "x.smoke.yaml").write_text("steps: 1\n")
    assert plan.scales(tmp_path) == ["default", "smoke"]
    with pytest.raises(ValueError, match="unknown notebook"):
        reproduce.run("default", only=["00_quickstrt"], results_root=tmp_path)


def test_parameter_values_are_read_as_yaml_and_checked_against_the_defaults_type():
    parsed = reproduce.parse_overrides(["steps=5", "lr=0.1", "resume=true", "seeds=[0, 1]", "n_test=", "tag=a=b"])
    assert parsed == {"steps": 5, "lr": 0.1, "resume": True, "seeds": [0, 1], "n_test": None, "tag": "a=b"}
    nb = plan.ROOT / "notebooks" / "00_quickstart.ipynb"
    plan.check_overrides(nb, {"steps": 5, "lr": 1, "n_test": None, "max_new_tokens": 16, "data_dir": {"toy": "x"}})
    for bad in ({"resume": 1}, {"steps": True}, {"model": 3}, {"lr": "fast"}):
        with pytest.raises(ValueError, match=f"parameter {next(iter(bad))} must be of type"):
            plan.check_overrides(nb, bad)
    df = plan.plan("paper", ["00_quickstart"], overrides={"steps": 3, "batch_size": 4})
    trained = df[df.steps > 0]
    assert len(trained) and (trained.steps == 3).all() and (trained.prompts_per_step == 4).all()


def test_parameters_reach_the_executed_notebook_and_its_results_folder(tmp_path):
    overrides = {"steps": 1, "batch_size": 2, "n_test": 2, "results_tag": "check"}
    assert reproduce.run("default", only=["00_quickstart"], results_root=tmp_path, overrides=overrides) == 0
    out = tmp_path / "00_quickstart.check"  # where the notebook writes its results, the executed copy beside them
    assert (out / "00_quickstart.ipynb").exists() and sorted(p.name for p in tmp_path.iterdir()) == [out.name]
    info = json.loads((out / "run_info.json").read_text())["parameters"]
    assert {k: info[k] for k in overrides} == overrides
    import pandas as pd

    table = pd.read_csv(out / "table.csv")
    assert (table.n_test == 2).all() and table[table.method == "art"].steps.tolist() == [1]
