"""Stacked runs against the same runs one at a time, in one process, on the demo's base.

Each round trains and evaluates `--runs` seeds of the demo's oversight runs stacked (`run_stacked`), and the first
`--alone` of them (all by default) one at a time (`run_lm`), alternating which goes first, so that a machine whose
speed drifts shows in both; prints each one's seconds a run, the ratio, and how many of the stacked runs' answers
are the runs alone's, and where the stacked side's time went (starting the runs, their batches, training, their
answers and results; and how long training waited for the device where it reads the losses, which stays small
even where the device bounds a step: the host then waits in launching kernels once CUDA's queue is full. Training's
time at two `--runs` tells instead: it doubles with the runs where the device is the bound, as on an H100 at 512 and
1,024). On a GPU, where hundreds of runs stack, `--alone` keeps the one-at-a-time side short.

With `--compile`, each stack trains under torch.compile (molab's runs do not; this measures whether they should: by
its arithmetic, most of the demo's stacked step on an H100 under bfloat16 autocast is the elementwise work between
the matmuls, which compiling fuses; on an H200, one stack of 512 compiled trained in 52 s against 18 s eager,
compiling included). With `--profile`, the stacked side runs under torch's profiler, and the ops
that took the most device time (the CPU's on a machine without a GPU) are listed after each round: where a step's
time goes (shorten it with `--set finetune.steps=30`).

Usage: python bench/stacked.py [--base runs/demo/base] [--runs 8] [--alone N] [--rounds 2] [--compile] [--profile]
                               [--set KEY=VALUE ...]
  (the demo's base, pretrained there first unless the folder holds it)
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import time
from unittest import mock
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
    host waits for the device where the loop reads the losses (`waiting`): near none when the host is the bound,
    and small too where a step's kernels fill CUDA's launch queue (see the module's doc)."""
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


def profiler(torch):
    from torch.profiler import ProfilerActivity, profile

    return profile(activities=[ProfilerActivity.CPU] + [ProfilerActivity.CUDA] * torch.cuda.is_available())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, default=Path("runs/demo/base"))
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--alone", type=int, help="runs of each round also trained one at a time (default: all)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="train each stack under torch.compile")
    parser.add_argument("--profile", action="store_true", help="list the stacked side's costliest ops")
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
          f"{f'{mixed} autocast' if mixed else 'float32'}{', stacks compiled' if args.compile else ''}", flush=True)
    ratios = []
    for round_ in range(args.rounds):
        specs = [RunSpec(100_000 * round_ + s) for s in range(args.runs)]
        runs = {"alone": specs[:args.alone], "stacked": specs}
        took, got = {}, {}
        spent = collections.Counter()
        for how in (("alone", "stacked") if round_ % 2 == 0 else ("stacked", "alone")):
            print(f"round {round_ + 1}: {len(runs[how])} runs {how}", flush=True)
            start = time.perf_counter()
            stacked, nothing = how == "stacked", contextlib.nullcontext()
            compiled = (mock.patch.object(molab.runs, "train", functools.partial(molab.runs.train, compile=True))
                        if args.compile and stacked else nothing)
            with compiled, sections(spent) if stacked else nothing, autocast(mixed), \
                    profiler(torch) if args.profile and stacked else nothing as prof:
                got[how] = (run_lm if how == "alone" else run_stacked)(setup, base, runs[how], None)
            if prof is not None:
                by = "self_device_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
                print(prof.key_averages().table(sort_by=by, row_limit=25, max_name_column_width=60), flush=True)
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
