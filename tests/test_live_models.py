"""One model in memory at a time: a table's loop never holds a second model while the next one loads.

Counted with weak references to every model `load_frozen` returns, on the shipped toy checkpoints (CPU): a model
still referenced anywhere (a returned result, a second LoRA base) is alive, whatever holds it.
"""

from __future__ import annotations

import weakref

import pytest

import art_lib.evaluate as evaluate_module
import art_lib.evaluations as evaluations
import art_lib.experiments as experiments
from art_lib.data import load_benchmark
from art_lib.evaluate import evaluate
from art_lib.experiments import control_rows, run_arm
from art_lib.methods import load_lora_adapter
from art_lib.models import load_frozen
from art_lib.pixel_prompt import PixelPrompt
from art_lib.preprocess import valid_size
from art_lib.registry import resolve_model

RUNTIME = dict(device="cpu", dtype="float32", max_new_tokens=8, eval_batch_size=4)


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
        rows += control_rows(path, "toy_add", n_test=4, model_label=label, **RUNTIME)
        for method in ("art", "lora"):
            row, _ = run_arm(
                path,
                "toy_add",
                method,
                out_dir=tmp_path,
                n_train=8,
                n_test=4,
                steps=2,
                batch_size=2,
                lr=0.01,
                model_label=label,
                label=f"{method}-{label.replace(':', '_')}",
                **RUNTIME,
            )
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
    row, _ = run_arm(
        path, "toy_add", "lora", out_dir=tmp_path, test_examples=test, steps=4, batch_size=4, lr=0.05, **RUNTIME
    )
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
    kw = dict(out_dir=tmp_path, n_train=4, n_test=2, steps=1, batch_size=2, lr=0.01, **RUNTIME)
    row, res = run_arm(path, "toy_add", "art", **kw)
    assert len(res.history) == 1 and res.artwork is not None
    assert PixelPrompt.from_png(tmp_path / row["artifact"]).pixels().shape == res.artwork.pixels().shape
    assert getattr(res.method, "model", None) is None
    _, kept = run_arm(path, "toy_add", "art", keep_model=True, **kw)
    assert kept.method.model is not None


@pytest.mark.parametrize("model", ["standin", "toy:small"])
def test_default_image_size_is_the_smallest_the_processor_keeps(model, tmp_path):
    """No image size given: the smallest square the checkpoint's processor accepts as is (real Qwen3.5 rejects 64)."""
    from art_lib import reproduce
    from art_lib.models import load_processor

    path = reproduce.standin_checkpoint(tmp_path / "standin") if model == "standin" else resolve_model(model)[0]
    data = {"gsm8k": str(reproduce.DATA / "gsm8k" / "test.jsonl")} if model == "standin" else None
    bench = "gsm8k" if model == "standin" else "toy_add"
    row, _ = run_arm(
        path, bench, "art", out_dir=tmp_path, data_dir=data, n_train=2, n_test=2, steps=1, batch_size=2, **RUNTIME
    )
    ip = load_processor(path).image_processor
    side = PixelPrompt.from_png(tmp_path / row["artifact"]).pixels().shape[-1]
    assert valid_size(side, side, ip) and not any(valid_size(s, s, ip) for s in range(1, side))
    assert experiments.smallest_valid_side(ip) == side


def test_the_artifact_does_not_depend_on_evaluation_settings(tmp_path):
    """The saved PNG is what training made: scoring it with another budget or batch size writes the same bytes."""
    path, _ = resolve_model("toy:small")
    kw = dict(n_train=4, n_test=2, steps=1, batch_size=2, lr=0.01, device="cpu", dtype="float32")
    a, _ = run_arm(path, "toy_add", "art", out_dir=tmp_path / "a", max_new_tokens=8, eval_batch_size=4, **kw)
    b, _ = run_arm(path, "toy_add", "art", out_dir=tmp_path / "b", max_new_tokens=9, eval_batch_size=1, **kw)
    assert (tmp_path / "a" / a["artifact"]).read_bytes() == (tmp_path / "b" / b["artifact"]).read_bytes()
