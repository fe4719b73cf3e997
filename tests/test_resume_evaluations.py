"""Nothing evaluated twice: controls and transports are recorded in `<results>/evals.jsonl` and skipped on resume.

Counted on the shipped toy checkpoint (CPU): every `evaluate` run (its scorer call) and every model load.
"""

from __future__ import annotations

import json
import shutil

import pytest

import art_lib.evaluate as evaluate_module
import art_lib.evaluations as evaluations
import art_lib.experiments as experiments
from art_lib.experiments import Arm, Checkpointing, Runtime, control_rows, run_arm, transport_rows
from art_lib.pixel_prompt import PixelPrompt
from art_lib.registry import resolve_model

#: What every call below is given: the CPU runtime and an 8-token budget.
RUNTIME = dict(runtime=Runtime(device="cpu", dtype="float32", eval_batch_size=4), max_new_tokens=8)


class Counts:
    """How many evaluations ran and models loaded since the last `take()` (the real functions, only counted)."""

    def __init__(self, monkeypatch):
        self.evals = self.loads = 0
        real_score, real_load = evaluate_module.score_outputs, experiments.load_frozen

        def score(*args, **kwargs):
            self.evals += 1
            return real_score(*args, **kwargs)

        def load(*args, **kwargs):
            self.loads += 1
            return real_load(*args, **kwargs)

        monkeypatch.setattr(evaluate_module, "score_outputs", score)
        for module in (experiments, evaluations):
            monkeypatch.setattr(module, "load_frozen", load)

    def take(self) -> tuple[int, int]:
        out, self.evals, self.loads = (self.evals, self.loads), 0, 0
        return out


@pytest.fixture
def counts(monkeypatch):
    return Counts(monkeypatch)


@pytest.fixture(scope="module")
def toy_small():
    return resolve_model("toy:small")


def test_control_rows_computes_only_which_and_a_rerun_nothing(toy_small, tmp_path, counts):
    path, label = toy_small
    kw = dict(n_test=4, model_label=label, out_dir=tmp_path, resume=True, **RUNTIME)
    two = control_rows(path, "toy_add", which=("seed", "text_only"), **kw)
    assert [r["method"] for r in two] == ["control:seed", "control:text_only"]
    assert counts.take() == (2, 1)
    assert control_rows(path, "toy_add", which=("seed", "text_only"), **kw) == two
    assert counts.take() == (0, 0)  # nothing evaluated, no model loaded
    four = control_rows(path, "toy_add", **kw)  # the default: every control; two were recorded
    assert counts.take() == (2, 1)
    assert [r["method"] for r in four] == ["control:text_only", "control:seed", "control:noise", "control:random_text"]
    assert four[:2] == two[::-1]
    with pytest.raises(ValueError, match="bogus"):
        control_rows(path, "toy_add", which=("bogus",), **kw)


def test_the_control_hash_names_the_model_by_label_and_sees_the_test_set_and_budget(toy_small, tmp_path, counts):
    path, label = toy_small
    kw = dict(which=("text_only",), model_label=label, out_dir=tmp_path / "results", resume=True, **RUNTIME)
    first = control_rows(path, "toy_add", n_test=4, **kw)
    clone = shutil.copytree(path, tmp_path / "elsewhere" / "small")  # another checkout, same model
    assert control_rows(clone, "toy_add", n_test=4, **kw) == first
    assert counts.take() == (1, 1)
    control_rows(path, "toy_add", n_test=5, **kw)  # another test set
    control_rows(path, "toy_add", n_test=4, **(kw | {"max_new_tokens": 9}))  # another budget
    control_rows(path, "toy_add", n_test=4, **(kw | {"resume": False}))  # asked to run again
    assert counts.take() == (3, 3)
    assert str(tmp_path / "elsewhere") not in (tmp_path / "results" / "evals.jsonl").read_text()


def test_transport_rows_rerun_nothing_and_other_pixels_are_evaluated(toy_small, tmp_path, counts):
    path, label = toy_small
    png = PixelPrompt.from_icon("math", 64).save_png(tmp_path / "art.png")
    out = tmp_path / "results"
    kw = dict(kinds=["none", "jpeg75"], out_dir=out, files_dir=out / "transport", resume=True, n_test=4, **RUNTIME)
    first = transport_rows(path, "toy_add", png, model_label=label, **kw)
    assert list(first["kind"]) == ["none", "jpeg75"] and counts.take() == (2, 1)
    assert (out / first["path"].iloc[1]).exists()  # the transported PNG, named relative to the results folder
    same_pixels = PixelPrompt.from_png(png).save_png(tmp_path / "copy.png", model_id="other metadata")
    again = transport_rows(path, "toy_add", same_pixels, model_label=label, **kw)
    assert again.equals(first) and counts.take() == (0, 0)
    noise = PixelPrompt.from_noise(64, seed=1).save_png(tmp_path / "noise.png")
    transport_rows(path, "toy_add", noise, model_label=label, **kw)
    transport_rows(path, "toy_add", png, model_label=label, **(kw | {"kinds": ["jpeg50"]}))
    assert counts.take() == (3, 2)
    assert str(tmp_path) not in (out / "evals.jsonl").read_text()


def test_a_rerun_of_a_table_evaluates_nothing(toy_small, tmp_path, counts):
    """A notebook-like pass (controls, an ART arm, its transports), then the same pass with `resume`: all recorded."""
    path, label = toy_small

    def table() -> list[dict]:
        rows = control_rows(path, "toy_add", n_test=4, model_label=label, out_dir=tmp_path, resume=True, **RUNTIME)
        arm = Arm(path, "toy_add", "art", n_train=4, n_test=4, max_new_tokens=8, model_label=label,
                  train=dict(steps=1, batch_size=2, lr=0.01))  # fmt: skip
        row, _ = run_arm(arm, RUNTIME["runtime"], Checkpointing(tmp_path, resume=True))
        df = transport_rows(
            path, "toy_add", tmp_path / row["artifact"], kinds=["none", "palette"], out_dir=tmp_path,
            files_dir=tmp_path / "transport", n_test=4, model_label=label, resume=True, **RUNTIME,
        )  # fmt: skip
        return rows + [row] + df.to_dict("records")

    first = table()
    assert counts.take() == (4 + 1 + 2, 3)
    print("rerun:", json.dumps(dict(zip(("evaluations", "loads"), counts.take()))))
    assert table() == first
    assert counts.take() == (0, 0)
