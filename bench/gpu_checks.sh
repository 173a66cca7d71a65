#!/bin/bash
# The GPU checks of one device session (issue 15): the CUDA tests, then the audit's images/s on one GPU.
# Run from the repository root on a machine with a CUDA GPU and PyTorch; wheels of missing packages in .whl/.
set -u
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src:$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1 KDSCOPE_NO_CACHE=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"
timeout 150 python3 -m pytest -q -p no:cacheprovider -o addopts="" tests/test_cuda.py 2>&1 | tail -25 | tee "$OUT/cuda_tests.txt"
timeout 240 python3 bench/bench_scale.py gpu 2>&1 | tail -30 | tee "$OUT/scale_gpu.txt"
