#!/usr/bin/env bash
# Every precision mode on CUDA, the same figures as on CPU, in a few minutes:
#   bash bench/gpu_check.sh            (from the repo root, with the venv of `make setup` or any
#                                       environment where mpops and a CUDA torch are installed)
# Prints the matmul peaks, each mode's training throughput / memory / MFU, the trainer overhead,
# and the GPU tests. Exits non-zero if CUDA is missing or a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
$PY - <<'PY'
import sys, torch
if not torch.cuda.is_available():
    sys.exit("gpu_check: no CUDA device visible to torch " + torch.__version__)
p = torch.cuda.get_device_properties(0)
print(f"gpu_check: {p.name}, compute capability {p.major}.{p.minor}, {p.total_memory / 2**30:.0f} GiB, torch {torch.__version__}")
PY
MODES=fp32,tf32,bf16,fp16,bf16-true
if $PY -c "import torch, torchao.float8, sys; sys.exit(torch.cuda.get_device_capability(0) < (8, 9))" 2>/dev/null; then
  MODES=$MODES,fp8
else
  echo "gpu_check: fp8 left out (needs compute capability 8.9+ and torchao)"
fi
[ -f data/digits.csv ] || $PY -m flows.cli restore-data
$PY bench/matmul_peak.py --device cuda --seconds 0.5
$PY bench/precision_speedup.py --models mlp,cnn,transformer --precisions "$MODES" --epochs 3 --repeats 2
# 60 epochs: on a GPU the digits set has 3 steps an epoch, and a timed window of a few steps is mostly noise.
$PY bench/train_overhead.py --models mlp,transformer --precisions fp32,bf16,fp16 --epochs 60 --repeats 3 --no-lightning --device cuda
# The GPU tests need only torch and the core: the file runs where mlflow and Prefect are not installed.
$PY -m pytest -q -p no:cacheprovider -m gpu tests/model/test_gpu.py
