#!/usr/bin/env bash
# Time `make demo` cold (fresh clone: venv, install, pretraining, runs) and warm (the same again),
# with peak memory, then a re-analysis of the demo folder (`molab report --set eval.*`, no training)
# and the size of the store with every answer. Usage: bash bench/demo_time.sh [WORKDIR]
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$(mktemp -d)}"
git clone -q "$src" "$work/molab"
cd "$work/molab"
for phase in cold warm; do
  /usr/bin/time -f "$phase: %e s wall, peak memory %M KiB" -o "$work/$phase.time" make demo > "$work/$phase.log" 2>&1
  cat "$work/$phase.time"
done
tail -n 2 "$work/warm.log"
/usr/bin/time -f "report --set eval.policy_threshold=0.6: %e s wall" -o "$work/report.time" \
  .venv/bin/molab report runs/demo --set eval.policy_threshold=0.6 > "$work/report.log" 2>&1
cat "$work/report.time"
echo "store with every answer: $(du -k runs/demo/molab.sqlite | cut -f1) KiB"
