#!/usr/bin/env bash
# Stacked demo runs on one GPU, each lever of their cost in turn, most telling first (the later ones are cut off
# first where a call's time runs out; up to about 12 minutes once the machine is up, each part at its time limit):
#   1. bench/stacked.py, 512 runs under bfloat16 autocast (one alone): the baseline on this machine;
#   2. bench/gpu.py's part stack, 2,048 runs in stacks of 512 by 2 worker processes sharing the GPU, under bfloat16:
#      one process's host work (starting runs, answering) overlapping the other's training, end to end;
#   3. the baseline with each stack compiled (`--compile`), which fuses the elementwise work between the matmuls;
#   4. a profile of 30 stacked steps (which ops take the device's time);
#   5. float32 with TF32 matmuls.
# Usage: bash bench/gpu_stacked.sh [DEMO_BASE]   (default runs/demo/base: run `make demo` first)
set -u
cd "$(dirname "$0")/.."
base="${1:-runs/demo/base}"
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
stacked() { echo "== bench/stacked.py ${*:2}"; timeout "$1" python3 bench/stacked.py --base "$base" --runs 512 \
  --alone 1 --rounds 1 "${@:2}"; }
stacked 110 --set finetune.autocast=bfloat16
echo "== bench/gpu.py --parts stack, 2 workers"
timeout 240 python3 bench/gpu.py "$base" "$(mktemp -d)" --parts stack --stack-runs 2048 --stack-size 512 \
  --stack-workers 2 --stack-set finetune.autocast=bfloat16
stacked 200 --set finetune.autocast=bfloat16 --compile
stacked 80 --set finetune.autocast=bfloat16 --set finetune.steps=30 --profile 2>&1 | grep -v USDT
TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1 stacked 100
