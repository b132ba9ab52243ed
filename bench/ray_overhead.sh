#!/usr/bin/env bash
# The demo-size spoonfeeding sweep (examples/spoonfeeding.toml) twice on one cached base: with 2 local
# worker processes, then on a local Ray instance that molab starts and stops (one CPU per task, so 2 tasks
# at once on 2 cores, as with the workers). Prints both wall times, Ray's overhead as a share of its wall
# time, and whether the two results.json agree on the counts and the prior-odds fit.
# Usage: bash bench/ray_overhead.sh [WORKDIR] [BASE]   (BASE default runs/demo/base; pretrained there if absent)
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-$(mktemp -d)}"
base="${2:-runs/demo/base}"
mkdir -p "$work"
molab=".venv/bin/python -m molab"
[ -f "$base/molab_base.json" ] || $molab demo --out "$(dirname "$base")" > "$work/demo.log" 2>&1
for how in local ray; do
  if [ "$how" = local ]; then args=(--workers 2 --threads 1); else args=(--executor ray --threads 1); fi
  /usr/bin/time -f "%e" -o "$work/$how.time" $molab run examples/spoonfeeding.toml --out "$work/$how" \
    --set base="$base" "${args[@]}" > "$work/$how.log" 2>&1
  echo "spoonfeeding sweep, $how: $(cat "$work/$how.time") s"
done
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
local, ray = (json.load(open(f"{work}/{how}/results.json")) for how in ("local", "ray"))
t_local, t_ray = (float(open(f"{work}/{how}.time").read()) for how in ("local", "ray"))
print(f"Ray's overhead: {(t_ray - t_local) / t_ray:.1%} of its wall time ({t_ray - t_local:+.0f} s)")
counts = lambda r: [(c["pressure"], c["k"], c["n"]) for c in r["pressure_curve"]]
print("same counts:", counts(local) == counts(ray), counts(ray))
print("same prior-odds fit:", local["prior_odds"] == ray["prior_odds"])
PY
