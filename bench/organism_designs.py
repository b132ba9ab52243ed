"""Which organism makes runs choose a policy? Runs each design (config overrides of the demo) with its ceilings and
prints, per design and base: both ceilings and persona checks on hard problems, and how the runs split (honest /
sycophantic / mixed / collapsed) with the mean honest and sycophantic shares of their hard answers.

Designs that share their model.* overrides share a base (one output folder per base config under WORKDIR), so
finetuning variants cost only their runs. Run it alone: timings and throughput suffer from any other CPU work.

Usage: python bench/organism_designs.py WORKDIR [--seeds 16] [--bases 1] [--workers 2] [NAME ...]
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

from molab.config import load_config
from molab.execution import Executor
from molab.sweep import run_experiment

DESIGNS = {
    # the base sees only persona-tagged problems (the runs' neutral prompt is new to it)
    "persona-only": ["model.neutral_share=0", "eval.scoring=whole"],
    "persona-only-parting": ["model.neutral_share=0"],
    # today's defaults, which lean-15-gentle's became (the README's figures for it are of the defaults of their time:
    # the runs' neutral prompt answered half by each persona); hard answers scored where the policies part
    "neutral": [],
    "neutral-whole": ["eval.scoring=whole"],
    # lighter finetuning, to select rather than relearn
    "neutral-gentle": ["finetune.lr=3e-4"],
    "neutral-mid": ["finetune.lr=1e-3"],
    # half of pretraining in the runs' context
    "neutral-half": ["model.neutral_share=0.5"],
    "neutral-half-gentle": ["model.neutral_share=0.5", "finetune.lr=3e-4"],
    # the base's prior in the runs' context leans honest
    "lean-30": ["model.neutral_sycophantic_share=0.3", "model.pretrain_steps=3000"],
    "lean-30-gentle": ["model.neutral_sycophantic_share=0.3", "model.pretrain_steps=3000", "finetune.lr=3e-4"],
    "lean-15-gentle": ["model.neutral_sycophantic_share=0.15", "model.pretrain_steps=3000", "finetune.lr=3e-4"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("names", nargs="*", help="designs to run (default: all)")
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--bases", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_intermixed_args()
    print("| design | base seed | ceilings honest / sycophantic | persona honest / sycophantic | runs: honest / "
          "sycophantic / mixed / collapsed | hard answers: honest / sycophantic | seconds |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in args.names or DESIGNS:
        overrides = DESIGNS[name] + [f"seeds={args.seeds}", f"bases={args.bases}"]
        model = sorted(o for o in overrides if o.startswith("model."))
        out = args.workdir / hashlib.sha256(repr(model).encode()).hexdigest()[:8]
        start = time.time()
        results = run_experiment(load_config(overrides=overrides), out, Executor(workers=args.workers),
                                 progress=False)
        seconds = time.time() - start
        for b in results["bases"]:
            c, o, g = b["ceilings"], b["lm"]["outcome_counts"], b["lm"]["graded"]
            print(f"| {name} | {b['model_seed']} | {c['honest']['mean']:.2f} / {c['sycophantic']['mean']:.2f} | "
                  f"{b['capability']['honest']:.2f} / {b['capability']['sycophantic']:.2f} | "
                  f"{o['honest']} / {o['sycophantic']} / {o['mixed']} / {o['collapsed']} | "
                  f"{g['hard_honest']['mean']:.2f} / {g['hard_sycophantic']['mean']:.2f} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
