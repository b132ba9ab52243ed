#!/usr/bin/env bash
# Time the demo-size sweeps (examples/incentive.toml and examples/spoonfeeding.toml) with 2 local
# workers, with peak memory. The base is pretrained once in the first sweep's folder and reused by
# the second (base = PATH), so the second time is the sweep alone; the first includes pretraining,
# whose own time is in base/molab_base.json. Usage: bash bench/sweep_time.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-$(mktemp -d)}"
mkdir -p "$work"
molab=".venv/bin/python -m molab"
/usr/bin/time -f "incentive sweep (base pretraining included): %e s wall, peak memory %M KiB" -o "$work/incentive.time" \
  $molab run examples/incentive.toml --out "$work/incentive" --workers 2 > "$work/incentive.log" 2>&1
cat "$work/incentive.time"
python3 -c "import json,sys; print('  of which pretraining:', json.load(open(sys.argv[1]))['seconds'], 's')" \
  "$work/incentive/base/molab_base.json"
grep "^molab:" "$work/incentive.log"
/usr/bin/time -f "spoonfeeding sweep (base reused): %e s wall, peak memory %M KiB" -o "$work/spoon.time" \
  $molab run examples/spoonfeeding.toml --out "$work/spoon" --workers 2 --set base="$work/incentive/base" \
  > "$work/spoon.log" 2>&1
cat "$work/spoon.time"
grep "^molab:" "$work/spoon.log"
