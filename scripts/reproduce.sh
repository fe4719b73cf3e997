#!/usr/bin/env bash
# The main job: every notebook at its default parameters (papermill), writing results/.
# `bash scripts/reproduce.sh paper` runs the notebooks/params/*.paper.yaml settings instead (GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m art_lib.reproduce "$@"
