"""Training speed on a busy machine: steps/s alone and beside one competing CPU-bound process, as a ratio.

The competitor is a Python busy loop in a session of its own, as another user's job or another terminal's
would be (the kernel shares the CPU between sessions first, then between the threads of each). Each setting
runs in a fresh process, since OpenMP reads its wait policy once, when torch loads:

- OpenMP threads that sleep at once when they wait (OMP_WAIT_POLICY=PASSIVE), all cores, and one thread;
- threads that spin a bounded count, then sleep (GOMP_SPINCOUNT, read by the GNU OpenMP that torch's Linux wheels
  ship), all cores; 1,000 spins is molab's default;
- OpenMP's spinning wait (OMP_WAIT_POLICY=ACTIVE, close to torch's default), all cores, for contrast.

    python bench/busy_machine.py [--seconds 20] [--set model.compile=false --set model.batch_size=32 ...]
    (those two: a step the size of a run's finetuning step rather than pretraining's)
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import subprocess
import sys
import time


def spins(n: int) -> dict[str, str]:
    return {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": str(n)}


SETTINGS = {"passive wait, all cores": (spins(0), None),
            "passive wait, 1 thread": (spins(0), 1),
            **{f"passive after {n:,} spins, all cores{' (molab)' if n == 1000 else ''}": (spins(n), None)
               for n in (300, 600, 1000)},
            "spinning wait (OMP_WAIT_POLICY=ACTIVE), all cores": ({"OMP_WAIT_POLICY": "ACTIVE"}, None)}


def measure(seconds: float, overrides: list[str]) -> dict:
    """In this process: steps/s of the demo base's pretraining on one fixed batch, alone and then beside a
    competing process."""
    import torch

    from molab.config import load_config
    from molab.learners.lm import build_model, encode
    from molab.learners.onednn import faster_linears
    from molab.learners.tokenizer import char_tokenizer
    from molab.runs import prepare
    from molab.training.loop import train
    from molab.training.objectives import sft

    cfg = load_config(overrides=overrides)
    setup, m = prepare(cfg), cfg.model
    tokenizer = char_tokenizer(setup.alphabet, (m.honest_tag, m.sycophantic_tag))
    max_len = setup.max_len(tokenizer)
    model = faster_linears(build_model(m, tokenizer, max_len))  # as a run's model computes (compiled: unchanged)
    corpus = setup.experiment.corpus(setup.world, cfg, random.Random(0))
    batch = encode(tokenizer, [next(corpus) for _ in range(m.batch_size)], max_len)
    rates: dict[str, float] = {}

    def batches():  # warm-up (compilation), then each window for `seconds`
        yield from itertools.repeat(batch, 15)
        for window in ("alone", "busy"):
            competitor = None
            if window == "busy":
                competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
                time.sleep(1)
            start, steps = time.perf_counter(), 0
            while time.perf_counter() - start < seconds:
                steps += 1
                yield batch
            rates[window] = steps / (time.perf_counter() - start)
            if competitor:
                competitor.kill()

    try:
        train(model, batches(), sft, steps=10**9, lr=m.lr, progress=False, compile=m.compile)
    except StopIteration:  # the windows are done
        pass
    return {"threads": torch.get_num_threads(), "compile": m.compile} | rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each measured window")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)  # threads; 0: torch's default
    args = parser.parse_args()
    if args.child is not None:
        if args.child:
            import torch

            torch.set_num_threads(args.child)
        print(json.dumps(measure(args.seconds, args.overrides)))
        return
    print(f"{os.cpu_count()} cores; each window {args.seconds:g} s; competitor: one busy Python loop in its own "
          "session")
    print(f"{'setting':52} {'threads':>7} {'alone':>11} {'busy':>11} {'slowdown':>9}")
    for name, (env, threads) in SETTINGS.items():
        cmd = [sys.executable, __file__, "--child", str(threads or 0), "--seconds", str(args.seconds),
               *[a for o in args.overrides for a in ("--set", o)]]
        base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
        out = subprocess.run(cmd, env=base | env, capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(f"{name:52} {r['threads']:>7} {r['alone']:>7.2f} st/s {r['busy']:>7.2f} st/s "
              f"{r['alone'] / r['busy']:>8.2f}x", flush=True)


if __name__ == "__main__":
    main()
