"""The paper parameter sets: a GPU is asked for (a CPU run refuses), and Figure 2's steps are checkpoints."""

from __future__ import annotations

import pytest
import torch
import yaml

from art_lib.plan import ROOT
from art_lib.reproduce import dry_run_params
from art_lib.runtime import resolve_runtime

PAPER = sorted((ROOT / "notebooks" / "params").glob("*.paper.yaml"))


@pytest.mark.parametrize("path", PAPER, ids=lambda p: p.stem)
def test_a_paper_yaml_run_by_hand_without_a_gpu_refuses_and_its_dry_run_does_not(path):
    params = yaml.safe_load(path.read_text())
    if torch.cuda.is_available():
        assert resolve_runtime(params["device"], params["dtype"]) == ("cuda", "bfloat16")
    else:  # papermill -f <paper yaml> on a CPU: the setup cell's resolve_runtime stops it
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            resolve_runtime(params["device"], params["dtype"])
    assert dry_run_params(params, "standin")["device"] == "auto"


def test_figure_2_shows_steps_the_paper_run_checkpoints():
    params = yaml.safe_load((ROOT / "notebooks" / "params" / "fig_artworks.paper.yaml").read_text())
    every, shown = params["checkpoint_every"], params["evolution_steps"]
    assert 5 in shown  # the paper's Figure 2 shows step 5
    assert all(s == 0 or (s % every == 0 and s <= params["steps"]) for s in shown), (every, shown)
    assert dry_run_params(params, "standin")["evolution_steps"] is None
