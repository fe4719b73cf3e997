"""Results are written only on purpose: a hand-run notebook or `reproduce --only` never overwrites results/."""

from __future__ import annotations

from pathlib import Path

from art_lib import reproduce
from art_lib.results import RESULTS, SCRATCH, results_dir


def test_a_notebook_run_without_a_root_writes_the_scratch_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("ART_RESULTS_ROOT", raising=False)
    monkeypatch.setattr("art_lib.results.SCRATCH", tmp_path / "runs")  # where `runs/` would be
    assert results_dir("00_quickstart") == tmp_path / "runs" / "00_quickstart"
    monkeypatch.setenv("ART_RESULTS_ROOT", str(tmp_path / "chosen"))
    assert results_dir("00_quickstart") == tmp_path / "chosen" / "00_quickstart"
    assert not (RESULTS / "00_quickstart.never").exists()


def test_reproduce_writes_results_only_when_asked():
    assert reproduce.results_root_for(None) == SCRATCH
    assert reproduce.results_root_for(None, update_results=True) == RESULTS
    assert reproduce.results_root_for("/some/where", update_results=True) == Path("/some/where")
    dry = reproduce.results_root_for(None, dry_run=True, update_results=True)
    assert dry not in (RESULTS, SCRATCH) and dry.exists()
    dry.rmdir()
    assert SCRATCH.name == "runs" and "/runs/" in (RESULTS.parent / ".gitignore").read_text().split()


def test_the_main_job_is_the_one_that_updates_results():
    script = (RESULTS.parent / "scripts" / "reproduce.sh").read_text()
    assert "art_lib.reproduce --update-results" in script
