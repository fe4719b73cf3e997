"""Notebooks: parameters files name real parameters; notebooks hold no outputs and no library logic."""

import json
from pathlib import Path

import papermill as pm
import pytest
import yaml

NB = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NB.glob("*.ipynb"))
PARAM_FILES = sorted((NB / "params").glob("*.yaml"))


def test_there_are_notebooks_and_paper_parameters_for_each_table():
    stems = {p.stem for p in NOTEBOOKS}
    assert {"00_quickstart", "tab1_model_sizes", "tab2_art_vs_lora", "tab3_dimensionality_alignment",
            "fig_artworks", "fig_style_tradeoff"} <= stems
    assert {p.name.split(".")[0] for p in PARAM_FILES} == stems


@pytest.mark.parametrize("path", PARAM_FILES, ids=lambda p: p.name)
def test_every_params_key_is_a_notebook_parameter(path):
    nb = NB / (path.name.split(".")[0] + ".ipynb")
    known = set(pm.inspect_notebook(str(nb)))
    keys = set(yaml.safe_load(path.read_text()))
    assert keys <= known, f"{path.name}: not parameters of {nb.name}: {sorted(keys - known)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_a_parameters_cell_of_literals_no_outputs_and_no_training_logic(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    for line in "".join(tagged[0]["source"]).splitlines():
        if line.strip() and not line.strip().startswith("#"):
            yaml.safe_load(line.split("#")[0].replace(" = ", ": ", 1))  # a literal, YAML-readable
    assert not any(c.get("outputs") for c in code), "commit notebooks without outputs"
    src = "\n".join("".join(c["source"]) for c in code)
    for banned in (".backward(", "optimizer", "log_softmax", "cross_entropy", "re.search", "extract_answer"):
        assert banned not in src, f"{path.name} contains {banned!r}: that belongs in art_lib"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_ci_checked_cells_only_state_results(path):
    """nbval compares a checked cell's whole output: a cell that also loads, trains or scores would compare
    progress lines and CPU-dependent digits too. Each notebook has at least one such cell."""
    cells = ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    checked = [src for src in cells if "NBVAL_CHECK_OUTPUT" in src]
    assert checked, f"{path.name} has no CI-checked cell"
    for src in checked:
        for work in ("run_arm(", "load_frozen(", "control_rows(", "evaluate(", "train(", "resolve_model("):
            assert work not in src, f"{path.name}: a checked cell calls {work}"
        assert "print_checks(" in src
