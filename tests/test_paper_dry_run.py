"""The paper dry-run tier: every notebook with its paper yaml on the kit's stand-in checkpoint (a few minutes).

Only the model, counts, budgets, the data location (tests/data) and a reward forcing informative RL
groups are overridden (`reproduce.DRY_RUN`); everything else is the paper yaml's.
"""

import json

import pandas as pd
import pytest

from art_lib import plan, reproduce
from art_lib.experiments import tidy


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("dry-run")
    failed = reproduce.run("paper", dry_run=True, results_root=root)
    return root, failed


def _outputs(nb_path) -> str:
    cells = json.loads(nb_path.read_text())["cells"]
    return "".join("".join(o.get("text", "")) for c in cells for o in c.get("outputs", []))


def test_every_notebook_passes_with_its_paper_yaml_on_the_standin(dry_run):
    root, failed = dry_run
    assert failed == 0
    stems = [nb.stem for nb in plan.notebooks()]
    for stem in stems:
        folder = root / f"{stem}.dry-run"
        table = pd.read_csv(folder / "table.csv")
        assert set(tidy([{}]).columns) <= set(table.columns), stem  # the columns a real run writes
        assert len(table) and table["n_test"].gt(0).all()
        info = json.loads((folder / "run_info.json").read_text())
        assert info["device"] in ("cpu", "cuda") and info["dtype"] in ("float32", "bfloat16")
        assert "[does not hold]" not in _outputs(folder / f"{stem}.ipynb"), stem


def test_every_rl_arm_makes_a_policy_update_with_non_zero_advantages(dry_run):
    root, _ = dry_run
    rl_notebooks = 0
    for folder in root.glob("*.dry-run"):
        table = pd.read_csv(folder / "table.csv")
        rl = table[~table.objective.isin(["sft", "none"])]
        if len(rl):
            rl_notebooks += 1
            assert (rl.policy_updates >= 1).all(), folder.name
    assert rl_notebooks >= 4  # quickstart, tab1, tab2, fig_artworks run DAPO at paper settings


def _records(folder) -> dict[str, int]:
    """Lines of the results folder's manifests: a trained arm or a run evaluation adds one."""
    return {
        name: len((folder / name).read_text().splitlines())
        for name in ("arms.jsonl", "evals.jsonl")
        if (folder / name).exists()
    }


def test_a_rerun_trains_nothing_and_evaluates_nothing(dry_run):
    root, _ = dry_run
    folders = sorted(root.glob("*.dry-run"))
    before = {f.name: (_records(f), pd.read_csv(f / "table.csv")) for f in folders}
    assert sum(sum(r.values()) for r, _ in before.values()) > 0
    assert reproduce.run("paper", dry_run=True, results_root=root) == 0
    assert "finished earlier" in _outputs(root / "00_quickstart.dry-run" / "00_quickstart.ipynb")
    for folder in folders:
        records, table = before[folder.name]
        assert _records(folder) == records, f"{folder.name}: the rerun trained or evaluated again"
        pd.testing.assert_frame_equal(pd.read_csv(folder / "table.csv"), table)
