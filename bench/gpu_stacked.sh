#!/usr/bin/env bash
# Stacked demo runs on one GPU, the parts most telling first (a call cut short still answers; about 21 minutes at
# most, each part at its time limit, the first four within 10):
#   1. tests of stacked runs and of the diversity term's dropout, on the GPU;
#   2. bench/stacked.py, 512 runs under bfloat16 autocast (one also alone): runs a minute on this card;
#   3. bench/gpu.py's part stack: the demo with 2,048 seeds in stacks of 512 under bfloat16, end to end through the CLI;
#   4. a profile of 30 stacked steps under bfloat16 (which ops take the device's time);
#   5. the same as 2 with the molab package in $BASELINE, where set (a folder holding another version's molab/): the
#      same card's figure before a change;
#   6. 512 runs in float32;
#   7. 512 runs in float32 with TF32 matmuls;
#   8. 512 runs under bfloat16, the stack compiled (`--compile`; on an H200, 2.4x slower than eager, compiling included);
#   9. part stack again, by 2 worker processes sharing the GPU.
# First, in seconds, bench/onednn.py on the machine's CPU: whether molab's rule for oneDNN's linear layers holds there.
# Usage: [BASELINE=DIR] bash bench/gpu_stacked.sh [DEMO_BASE]   (default runs/demo/base: run `make demo` first)
set -u
cd "$(dirname "$0")/.."
base="${1:-runs/demo/base}"
export PYTHONUNBUFFERED=1
bf16=(--set finetune.autocast=bfloat16)
stacked() {  # LIMIT MOLAB_DIR ARGS...: bench/stacked.py on 512 runs, with the molab package in MOLAB_DIR ("": this one)
  local limit=$1 from=${2:+$(realpath "$2")}
  shift 2
  echo "== bench/stacked.py $* (molab from $(here=$PWD; cd / && PYTHONPATH="${from:+$from:}$here" python3 -c \
    'import molab; print(molab.__path__[0])'))"
  PYTHONPATH="${from:+$from:}$PWD" timeout "$limit" python3 bench/stacked.py --base "$base" --runs 512 --alone 1 \
    --rounds 1 "$@"
}
stack_demo() {  # LIMIT WORKERS: bench/gpu.py's part stack
  echo "== bench/gpu.py --parts stack, $2 worker(s)"
  PYTHONPATH="$PWD" timeout "$1" python3 bench/gpu.py "$base" "$(mktemp -d)" --parts stack --stack-runs 2048 \
    --stack-size 512 --stack-workers "$2" --stack-set finetune.autocast=bfloat16
}
PYTHONPATH="$PWD" python3 -c "import torch, transformers; print(torch.cuda.get_device_name(), 'torch', \
torch.__version__, 'transformers', transformers.__version__)"
PYTHONPATH="$PWD" timeout 60 python3 bench/onednn.py
echo "== tests on the GPU"
PYTHONPATH="$PWD:$PWD/tests" timeout 130 python3 -m pytest -q -p no:cacheprovider --tb=line tests/test_stacked.py \
  tests/test_diversity.py -k "start_as or later_phase or dropout" 2>&1 | tail -8
stacked 100 "" "${bf16[@]}"
stack_demo 210 1
stacked 80 "" "${bf16[@]}" --set finetune.steps=30 --profile 2>&1 | grep -v USDT
[ -n "${BASELINE:-}" ] && stacked 100 "$BASELINE" "${bf16[@]}"
stacked 80 ""
TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1 stacked 80 ""
stacked 200 "" "${bf16[@]}" --compile
stack_demo 240 2
