"""Artifacts name the model as the user typed it, never the local folder it resolved to.

A clone or a move of the checkout must give the same configuration hashes (so `resume` recognises finished arms)
and artifacts that say `toy:small`, not `/home/someone/.../checkpoints/small`.
"""

from __future__ import annotations

import json
import shutil

import pytest

from art_lib.experiments import Arm, Checkpointing, run_arm
from art_lib.pixel_prompt import read_png_metadata
from art_lib.registry import resolve_model


@pytest.mark.parametrize("method", ["art", "lora"])
def test_two_checkout_paths_give_the_same_hash_and_no_local_path(tmp_path, method):
    shipped, label = resolve_model("toy:small")
    rows = []
    for where in ("clone-a", "elsewhere/clone-b"):
        folder = tmp_path / where / "checkpoints" / "small"
        shutil.copytree(shipped, folder)
        out = tmp_path / where / "results"
        arm = Arm(folder, "toy_add", method, model_label=label, n_test=2, train=dict(steps=1, batch_size=2, lr=0.01))
        run_arm(arm, checkpointing=Checkpointing(out))
        rows.append(json.loads((out / "arms.jsonl").read_text().splitlines()[-1]))
        written = [p for p in out.rglob("*") if p.is_file() and p.suffix in {".json", ".jsonl", ".md"}]
        for path in written:
            assert str(tmp_path) not in path.read_text(), f"{path} names a local folder"
        artifact = out / rows[-1]["row"]["artifact"]
        if method == "art":
            assert read_png_metadata(artifact)["model_id"] == "toy:small"
        else:
            assert json.loads((artifact / "adapter_config.json").read_text())["base_model_name_or_path"] == "toy:small"
            assert not (artifact / "README.md").exists()  # peft's placeholder card
    assert rows[0]["config_hash"] == rows[1]["config_hash"]
    assert rows[0]["row"]["model"] == "toy:small"
