"""The set-up's promises: environment.yml agrees with pyproject.toml, and .venv opens the notebooks in JupyterLab."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def _pyproject_requirements() -> dict[str, list[Requirement]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    out: dict[str, list[Requirement]] = {}
    for spec in project["dependencies"] + [s for extra in project["optional-dependencies"].values() for s in extra]:
        req = Requirement(spec)
        out.setdefault(req.name.lower(), []).append(req)
    return out


def _environment_pins() -> dict[str, str]:
    """`name==version` lines of environment.yml's pip section."""
    deps = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    pins = {}
    for line in pip:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==([^\s#]+)", line.split("#")[0].strip())
        if match:
            pins[match[1].lower()] = match[2]
    return pins


def test_environment_yml_pins_satisfy_pyproject():
    """Each version environment.yml pins is one every pyproject.toml spec of that package admits (extras included)."""
    reqs, pins = _pyproject_requirements(), _environment_pins()
    assert {"torch", "vllm"} <= set(pins), pins
    for name, version in pins.items():
        for req in reqs.get(name, []):
            assert req.specifier.contains(version, prereleases=True), (
                f"environment.yml pins {name}=={version}, pyproject.toml asks {req}"
            )
    # The extra pins vLLM exactly (a range would resolve to a newer vLLM and torch than the conda route).
    assert [str(r.specifier) for r in reqs["vllm"]] == [f"=={pins['vllm']}"]


def test_environment_yml_torch_is_the_setup_torch():
    bootstrap = (ROOT / "scripts" / "bootstrap.sh").read_text()
    default = re.search(r"TORCH_SPEC:-torch==([^}]+)\}", bootstrap)[1]
    assert _environment_pins()["torch"] == default


def test_jupyterlab_and_the_art_kit_kernel_are_installed():
    """The README's way in: `jupyter lab` from .venv, with the "ART kit" kernel running .venv's python."""
    version = subprocess.run(
        [sys.executable, "-m", "jupyter", "lab", "--version"], capture_output=True, text=True, timeout=120
    )
    assert version.returncode == 0 and re.match(r"4\.", version.stdout), version.stderr[-2000:]
    listed = subprocess.run(
        [sys.executable, "-m", "jupyter", "kernelspec", "list", "--json"], capture_output=True, text=True, timeout=120
    )
    specs = json.loads(listed.stdout)["kernelspecs"]
    assert "art-kit" in specs, sorted(specs)
    spec = specs["art-kit"]["spec"]
    assert spec["display_name"] == "ART kit"
    assert Path(spec["argv"][0]).resolve() == Path(sys.executable).resolve()
