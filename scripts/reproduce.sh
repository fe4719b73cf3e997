#!/usr/bin/env bash
# The main job: every notebook at its default parameters (papermill), writing results/.
# `bash scripts/reproduce.sh paper` runs the notebooks/params/*.paper.yaml settings instead (GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
# The main job writes the committed results/ (--update-results); `python -m art_lib.reproduce` alone writes runs/.
exec .venv/bin/python -m art_lib.reproduce --update-results "$@"
