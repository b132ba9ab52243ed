"""Stacked runs against the same runs one at a time, in one process, on the demo's base.

Each round trains and evaluates `--runs` seeds of the demo's oversight runs stacked (`run_stacked`), and the first
`--alone` of them (all by default) one at a time (`run_lm`), alternating which goes first, so that a machine whose
speed drifts shows in both; prints each one's seconds a run, the ratio, and how many of the stacked runs' answers
are the runs alone's, and where the stacked side's time went (starting the runs, their batches, training, their
answers and results; and how long training waited for the device, which tells a GPU-bound step from a host-bound
one). On a GPU, where hundreds of runs stack, `--alone` keeps the one-at-a-time side short.

Usage: python bench/stacked.py [--base runs/demo/base] [--runs 8] [--alone N] [--rounds 2] [--set KEY=VALUE ...]
  (the demo's base, pretrained there first unless the folder holds it)
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import time
from pathlib import Path

import molab.runs
import molab.training.loop
from molab.bases import capable_base
from molab.config import load_config
from molab.experiments import RunSpec
from molab.learners.lm import autocast
from molab.runs import prepare, run_lm, run_stacked


@contextlib.contextmanager
def sections(spent: collections.Counter):
    """Add the seconds molab.runs spends starting runs, drawing batches (host only), training and finishing runs
    (answers included) to `spent`, the GPU's queue drained at each boundary; and, within training, the seconds the
    host waits for the device where the loop reads the losses (`waiting`): near all of training when the device
    is the bound, near none when the host is."""
    import torch

    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)

    def timed(name, f, sync=sync):
        def g(*args, **kwargs):
            sync()
            start = time.perf_counter()
            try:
                return f(*args, **kwargs)
            finally:
                sync()
                spent[name] += time.perf_counter() - start
        return g

    def timed_batches(f):
        def g(*args):
            for_each = f(*args)
            while True:
                start = time.perf_counter()
                batch = next(for_each)
                spent["batches"] += time.perf_counter() - start
                yield batch
        return g

    names = {"_start": "start", "train": "train", "_finish": "answers and results"}
    saved = {name: getattr(molab.runs, name) for name in [*names, "stacked_batches"]}
    check = molab.training.loop._check
    for name, label in names.items():
        setattr(molab.runs, name, timed(label, saved[name]))
    molab.runs.stacked_batches = timed_batches(saved["stacked_batches"])
    molab.training.loop._check = timed("waiting", check, sync=lambda: None)  # where the host waits for the device
    try:
        yield
    finally:
        for name, f in saved.items():
            setattr(molab.runs, name, f)
        molab.training.loop._check = check


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, default=Path("runs/demo/base"))
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--alone", type=int, help="runs of each round also trained one at a time (default: all)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    if args.alone is not None and args.alone < 1:
        parser.error("--alone: at least 1 run")
    import torch

    setup = prepare(load_config(overrides=args.overrides))
    base = capable_base(setup, args.base)
    where = torch.cuda.get_device_name() if torch.cuda.is_available() else "the CPU"
    mixed = setup.cfg.finetune.autocast  # applied around the runs, as a sweep applies it
    print(f"{args.runs} runs a round on {where}, {torch.get_num_threads()} torch threads, "
          f"{f'{mixed} autocast' if mixed else 'float32'}", flush=True)
    ratios = []
    for round_ in range(args.rounds):
        specs = [RunSpec(100_000 * round_ + s) for s in range(args.runs)]
        runs = {"alone": specs[:args.alone], "stacked": specs}
        took, got = {}, {}
        spent = collections.Counter()
        for how in (("alone", "stacked") if round_ % 2 == 0 else ("stacked", "alone")):
            print(f"round {round_ + 1}: {len(runs[how])} runs {how}", flush=True)
            start = time.perf_counter()
            with sections(spent) if how == "stacked" else contextlib.nullcontext(), autocast(mixed):
                got[how] = (run_lm if how == "alone" else run_stacked)(setup, base, runs[how], None)
            took[how] = (time.perf_counter() - start) / len(runs[how])
        answers = [(a["answers"]["neutral"], b["answers"]["neutral"]) for a, b in zip(got["alone"], got["stacked"])]
        same = sum(x == y for a, b in answers for x, y in zip(a, b))
        ratios.append(took["alone"] / took["stacked"])
        memory = (f"; peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"
                  if torch.cuda.is_available() else "")
        print(f"round {round_ + 1}: alone {took['alone']:.2f} s a run ({len(runs['alone'])} runs), stacked "
              f"{took['stacked']:.3f} s a run ({len(specs)} runs, {60 / took['stacked']:.0f} a minute): "
              f"{ratios[-1]:.2f}x; {same} of {sum(len(a) for a, _ in answers)} answers the same{memory}; stacked, "
              f"seconds: {', '.join(f'{k} {v:.1f}' for k, v in spent.items())} (batches and waiting within train)",
              flush=True)
    print(f"stacked runs {min(ratios):.2f}-{max(ratios):.2f}x as fast as one at a time")


if __name__ == "__main__":
    main()
