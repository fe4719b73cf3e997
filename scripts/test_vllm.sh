#!/usr/bin/env bash
# The vLLM tier, in its own venv (.venv-vllm: vllm-cpu beside the kit, set up by scripts/bootstrap_vllm.sh):
# a real vLLM server and offline engine on the shipped toy:base (tests/vllm_tier/), the torchvision-backed
# processor parity tests (tests/test_preprocess.py; torchvision imports there), and a check that
# `pip install 'art-lib[vllm]'` resolves (pip --dry-run, re-run when pyproject.toml changes; needs the index).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap_vllm.sh
VENV=${ART_VLLM_VENV:-.venv-vllm}
resolved=$VENV/.vllm-extra-resolves
want=$(sha256sum pyproject.toml | cut -c1-16)
if [ "$(cat "$resolved" 2>/dev/null)" != "$want" ]; then
  "$VENV/bin/python" -m pip install --dry-run -q ".[vllm]"
  echo "$want" > "$resolved"
fi
export VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1}  # GiB: the toy models need little
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
export ART_VLLM_TIER=1  # tests/vllm_tier: a missing or broken vLLM fails every tier test (never a skip)
exec "$VENV/bin/python" -m pytest tests/vllm_tier tests/test_vllm_engine.py tests/test_preprocess.py \
  -p no:cacheprovider "$@"
