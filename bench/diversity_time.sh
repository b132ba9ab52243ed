#!/usr/bin/env bash
# Time the demo-size diversity experiment (examples/diversity.toml: 16 plain runs, the census's independent
# draws, and a chain of 8 diversity runs, with ceilings) with 2 local workers, with peak memory. Pass a folder
# holding a demo base (e.g. runs/demo after `make demo`) to reuse it, so the time is the runs alone; without one
# the base is pretrained first (its own time is in base/molab_base.json). Usage:
#   bash bench/diversity_time.sh [DEMO_FOLDER] [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
work="${2:-$(mktemp -d)}"
mkdir -p "$work/diversity"
if [ -n "${1:-}" ]; then cp -r "$1/base" "$work/diversity/base"; fi
/usr/bin/time -f "diversity experiment: %e s wall, peak memory %M KiB" -o "$work/diversity.time" \
  .venv/bin/python -m molab run examples/diversity.toml --out "$work/diversity" --workers 2 > "$work/diversity.log" 2>&1
cat "$work/diversity.time"
grep "^molab:" "$work/diversity.log"
.venv/bin/python - "$work/diversity" <<'PY'
import sys
from molab import load_results
df = load_results(sys.argv[1])
lm = df[df["learner"] == "lm"]
for what, runs in (("ceiling runs", lm[lm["ceiling"].notna()]), ("plain runs", lm[lm["ceiling"].isna() & (lm["n_after"] == 0)]),
                   ("diversity runs", lm[lm["n_after"] > 0])):
    print(f"  {what}: {len(runs)}, {runs['seconds'].mean():.1f} s each on average (worker time)")
PY
