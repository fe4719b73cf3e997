#!/usr/bin/env bash
# GPU smoke test, one command, about 15 minutes on one GPU:  bash scripts/gpu_smoke.sh
# Refuses to run without CUDA. Run it from the kit's environment (environment.yml).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}

"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_smoke: no CUDA device visible to torch; nothing was run')"
"$PY" -c "from art_lib.kernels import linear_attention_kernels as k; print('linear-attention kernels:', k())"
# The paper path refuses the reference (slow) gated-delta-rule kernels on CUDA; so does this smoke test, first.
"$PY" - <<'PYEOF'
import os
import sys

from art_lib.kernels import DELTA_RULE_KERNELS, SLOW_KERNELS_ENV, linear_attention_kernels

slow = [k for k in DELTA_RULE_KERNELS if linear_attention_kernels()[k] == "torch"]
if slow and os.environ.get(SLOW_KERNELS_ENV, "") in ("", "0"):
    sys.exit(f"gpu_smoke: {slow} would run transformers' reference torch kernels: pip install -e '.[gpu]' "
             f"(or set {SLOW_KERNELS_ENV}=1 to measure the slow path on purpose)")
PYEOF

# 1. Paper dry run on CUDA in bfloat16: every notebook with its paper yaml on the kit's stand-in model
#    (small counts, tests/data); fails if a notebook fails or an RL arm makes no policy update.
t0=$(date +%s)
"$PY" -m art_lib.reproduce paper --dry-run --device cuda --dtype bfloat16
echo "paper dry run on CUDA (bfloat16): $(( $(date +%s) - t0 )) s"

# 2. One paper-settings RL step on the real 0.8B architecture (random weights), bfloat16, time and peak memory.
"$PY" scripts/gpu_smoke.py "$@"

# 3. The same step with its rollouts from vLLM, colocated on this GPU (vLLM's gpu_memory_utilization, the rest
#    for training), when vLLM is installed.
if "$PY" -c "import vllm" 2>/dev/null; then
    "$PY" scripts/gpu_smoke.py --vllm "$@"
else
    echo "vLLM not importable: the vLLM rollout step is skipped (scripts/bootstrap_vllm.sh installs it)"
fi

# 4. Calibration: this GPU's generation, evaluation and training speeds per model size of the paper plan (a few
#    minutes), saved to ${CALIBRATION_ROOT:-runs}/calibration.json, then the plan printed with them
#    (reuse it: python -m art_lib.reproduce paper --plan --calibration <that file>).
"$PY" -m art_lib.reproduce paper --calibrate --results-root "${CALIBRATION_ROOT:-runs}"
