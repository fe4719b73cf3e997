#!/usr/bin/env bash
# The whole test suite: ruff (lint, format), unit tests (pytest) and the executed notebooks in results/ (nbval, --nbval-lax:
# cells marked NBVAL_CHECK_OUTPUT must reproduce their stored output after sanitising volatile values),
# then the vLLM tier in its own venv (scripts/test_vllm.sh; ART_SKIP_VLLM=1 skips it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
# Lint and format check first (seconds): ruff's settings are in pyproject.toml.
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# Notebooks re-executed by nbval write their outputs here, not over the committed results/.
export ART_RESULTS_ROOT="${ART_RESULTS_ROOT:-$(mktemp -d)}"
nbs=$(ls results/*/*.ipynb 2>/dev/null || true)
tracked_before=$(git status --porcelain --untracked-files=no 2>/dev/null || true)
.venv/bin/python -m pytest tests $nbs --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg \
  --nbval-cell-timeout 1800 "$@"
# The suite never writes a tracked file (results/ above all): what git tracks is as it was before pytest.
if [ "$(git status --porcelain --untracked-files=no 2>/dev/null || true)" != "$tracked_before" ]; then
  echo "test.sh: the tests changed tracked files:" >&2
  git status --porcelain --untracked-files=no >&2
  exit 1
fi
[ -n "${ART_SKIP_VLLM:-}" ] || bash scripts/test_vllm.sh
