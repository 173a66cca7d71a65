#!/bin/bash
# The positive-control sweep of issue 17 on one GPU: bench_transfer_controls.py, three seeds.
# Run from the repository root on a machine with a CUDA GPU and PyTorch; wheels of missing packages in .whl/.
set -u
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src:$PWD/bench:${PYTHONPATH:-} PYTHONUNBUFFERED=1 KDSCOPE_NO_CACHE=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$OUT/gpu.txt"
timeout "${SWEEP_SECONDS:-480}" python3 bench/bench_transfer_controls.py --device cuda --seeds ${SEEDS:-0 1 2} \
    --out "$OUT" 2>&1 | grep -v "^{" | tail -40
