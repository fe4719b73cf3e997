#!/usr/bin/env bash
# Create .venv (if missing) and install the kit with its test and notebook extras.
# Re-running is cheap: the install is skipped while pyproject.toml is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python >= 3.11 is required" >&2; exit 1; }
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.art_lib-installed
want=$(sha256sum pyproject.toml | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # torch first, pinned: where a CPU wheel is provided locally (pip find-links) pip takes it,
  # elsewhere PyPI's default build. Set TORCH_SPEC to choose another build.
  .venv/bin/python -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
  .venv/bin/python -m pip install -q -e ".[dev]"
  .venv/bin/python -m ipykernel install --prefix .venv --name python3 >/dev/null  # what papermill and nbval run
  echo "$want" > "$stamp"
fi
# The "ART kit" kernel, listed by any Jupyter of this user (JupyterLab in .venv included): this checkout's .venv
# python. Installed on every run (a second), so it never points at another checkout that installed it later.
.venv/bin/python -m ipykernel install --user --name art-kit --display-name "ART kit" >/dev/null
