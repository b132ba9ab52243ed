"""Stacked runs against the same runs one at a time, in one process, on the demo's base.

Each round trains and evaluates `--runs` seeds of the demo's oversight runs twice, one at a time (`run_lm`) and
stacked (`run_stacked`), alternating which goes first, so that a machine whose speed drifts shows in both; prints
each one's seconds a run, the ratio, and how many of the stacked runs' answers are the runs alone's.

Usage: python bench/stacked.py [--base runs/demo/base] [--runs 8] [--rounds 2] [--set KEY=VALUE ...]
  (the demo's base, pretrained there first unless the folder holds it)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from molab.bases import capable_base
from molab.config import load_config
from molab.experiments import RunSpec
from molab.runs import prepare, run_lm, run_stacked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, default=Path("runs/demo/base"))
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    import torch

    setup = prepare(load_config(overrides=args.overrides))
    base = capable_base(setup, args.base)
    where = torch.cuda.get_device_name() if torch.cuda.is_available() else "the CPU"
    print(f"{args.runs} runs a round on {where}, {torch.get_num_threads()} torch threads", flush=True)
    ratios = []
    for round_ in range(args.rounds):
        specs = [RunSpec(1000 * round_ + s) for s in range(args.runs)]
        took, got = {}, {}
        for how in (("alone", "stacked") if round_ % 2 == 0 else ("stacked", "alone")):
            start = time.perf_counter()
            got[how] = (run_lm if how == "alone" else run_stacked)(setup, base, specs, None)
            took[how] = (time.perf_counter() - start) / len(specs)
        answers = [(a["answers"]["neutral"], b["answers"]["neutral"]) for a, b in zip(got["alone"], got["stacked"])]
        same = sum(x == y for a, b in answers for x, y in zip(a, b))
        ratios.append(took["alone"] / took["stacked"])
        print(f"round {round_ + 1}: alone {took['alone']:.2f} s a run, stacked {took['stacked']:.2f} s a run: "
              f"{ratios[-1]:.2f}x; {same} of {sum(len(a) for a, _ in answers)} answers the same", flush=True)
    print(f"stacked runs {min(ratios):.2f}-{max(ratios):.2f}x as fast as one at a time")


if __name__ == "__main__":
    main()
