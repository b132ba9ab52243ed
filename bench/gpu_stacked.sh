#!/usr/bin/env bash
# Stacked demo runs on one GPU, each lever of a step's cost in turn (`bench/stacked.py`, 512 runs, one alone as the
# baseline): bfloat16 autocast; the same with each stack compiled (`--compile`); float32 with TF32 matmuls; and a
# profile of 30 steps (which ops take the device's time). About 8 minutes once the machine is up.
# Usage: bash bench/gpu_stacked.sh [DEMO_BASE]   (default runs/demo/base: run `make demo` first)
set -u
cd "$(dirname "$0")/.."
base="${1:-runs/demo/base}"
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
stacked() { echo "== $*"; timeout "$1" python3 bench/stacked.py --base "$base" --runs 512 --alone 1 --rounds 1 "${@:2}"; }
stacked 110 --set finetune.autocast=bfloat16
stacked 200 --set finetune.autocast=bfloat16 --compile
TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1 stacked 100
stacked 80 --set finetune.autocast=bfloat16 --set finetune.steps=30 --profile 2>&1 | grep -v USDT
