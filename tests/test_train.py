"""One trainer for ART, LoRA and soft prompts: learning, frozen weights, RL end to end, resume, errors, DDP."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from art_lib.checkpoint import Checkpointer
from art_lib.config import METHODS
from art_lib.methods import Method, make_method
from art_lib.models import tiny_model
from art_lib.pixel_prompt import PixelPrompt
from art_lib.train import NonFiniteLossError, batch_indices, train
from art_lib.transforms import RandomEOT, resize_to

EXAMPLES = [
    {"id": str(i), "prompt": f"What is {i} plus {i + 3}?", "answer": str(2 * i + 3), "meta": {}} for i in range(8)
]
ROOT = Path(__file__).resolve().parent.parent


def _weights(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("method", ["art", "lora", "soft_prompt"])
def test_sft_lowers_loss_and_leaves_base_weights_bit_identical(method):
    model, proc = tiny_model(seed=0)
    before = _weights(model)
    art = PixelPrompt.from_icon("math", 256)
    res = train(
        model,
        proc,
        EXAMPLES,
        method=method,
        objective="sft",
        artwork=art,
        steps=4,
        batch_size=4,
        lr={"art": 0.05, "soft_prompt": 0.05, "lora": 5e-3}[method],
        progress=False,
    )
    loss = res.history["loss"].tolist()
    assert loss[-1] < loss[0] - 0.05, loss
    base = res.method.model.get_base_model() if method == "lora" else model
    for n, p in base.named_parameters():
        if "lora_" in n:
            continue
        key = n if n in before else n.replace("base_layer.", "")
        assert torch.equal(p, before[key]), f"{n} changed"
    assert res.trainable_parameters == {"art": 3 * 256 * 256, "soft_prompt": 64 * 64}.get(
        method, res.trainable_parameters
    )
    if method == "lora":
        names = [n for n, p in res.method.model.named_parameters() if p.requires_grad]
        assert names and all("language_model" in n for n in names)
        assert not any("linear_attn" in n or "visual" in n for n in names)


@pytest.mark.parametrize("objective", ["grpo", "dapo"])
def test_rl_runs_end_to_end_and_changes_the_artwork(objective):
    model, proc = tiny_model(seed=0)
    art = PixelPrompt.from_noise(256, seed=0)
    start = art.pixels().detach().clone()
    calls = []

    def reward(completions, examples):  # verifiable and varied: the number of distinct characters
        calls.append(len(completions))
        return [len(set(c)) / 10 for c in completions]

    res = train(
        model,
        proc,
        EXAMPLES,
        method="art",
        objective=objective,
        artwork=art,
        steps=2,
        batch_size=2,
        num_generations=4,
        max_completion_length=12,
        reward_fn=reward,
        lr=0.05,
        beta=0.04,
        # A random model rarely ends its turn within 12 tokens: DAPO's overlong filter would mask all.
        overlong_filter=False,
        progress=False,
    )
    h = res.history
    assert calls and all(c % 4 == 0 for c in calls)
    assert {"reward", "completion_length", "clip_ratio/region_mean", "kl"} <= set(h.columns)
    assert not torch.equal(res.artwork.pixels(), start), "the artwork did not change"
    assert float(res.artwork.pixels().min()) >= 0 and float(res.artwork.pixels().max()) <= 1


def test_lora_dropout_and_weight_decay_reach_the_adapter_and_optimiser():
    model, proc = tiny_model(seed=0)
    res = train(
        model,
        proc,
        EXAMPLES,
        method="lora",
        objective="sft",
        steps=2,
        batch_size=4,
        lr=5e-3,
        lora_dropout=0.1,
        weight_decay=0.5,
        progress=False,
    )
    assert res.method.model.peft_config["default"].lora_dropout == 0.1
    model2, _ = tiny_model(seed=0)
    plain = train(
        model2,
        proc,
        EXAMPLES,
        method="lora",
        objective="sft",
        steps=2,
        batch_size=4,
        lr=5e-3,
        lora_dropout=0.1,
        progress=False,
    )
    a, b = res.method.state_dict(), plain.method.state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)  # weight decay changed the update


def test_dapo_resampling_uses_groups_found_after_an_uninformative_first_round():
    """First rollout: every group has equal rewards; the resampled round's informative groups must be trained on."""
    model, proc = tiny_model(seed=0)
    calls = []

    def reward(completions, examples):
        calls.append(len(completions))
        if len(calls) == 1:
            return [0.0] * len(completions)
        return [float(i % 2) for i in range(len(completions))]  # every group informative

    res = train(
        model,
        proc,
        EXAMPLES,
        method="art",
        objective="dapo",
        artwork=PixelPrompt.from_noise(256, seed=0),
        steps=1,
        batch_size=2,
        num_generations=2,
        max_completion_length=6,
        reward_fn=reward,
        lr=0.05,
        max_resample_rounds=2,
        overlong_filter=False,
        progress=False,
    )
    row = res.history.iloc[0]
    assert len(calls) == 2 and not row["skipped"], row.to_dict()
    assert row["groups_kept"] == 2 and row["loss"] == row["loss"]


@pytest.mark.parametrize("method", ["art", "lora"])
def test_init_state_starts_from_a_warm_start_and_keeps_the_seed_as_reference(method):
    model, proc = tiny_model(seed=0)
    warm = train(
        model,
        proc,
        EXAMPLES,
        method=method,
        objective="sft",
        artwork=PixelPrompt.from_icon("math", 256),
        steps=2,
        batch_size=4,
        lr=0.05,
        progress=False,
    )
    state = warm.method.state_dict()
    if method == "lora":
        model = warm.method.model.unload()
    seed = PixelPrompt.from_icon("math", 256)
    res = train(
        model,
        proc,
        EXAMPLES,
        method=method,
        objective="sft",
        artwork=seed,
        steps=1,
        batch_size=4,
        lr=0.0,
        progress=False,
        init_state=state,
    )  # lr 0: the parameters stay where init_state put them
    after = res.method.state_dict()
    for k, v in state.items():
        if isinstance(v, torch.Tensor):
            assert torch.equal(after[k], v), k
    assert res.history["loss"].iloc[0] < warm.history["loss"].iloc[0] - 0.05  # it starts where the warm start ended
    if method == "art":
        assert torch.equal(res.method.initial, PixelPrompt.from_icon("math", 256).pixels())


def _run(tmp, steps, stop_at=None, every=2, size=256, **kw):
    model, proc = tiny_model(seed=0)

    def eval_fn(method, step):
        if stop_at is not None and step == stop_at:
            raise KeyboardInterrupt  # the run is killed between two steps
        return {"pixel_mean": float(method.artwork.pixels().mean())}

    return train(
        model,
        proc,
        EXAMPLES,
        method="art",
        objective="sft",
        artwork=PixelPrompt.from_icon("tools", size),
        steps=steps,
        batch_size=3,
        lr=0.05,
        lr_schedule="cosine",
        eval_fn=eval_fn,
        eval_every=1,
        checkpoint=Checkpointer(tmp, every=every),
        progress=False,
        **kw,
    )


def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path):
    full = _run(tmp_path / "a", steps=5)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "b", steps=5, stop_at=4)  # dies after step 4: last checkpoint is step 2
    # A save interrupted half-way leaves only a temporary folder, which resuming must ignore.
    (tmp_path / "b" / ".tmp-step-000004-crash").mkdir()
    resumed = _run(tmp_path / "b", steps=5)
    cols = [c for c in full.history.columns if c != "seconds"]
    assert full.history[cols].equals(resumed.history[cols])
    assert torch.equal(full.artwork.raw, resumed.artwork.raw)
    png_a = Checkpointer(tmp_path / "a").artifact()
    png_b = Checkpointer(tmp_path / "b").artifact()
    assert png_a.read_bytes() == png_b.read_bytes()


def test_a_resize_to_run_checkpoints_and_resumes_bit_identically(tmp_path):
    """Table 3's non-aligned artworks train through `resize_to`: the checkpointer saves its (empty) state."""
    kw = dict(steps=3, size=224)  # 224 x 224 is shown to the model at 256 x 256
    full = _run(tmp_path / "a", eot=resize_to((256, 256)), **kw)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "b", stop_at=3, eot=resize_to((256, 256)), **kw)  # the last checkpoint is step 2
    resumed = _run(tmp_path / "b", eot=resize_to((256, 256)), **kw)
    cols = [c for c in full.history.columns if c != "seconds"]
    assert full.history[cols].equals(resumed.history[cols])
    assert torch.equal(full.artwork.raw, resumed.artwork.raw) and full.artwork.size == (224, 224)


def test_a_bare_function_as_eot_is_refused_before_training():
    model, proc = tiny_model(seed=0)
    with pytest.raises(TypeError, match=r"eot must be a transforms.EOT .*got function"):
        train(model, proc, EXAMPLES, steps=1, eot=lambda pixels, generator=None: pixels, progress=False)


def test_every_method_satisfies_the_method_protocol_and_anything_else_is_refused(monkeypatch):
    for name in METHODS:
        model, proc = tiny_model(seed=0)
        assert isinstance(make_method(name, model, proc, artwork=PixelPrompt.from_icon("math", 256)), Method), name

    class NoReference:  # a method without a KL reference or an artifact to save
        name = "art"

        def parameters(self):
            return []

        policy = after_step = state_dict = load_state_dict = parameters

    monkeypatch.setattr("art_lib.train.make_method", lambda *a, **k: NoReference())
    model, proc = tiny_model(seed=0)
    with pytest.raises(TypeError, match=r"NoReference is not a methods.Method: it lacks \[.*'reference'.*'save'.*\]"):
        train(model, proc, EXAMPLES, steps=1, progress=False)


def test_a_checkpoint_of_another_model_or_setting_is_not_resumed_silently(tmp_path):
    _run(tmp_path, steps=2)
    ck = Checkpointer(tmp_path, every=2)

    def again(model, **kw):
        return train(
            model,
            proc,
            EXAMPLES,
            method="art",
            objective="sft",
            artwork=PixelPrompt.from_icon("tools", 256),
            batch_size=3,
            lr_schedule="cosine",
            checkpoint=ck,
            progress=False,
            **({"steps": 2, "lr": 0.05} | kw),
        )

    other, proc = tiny_model(seed=1)
    with pytest.raises(ValueError, match="model_fingerprint"):
        again(other)
    same, proc = tiny_model(seed=0)
    with pytest.raises(ValueError, match="lr: 0.05 -> 0.1"):
        again(same, lr=0.1)
    assert len(again(same, steps=3).history) == 3  # running longer is a legitimate resume
    with pytest.raises(ValueError, match="max_completion_length: 256 -> 64"):  # the whole config is compared
        again(same, steps=4, max_completion_length=64)
    # Memory settings give the same gradients: a run that ran out of memory may resume with smaller micro-batches.
    assert len(again(same, steps=4, micro_batch_size=1, gradient_checkpointing=True).history) == 4


def _nan_gradient(pixels, generator):
    """An identity transformation whose gradient is NaN (train moves a copy of the artwork: hook its transform)."""
    pixels = pixels * 1.0
    pixels.register_hook(lambda g: g * float("nan"))
    return pixels


def test_non_finite_gradient_skips_the_step_and_keeps_parameters():
    model, proc = tiny_model(seed=0)
    seen = {"n": 0, "before": None}

    def poison(pixels, generator):  # the second step's gradient is NaN
        seen["n"] += 1
        if seen["n"] == 2:
            seen["before"] = pixels.detach().clone()
            return _nan_gradient(pixels, generator)
        return pixels

    art, eot = PixelPrompt.from_icon("math", 256), RandomEOT([poison], p=1.0)
    res = train(model, proc, EXAMPLES, method="art", artwork=art, eot=eot, steps=2, batch_size=2, progress=False)
    assert res.history["skipped"].tolist() == [False, True]
    assert torch.equal(res.artwork.pixels().detach(), seen["before"])


def test_repeated_non_finite_steps_stop_with_a_clear_error():
    model, proc = tiny_model(seed=0)
    art, eot = PixelPrompt.from_icon("math", 256), RandomEOT([_nan_gradient], p=1.0)
    with pytest.raises(NonFiniteLossError, match="3 consecutive"):
        train(
            model, proc, EXAMPLES, method="art", artwork=art, eot=eot, steps=10, batch_size=2, max_nonfinite=3,
            progress=False,
        )  # fmt: skip


def test_bad_arguments_are_rejected():
    model, proc = tiny_model(seed=0)
    for kw, msg in [
        ({"objective": "ppo"}, "unknown objective"),
        ({"method": "prefix"}, "unknown method"),
        ({"objective": "grpo", "loss_type": "foo"}, "unknown loss_type"),
        ({"objective": "grpo"}, "reward_fn"),
    ]:
        with pytest.raises(ValueError, match=msg):
            train(model, proc, EXAMPLES, steps=1, progress=False, **kw)


def test_data_order_is_a_pure_function_of_step():
    a = [batch_indices(s, 0, n=8, batch_size=3, grad_accum=1, seed=0) for s in range(8)]
    flat = [i for b in a for i in b]
    assert sorted(flat[:8]) == list(range(8))  # the first epoch visits every example once
    assert a == [batch_indices(s, 0, n=8, batch_size=3, grad_accum=1, seed=0) for s in range(8)]
    assert a != [batch_indices(s, 0, n=8, batch_size=3, grad_accum=1, seed=1) for s in range(8)]


@pytest.mark.slow
def test_two_process_accelerate_run_matches_one_process(tmp_path):
    script = ROOT / "tests" / "scripts" / "ddp_train.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    subprocess.run(
        [sys.executable, str(script), str(tmp_path / "one.pt"), "4"],
        check=True,
        env=env,
        timeout=300,
        capture_output=True,
    )
    # --multi_gpu selects the torch.distributed launcher; on a machine without GPUs the script's
    # Accelerator(cpu=True) joins a gloo process group (accelerate's own --cpu path needs MPI).
    subprocess.run(
        [
            accelerate,
            "launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            str(script),
            str(tmp_path / "two.pt"),
            "4",
        ],
        check=True,
        env=env,
        timeout=300,
        capture_output=True,
    )
    one, two = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    assert (one["processes"], two["processes"]) == (1, 2)
    assert torch.allclose(torch.tensor(one["loss"]), torch.tensor(two["loss"]), rtol=1e-5)
    # Adam divides by the gradient's own scale, so float-order differences of near-zero gradients
    # move a few pixels by up to ~lr * steps * 1e-3.
    assert torch.allclose(one["raw"], two["raw"], atol=1e-3)
