"""Notebooks: each .ipynb and its jupytext .py agree; parameters are typed literals that the params files name
and the shared setup cell checks; notebooks hold no outputs and no library logic."""

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import papermill as pm
import pytest
import yaml
from jupytext.cli import jupytext as jupytext_cli
from jupytext.config import load_jupytext_config

from art_lib.plan import check_parameters, check_value, notebook_parameters, parameter_types

NB = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NB.glob("*.ipynb"))
PARAM_FILES = sorted((NB / "params").glob("*.yaml"))

#: Parameters every notebook has: the shared setup cell reads them and `reproduce` sets them (dry runs, --device).
COMMON = [
    "device",
    "dtype",
    "data_dir",
    "max_new_tokens",
    "eval_batch_size",
    "micro_batch_size",
    "generation_batch_size",
    "gradient_checkpointing",
    "checkpoint_every",
    "resume",
    "reward",
    "overlong_filter",
    "shared_prefix",
    "rollout_engine",
    "eval_engine",
    "vllm_memory_fraction",
    "progress",
    "cpu_threads",
    "results_tag",
]


def pair_problems(ipynb: Path) -> list[str]:
    """How `ipynb` and its paired `py:percent` file disagree: cell count, and per cell its type, source and tags."""
    py = ipynb.with_suffix(".py")
    if not py.exists():
        return [f"{ipynb.name}: no paired {py.name} (run `jupytext --sync {ipynb.name}`)"]
    a, b = nbformat.read(ipynb, as_version=4).cells, jupytext.read(py).cells
    problems = [] if len(a) == len(b) else [f"{ipynb.stem}: {len(a)} cells in the .ipynb, {len(b)} in the .py"]
    for i, (x, y) in enumerate(zip(a, b)):
        for what, get in [
            ("type", lambda c: c.cell_type),
            ("source", lambda c: c.source),
            ("tags", lambda c: c.metadata.get("tags", [])),
        ]:
            if get(x) != get(y):
                problems.append(f"{ipynb.stem} cell {i}: {what} differs between the .ipynb and the .py")
    return problems


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def _setup_cell(path: Path) -> str:
    return next("".join(c["source"]) for c in _cells(path) if "STEM =" in "".join(c["source"]))


def test_there_are_notebooks_and_paper_parameters_for_each_table():
    stems = {p.stem for p in NOTEBOOKS}
    assert {
        "00_quickstart",
        "tab1_model_sizes",
        "tab2_art_vs_lora",
        "tab3_dimensionality_alignment",
        "fig_artworks",
        "fig_style_tradeoff",
    } <= stems
    assert {p.name.split(".")[0] for p in PARAM_FILES} == stems


def test_jupytext_pairs_every_notebook_with_a_percent_script_and_nothing_else_lies_there():
    for nb in NOTEBOOKS:
        assert load_jupytext_config(str(nb)).default_formats(str(nb)) == "ipynb,py:percent"
    assert {p.stem for p in NB.glob("*.py")} == {p.stem for p in NOTEBOOKS}
    # The executed copies under results/ are not paired: JupyterLab must not write .py files there.
    assert load_jupytext_config(str(NB.parent / "results" / "x" / "x.ipynb")) is None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_and_its_py_file_are_in_sync(path):
    assert pair_problems(path) == []


def test_pair_check_reports_each_kind_of_drift(tmp_path):
    src = NB / "00_quickstart.ipynb"

    def fresh() -> Path:
        for p in (src, src.with_suffix(".py"), NB / "jupytext.toml"):
            shutil.copy(p, tmp_path / p.name)
        return tmp_path / src.name

    nb = fresh()
    assert pair_problems(nb) == []
    py = nb.with_suffix(".py")
    py.write_text(py.read_text().replace("steps: int = 300 ", "steps: int = 301 ", 1))
    assert pair_problems(nb) == ["00_quickstart cell 1: source differs between the .ipynb and the .py"]

    nb = fresh()
    py.write_text(py.read_text().replace('# %% tags=["parameters"]', "# %%", 1))
    assert pair_problems(nb) == ["00_quickstart cell 1: tags differs between the .ipynb and the .py"]

    nb = fresh()
    cells = nbformat.read(nb, as_version=4)
    cells.cells[3].update(cell_type="code", outputs=[], execution_count=None)  # turned into code, .py not synced
    nbformat.write(cells, nb)
    assert pair_problems(nb) == ["00_quickstart cell 3: type differs between the .ipynb and the .py"]

    nb = fresh()
    cells = nbformat.read(nb, as_version=4)
    del cells.cells[-1]
    nbformat.write(cells, nb)
    assert pair_problems(nb)[0] == "00_quickstart: 12 cells in the .ipynb, 13 in the .py"

    nb = fresh()
    py.unlink()
    assert "no paired" in pair_problems(nb)[0]


def test_jupytext_sync_carries_an_edit_of_the_py_into_the_notebook_keeping_ids_and_tags(tmp_path):
    for p in (NB / "00_quickstart.ipynb", NB / "00_quickstart.py", NB / "jupytext.toml"):
        shutil.copy(p, tmp_path / p.name)
    nb, py = tmp_path / "00_quickstart.ipynb", tmp_path / "00_quickstart.py"
    before = nbformat.read(nb, as_version=4)
    py.write_text(py.read_text().replace("steps: int = 300 ", "steps: int = 301 ", 1))
    assert pair_problems(nb)
    jupytext_cli(["--sync", str(nb)])  # the newer .py wins, as in the README's instructions
    after = nbformat.read(nb, as_version=4)
    assert pair_problems(nb) == []
    assert notebook_parameters(nb)["steps"] == 301
    assert [c.id for c in after.cells] == [c.id for c in before.cells]
    assert [c.metadata for c in after.cells] == [c.metadata for c in before.cells]


@pytest.mark.parametrize("path", PARAM_FILES, ids=lambda p: p.name)
def test_every_params_key_is_a_notebook_parameter(path):
    nb = NB / (path.name.split(".")[0] + ".ipynb")
    known = set(pm.inspect_notebook(str(nb)))
    keys = set(yaml.safe_load(path.read_text()))
    assert keys <= known, f"{path.name}: not parameters of {nb.name}: {sorted(keys - known)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_parameters_are_typed_literals_that_papermill_lists_with_their_types(path):
    params, types = notebook_parameters(path), parameter_types(path)
    inspected = pm.inspect_notebook(str(path))
    assert list(params) == list(inspected) == list(types)  # papermill reads the same names, in order, all typed
    for name, value in params.items():
        assert inspected[name]["inferred_type_name"] not in ("None", ""), name  # `papermill --help-notebook` types
        if value is not None:
            check_value(path.stem, name, value, types[name])  # each default has its own annotated type
    assert set(COMMON) <= set(params)
    assert "STEM" in {
        getattr(n.targets[0], "id", None) for n in ast.parse(_setup_cell(path)).body if isinstance(n, ast.Assign)
    }


def test_setup_and_closing_cells_are_the_same_in_every_notebook():
    setups = {"\n".join(_setup_cell(p).splitlines()[1:]) for p in NOTEBOOKS}  # after STEM
    closings = {"".join(_cells(p)[-1]["source"]) for p in NOTEBOOKS}
    assert len(setups) == 1 and len(closings) == 1


@pytest.mark.parametrize(
    "cell, error",
    [
        ("steps = 3\nlr = 1 / 3\n", "line 2"),
        ("a = b = 1\n", "line 1"),
        ("x: int\n", "line 1"),
        ("import os\n", "line 1"),
    ],
)
def test_notebook_parameters_rejects_anything_but_name_type_equals_literal(tmp_path, cell, error):
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell(cell, metadata={"tags": ["parameters"]}))
    nbformat.write(nb, tmp_path / "x.ipynb")
    with pytest.raises(ValueError, match=error):
        notebook_parameters(tmp_path / "x.ipynb")


@pytest.mark.parametrize(
    "override, message",
    [
        ("stepz 1", "has no parameter 'stepz'; did you mean 'steps'"),
        ("steps x", "parameter steps must be of type int, got 'x'"),
        ("n_test 0", "parameter n_test counts something and must be >= 1"),
        ("lr true", "parameter lr must be of type float"),
    ],
)
def test_papermill_run_with_a_typo_or_a_wrong_type_fails_in_the_setup_cell(tmp_path, override, message):
    """papermill only warns about an unknown `-p` name and injects any type: the setup cell refuses both."""
    name, value = override.split()
    run = subprocess.run(
        [sys.executable, "-m", "papermill", str(NB / "00_quickstart.ipynb"), str(tmp_path / "out.ipynb"),
         "-p", name, value, "--cwd", str(NB)],
        capture_output=True, text=True, env=os.environ | {"ART_RESULTS_ROOT": str(tmp_path)}, timeout=600,
    )  # fmt: skip
    assert run.returncode != 0
    assert message in run.stdout + run.stderr
    assert not list(tmp_path.glob("00_quickstart*/table.csv"))  # nothing trained


def test_check_parameters_passes_the_declared_values_and_knows_every_annotation_kind():
    ns = {
        "__annotations__": {"steps": int, "lr": float, "sizes": list[int], "lr_of": dict[str, float], "n": int | None},
        "steps": 3, "lr": 1, "sizes": [64, 96], "lr_of": {"art": 0.1}, "n": None, "STEM": "x", "os": os,
    }  # fmt: skip
    assert check_parameters(ns, "x") == {"steps": 3, "lr": 1, "sizes": [64, 96], "lr_of": {"art": 0.1}, "n": None}
    for name, bad in [("sizes", [64, "96"]), ("lr_of", {"art": "fast"}), ("n", 1.5), ("steps", True)]:
        with pytest.raises(ValueError, match=f"parameter {name} must be of type"):
            check_parameters(ns | {name: bad}, "x")


def test_notebook_parameters_keeps_values_that_contain_equals_signs(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells.append(
        nbformat.v4.new_code_cell('tag = "a=b"  # x = 1\nd = {"k": "v=w"}\n', metadata={"tags": ["parameters"]})
    )
    nbformat.write(nb, tmp_path / "x.ipynb")
    assert notebook_parameters(tmp_path / "x.ipynb") == {"tag": "a=b", "d": {"k": "v=w"}}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_no_outputs_and_no_training_logic(path):
    code = [c for c in _cells(path) if c["cell_type"] == "code"]
    assert not any(c.get("outputs") for c in code), "commit notebooks without outputs"
    src = "\n".join("".join(c["source"]) for c in code)
    for banned in (".backward(", "optimizer", "log_softmax", "cross_entropy", "re.search", "extract_answer"):
        assert banned not in src, f"{path.name} contains {banned!r}: that belongs in art_lib"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_ci_checked_cells_only_state_results(path):
    """nbval compares a checked cell's whole output: a cell that also loads, trains or scores would compare
    progress lines and CPU-dependent digits too. Each notebook has at least one such cell."""
    cells = ["".join(c["source"]) for c in _cells(path) if c["cell_type"] == "code"]
    checked = [src for src in cells if "NBVAL_CHECK_OUTPUT" in src]
    assert checked, f"{path.name} has no CI-checked cell"
    for src in checked:
        for work in ("run_arm(", "load_frozen(", "control_rows(", "evaluate(", "train(", "resolve_model("):
            assert work not in src, f"{path.name}: a checked cell calls {work}"
        assert "print_checks(" in src


def committed_findings(results: Path) -> list[str]:
    """Every `[does not hold]` line in the outputs of the executed notebooks under `results`, as `file: line`."""
    found = []
    for nb in sorted(results.glob("**/*.ipynb")):
        for cell in _cells(nb):
            for out in cell.get("outputs", []):
                text = "".join(out.get("text", "")) + "".join(out.get("data", {}).get("text/plain", ""))
                found += [
                    f"{nb.relative_to(results)}: {line}" for line in text.splitlines() if "[does not hold]" in line
                ]
    return found


def test_no_committed_result_states_a_failed_claim():
    """nbval compares a checked cell with its stored output: a stored `[does not hold]` makes the CI expect the
    failure. A statement that does not hold is fixed or restated as measured before its results are committed."""
    results = NB.parent / "results"
    assert sorted(results.glob("*/*.ipynb")), "no executed notebooks under results/"
    assert committed_findings(results) == []


def test_committed_findings_sees_a_failed_claim_in_any_output(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell("print_checks(...)"))
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="[holds] a\n[does not hold] b\n")]
    (tmp_path / "x").mkdir()
    nbformat.write(nb, tmp_path / "x" / "x.ipynb")
    assert committed_findings(tmp_path) == ["x/x.ipynb: [does not hold] b"]


def test_the_setup_call_turns_the_parameters_into_the_runtime_and_checkpointing_every_arm_shares(tmp_path, monkeypatch):
    """`session.start` (each notebook's whole setup): every runtime parameter lands in `Runtime`, the memory settings
    in `Runtime.memory` (outside the arms' hashes), the results folder, `checkpoint_every` and `resume` in
    `Checkpointing`; a typo papermill injected is refused before anything is built."""
    import torch

    from art_lib.session import start

    monkeypatch.setenv("ART_RESULTS_ROOT", str(tmp_path))
    nb_path = NB / "tab2_art_vs_lora.ipynb"
    overrides = dict(micro_batch_size=2, generation_batch_size=3, gradient_checkpointing=True, shared_prefix=True)
    overrides |= dict(eval_batch_size=5, eval_engine="auto", rollout_engine="http://127.0.0.1:1/v1", progress=True)
    overrides |= dict(vllm_memory_fraction=0.4, data_dir="somewhere", checkpoint_every=4, resume=True)
    overrides |= dict(results_tag="t", cpu_threads=2, dtype="float32")
    namespace = notebook_parameters(nb_path) | overrides
    namespace["__annotations__"] = parameter_types(nb_path)
    threads = torch.get_num_threads()
    try:
        nb = start(namespace, "tab2_art_vs_lora")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    rt, ck = nb.runtime, nb.checkpointing
    assert rt.memory == dict(
        micro_batch_size=2, generation_batch_size=3, gradient_checkpointing=True, shared_prefix=True
    )
    assert (rt.eval_batch_size, rt.eval_engine, rt.rollout_engine) == (5, "auto", "http://127.0.0.1:1/v1")
    assert (rt.vllm_memory_fraction, rt.data_dir, rt.progress, rt.dtype) == (0.4, "somewhere", True, "float32")
    assert nb.out == tmp_path / "tab2_art_vs_lora.t" and nb.out.is_dir()
    assert (Path(ck.out_dir), ck.every, ck.resume) == (nb.out, 4, True)
    assert nb.params == {k: namespace[k] for k in parameter_types(nb_path)}
    with pytest.raises(ValueError, match="did you mean 'steps'"):
        start(namespace | {"stepz": 3}, "tab2_art_vs_lora")
