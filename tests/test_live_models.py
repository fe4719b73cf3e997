"""One model in memory at a time: a table's loop never holds a second model while the next one loads.

Counted with weak references to every model `load_frozen` returns, on the shipped toy checkpoints (CPU): a model
still referenced anywhere (a returned result, a second LoRA base) is alive, whatever holds it.
"""

from __future__ import annotations

import dataclasses
import weakref

import pytest

import art_lib.evaluate as evaluate_module
import art_lib.evaluations as evaluations
import art_lib.experiments as experiments
from art_lib.data import load_benchmark
from art_lib.evaluate import evaluate
from art_lib.experiments import Arm, Checkpointing, Runtime, control_rows, run_arm
from art_lib.methods import load_lora_adapter
from art_lib.models import load_frozen
from art_lib.pixel_prompt import PixelPrompt
from art_lib.preprocess import valid_size
from art_lib.registry import resolve_model

RUNTIME = Runtime(device="cpu", dtype="float32", eval_batch_size=4)


class LoadLog:
    """Wraps `load_frozen`: before each load, how many models loaded earlier are still alive, and their size."""

    def __init__(self, real):
        self.real, self.refs, self.alive, self.params = real, [], [], []

    def __call__(self, *args, **kwargs):
        live = [m for m in (r() for r in self.refs) if m is not None]
        self.alive.append(len(live))
        self.params.append(sum(p.numel() for m in live for p in m.parameters()))
        model, processor = self.real(*args, **kwargs)
        self.refs.append(weakref.ref(model))
        return model, processor


def test_a_tab1_loop_holds_one_model_at_any_load(tmp_path, monkeypatch):
    """tab1's loop (controls, then `row, _ = run_arm(...)` per method, per size): nothing alive when a model loads."""
    log = LoadLog(experiments.load_frozen)
    for module in (experiments, evaluations):  # every caller of `load_frozen` in a table's loop
        monkeypatch.setattr(module, "load_frozen", log)
    rows = []
    for m in ("toy:small", "toy:base"):
        path, label = resolve_model(m)
        rows += control_rows(path, "toy_add", n_test=4, model_label=label, max_new_tokens=8, runtime=RUNTIME)
        for method in ("art", "lora"):
            arm = Arm(
                path,
                "toy_add",
                method,
                n_train=8,
                n_test=4,
                max_new_tokens=8,
                model_label=label,
                label=f"{method}-{label.replace(':', '_')}",
                train=dict(steps=2, batch_size=2, lr=0.01),
            )
            row, _ = run_arm(arm, RUNTIME, Checkpointing(tmp_path))
            rows.append(row)
    print("models alive before each load:", log.alive, "| their parameters:", log.params)
    assert len(log.alive) == 6  # per size: controls, art, lora; the LoRA evaluation reuses its base
    assert max(log.alive) == 0, log.alive
    assert len(rows) == 2 * (4 + 2)


def _recorded_evaluations(monkeypatch) -> list:
    """Every `EvalResult` that `evaluate` scores from now on (the real scorer, only recorded)."""
    seen, real = [], evaluate_module.score_outputs

    def record(*args, **kwargs):
        seen.append(real(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(evaluate_module, "score_outputs", record)
    return seen


def test_lora_scored_on_the_reused_base_equals_a_freshly_loaded_base(tmp_path, monkeypatch):
    """run_arm scores the saved adapter on the base it trained on (adapter unloaded); a fresh base gives the same."""
    path, label = resolve_model("toy:small")
    test = load_benchmark("toy_add", split="test", limit=8)
    seen = _recorded_evaluations(monkeypatch)
    arm = Arm(path, "toy_add", "lora", test_examples=test, max_new_tokens=8, train=dict(steps=4, batch_size=4, lr=0.05))
    row, _ = run_arm(arm, RUNTIME, Checkpointing(tmp_path))
    (in_run,) = seen
    base, processor = load_frozen(path, device="cpu", dtype="float32")
    kw = dict(benchmark="toy_add", max_new_tokens=8, batch_size=4, progress=False)
    plain = evaluate(base, processor, test, **kw)
    fresh = evaluate(load_lora_adapter(base, tmp_path / row["artifact"]), processor, test, **kw)
    assert list(in_run.rows["completion"]) == list(fresh.rows["completion"])
    assert row["accuracy"] == fresh.accuracy
    # The adapter changes what the model writes, so equal completions mean the adapter was there both times.
    assert list(plain.rows["completion"]) != list(fresh.rows["completion"])


def test_run_arm_returns_no_model_unless_asked(tmp_path):
    """The result keeps the history and the artwork; the model only with `keep_model=True`."""
    path, _ = resolve_model("toy:small")
    arm = Arm(path, "toy_add", "art", n_train=4, n_test=2, max_new_tokens=8, train=dict(steps=1, batch_size=2, lr=0.01))
    row, res = run_arm(arm, RUNTIME, Checkpointing(tmp_path))
    assert len(res.history) == 1 and res.artwork is not None
    assert PixelPrompt.from_png(tmp_path / row["artifact"]).pixels().shape == res.artwork.pixels().shape
    assert getattr(res.method, "model", None) is None
    _, kept = run_arm(arm, RUNTIME, Checkpointing(tmp_path), keep_model=True)
    assert kept.method.model is not None


@pytest.mark.parametrize("model", ["standin", "toy:small"])
def test_default_image_size_is_the_smallest_the_processor_keeps(model, tmp_path):
    """No image size given: the smallest square the checkpoint's processor accepts as is (real Qwen3.5 rejects 64)."""
    from art_lib import reproduce
    from art_lib.models import load_processor

    path = reproduce.standin_checkpoint(tmp_path / "standin") if model == "standin" else resolve_model(model)[0]
    data = {"gsm8k": str(reproduce.DATA / "gsm8k" / "test.jsonl")} if model == "standin" else None
    bench = "gsm8k" if model == "standin" else "toy_add"
    arm = Arm(path, bench, "art", n_train=2, n_test=2, max_new_tokens=8, train=dict(steps=1, batch_size=2))
    row, _ = run_arm(arm, dataclasses.replace(RUNTIME, data_dir=data), Checkpointing(tmp_path))
    ip = load_processor(path).image_processor
    side = PixelPrompt.from_png(tmp_path / row["artifact"]).pixels().shape[-1]
    assert valid_size(side, side, ip) and not any(valid_size(s, s, ip) for s in range(1, side))
    assert experiments.smallest_valid_side(ip) == side


def test_the_artifact_does_not_depend_on_evaluation_settings(tmp_path):
    """The saved PNG is what training made: scoring it with another budget or batch size writes the same bytes."""
    path, _ = resolve_model("toy:small")
    kw = dict(n_train=4, n_test=2, train=dict(steps=1, batch_size=2, lr=0.01))
    a_arm, b_arm = (
        Arm(path, "toy_add", "art", max_new_tokens=8, **kw),
        Arm(path, "toy_add", "art", max_new_tokens=9, **kw),
    )
    a, _ = run_arm(a_arm, dataclasses.replace(RUNTIME, eval_batch_size=4), Checkpointing(tmp_path / "a"))
    b, _ = run_arm(b_arm, dataclasses.replace(RUNTIME, eval_batch_size=1), Checkpointing(tmp_path / "b"))
    assert (tmp_path / "a" / a["artifact"]).read_bytes() == (tmp_path / "b" / b["artifact"]).read_bytes()
