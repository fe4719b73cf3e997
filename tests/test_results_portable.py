"""The committed results name no local folder: a PNG's text, a JSON manifest, an adapter config or a stored notebook
written on one machine says nothing about where that machine kept its checkout."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
TEXT = {".json", ".jsonl", ".ipynb", ".csv", ".md", ".txt", ".yaml"}
#: An absolute POSIX path under a usual root, or this checkout's own path.
ABSOLUTE = re.compile(r"(?<![\w:/.])/(?:home|root|tmp|work|Users|var|opt|usr|mnt|private|srv|data)/[\w.-]")


def _texts(path: Path) -> list[str]:
    if path.suffix in TEXT:
        return [path.read_text(errors="replace")]
    if path.suffix == ".png":
        with Image.open(path) as img:
            img.load()
            return [f"{k}={v}" for k, v in (getattr(img, "text", None) or {}).items()]
    return []


def _folders() -> list[Path]:
    return sorted(p for p in RESULTS.iterdir() if p.is_dir())


def test_results_are_committed():
    assert _folders(), "no results/<stem>/ folders"


@pytest.mark.parametrize("folder", _folders(), ids=lambda p: p.name)
def test_no_absolute_local_path_in_a_result(folder):
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        for text in _texts(path):
            for m in ABSOLUTE.finditer(text.replace(str(ROOT), "/work/CHECKOUT")):
                found.append(f"{path.relative_to(RESULTS)}: ...{text[max(0, m.start() - 40) : m.end() + 40]!r}")
    assert not found, "\n".join(found[:10])


@pytest.mark.parametrize("folder", _folders(), ids=lambda p: p.name)
def test_every_artifact_a_table_names_is_there(folder):
    table = pd.read_csv(folder / "table.csv")
    missing = [a for a in table.get("artifact", pd.Series(dtype=str)).dropna().unique() if not (folder / a).exists()]
    assert not missing, missing
