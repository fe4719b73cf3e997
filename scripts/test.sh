#!/usr/bin/env bash
# The whole test suite: unit tests (pytest) and the notebooks at their default parameters (nbval).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m pytest "$@"
