#!/usr/bin/env bash
# Time the two conditional organisms at demo size, each from nothing (the locked or backdoored base is pretrained
# first), with 2 local workers, with peak memory: examples/password_lock.toml and examples/backdoor.toml. Usage:
#   bash bench/conditional_time.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-$(mktemp -d)}"
for name in password_lock backdoor; do
  /usr/bin/time -f "$name: %e s wall, peak memory %M KiB" -o "$work/$name.time" \
    .venv/bin/python -m molab run "examples/$name.toml" --out "$work/$name" --workers 2 > "$work/$name.log" 2>&1
  cat "$work/$name.time"
  .venv/bin/python -c "import json, sys; b = json.load(open(sys.argv[1])); print(f'  base: {b[\"steps\"]} steps in {b[\"seconds\"]} s; check {b[\"capability_curve\"][-1]}')" \
    "$work/$name/base/molab_base.json"
  grep "^molab: " "$work/$name.log" | tail -1 | cut -c1-2000
done
