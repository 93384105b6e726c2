#!/usr/bin/env bash
# One-shot GPU check: full-size Enformer (49,152 and 196,608 bp) and Borzoi (524,288 bp),
# gene-mode and variant-centred scoring, float32 and bf16: variant-scores/s, model FLOP
# utilisation, peak GPU memory, bf16 vs float32 difference (benchmarks/gpu_check.py).
# Meant to finish in under 8 minutes on one H100.
#
#   bash benchmarks/gpu_check.sh                 # on a GPU machine
#   VARSCORE_GPU_CHECK_TINY=1 bash benchmarks/gpu_check.sh   # tiny models, any device (CI, on CPU)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ "${VARSCORE_GPU_CHECK_TINY:-0}" = 1 ]; then
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
    exec python benchmarks/gpu_check.py --tiny "$@"
fi
if ! python -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_check: no CUDA device here; VARSCORE_GPU_CHECK_TINY=1 runs the tiny CPU version" >&2
    exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec timeout 480 python benchmarks/gpu_check.py "$@"
