"""molab on one GPU: its CUDA code paths and its throughput there.

1. The tests of training, LoRA, the incentive objectives and the KL reference, run on the GPU.
2. Finetune runs per GPU-minute of the demo (16 runs and 8 ceiling runs) on a given demo base, so that no
   pretraining is timed: one run at a time (`--workers 1`), several worker processes sharing the GPU
   (`--workers N`), and several at once with bfloat16 weights; and (part `stack`) the demo with `--stack-runs`
   seeds, trained in stacks of `--stack-size` (`--stack`) by `--stack-workers` processes (two overlap one's host
   work, starting runs and answering, with the other's training).
3. The demo-size oversight experiment with LoRA in bfloat16 on a Llama checkpoint of about 113M parameters built
   here (byte-level BPE tokenizer, briefly pretrained: this measures cost, not capability): runs per GPU-minute
   and the peak GPU memory.

Runs per minute count the LM runs the store holds as done, over the whole command's wall time (start-up, the base's
check and the controls included); a step cut short at its time limit counts the runs it finished. "In its task" is
60 over a run's mean share of its task's time (`seconds` in the store): the runs' own throughput, without start-up. GPU
memory is sampled with nvidia-smi every 0.25 s: all processes together, their CUDA contexts included.

Usage: python bench/gpu.py DEMO_BASE WORKDIR [--workers 8] [--stack-runs 2048] [--stack-size 512]
                          [--stack-workers 1] [--stack-set KEY=VALUE ...] [--parts ...] [--limit-scale 1]
  (DEMO_BASE: the base/ folder of a `molab demo` output folder)
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ["tests/test_checkpoints.py", "tests/test_sweeps.py::test_incentive_objectives_raise_the_reward",
         "tests/test_training.py", "tests/test_stacked.py"]


def timed(name: str, cmd: list[str], limit: float, workdir: Path) -> tuple[str, float, int | None]:
    """Run `cmd` (its own process group, killed at `limit` seconds) logging to WORKDIR/NAME.log; (exit status or
    "cut short", wall seconds, peak GPU MiB or None without nvidia-smi)."""
    env = os.environ | {"PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", "PYTHONUNBUFFERED": "1"}
    mem = workdir / f"{name}.mem"
    sampler = (subprocess.Popen(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits",
                                 "-lms", "250", "-f", str(mem)]) if shutil.which("nvidia-smi") else None)
    start = time.time()
    with open(workdir / f"{name}.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            status = f"exit {proc.wait(timeout=limit)}"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            status = f"cut short at {limit:.0f} s"
    wall = time.time() - start
    peak = None
    if sampler:
        sampler.terminate()
        sampler.wait()
        peak = max((int(x) for x in mem.read_text().split() if x.isdigit()), default=None)
    return status, wall, peak


def runs_done(out: Path) -> tuple[int, float, float]:
    """(LM runs done, their mean seconds each, runs per minute between the first and the last to finish: those that
    finished more than 2 s after the first, over the seconds between, so that the first stack's runs, which finish
    together, do not count as finished within that span) in OUT's store."""
    if not (out / "molab.sqlite").is_file():
        return 0, float("nan"), float("nan")
    with sqlite3.connect(out / "molab.sqlite") as db:
        done = "FROM runs WHERE learner = 'lm' AND status = 'done'"
        n, mean, first, span = db.execute(f"SELECT count(*), avg(seconds), min(finished_at), (julianday(max("
                                          f"finished_at)) - julianday(min(finished_at))) * 86400 {done}").fetchone()
        later = db.execute(f"SELECT count(*) {done} AND julianday(finished_at) > julianday(?) + 2 / 86400.0",
                           (first,)).fetchone()[0]
    return n, mean or float("nan"), later / span * 60 if span else float("nan")


def experiment(name: str, workdir: Path, base: Path | None, workers: int, sets: list[str], limit: float,
               stack: int = 1) -> None:
    out = workdir / name
    if base is not None:
        shutil.copytree(base, out / "base")
    cmd = [sys.executable, "-m", "molab", "demo", "--out", str(out), "--workers", str(workers), "--stack", str(stack)]
    status, wall, peak = timed(name, cmd + [a for s in sets for a in ("--set", s)], limit, workdir)
    n, mean, steady = runs_done(out)
    print(f"{name} (--workers {workers} --stack {stack}{''.join(' ' + s for s in sets)}): {status}, {wall:.0f} s "
          f"wall, {n} LM runs done = {n / wall * 60:.1f} runs per GPU-minute ({steady:.1f} between the first and the "
          f"last to finish; {60 / mean:.1f} in its task, {mean:.2f} s a run); peak GPU memory {peak} MiB", flush=True)


def build(path: str) -> None:
    """The Llama checkpoint of about 113M parameters, pretrained 300 steps; prints its size."""
    from checkpoints import bpe_checkpoint

    from molab.learners.lm import load, n_params

    bpe_checkpoint(path, 300, world=[], width=768, depth=12, heads=12, vocab=1000, lr=1e-3)
    print(f"{n_params(load(path)[0]) / 1e6:.0f}M parameters")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo_base", type=Path, nargs="?")
    parser.add_argument("workdir", type=Path, nargs="?")
    parser.add_argument("--build", metavar="PATH", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--stack-runs", type=int, default=2048, help="part stack: seeds of the demo")
    parser.add_argument("--stack-size", type=int, default=512, help="part stack: runs trained together")
    parser.add_argument("--stack-workers", type=int, default=1, help="part stack: worker processes sharing the GPU")
    parser.add_argument("--stack-set", action="append", default=[], metavar="KEY=VALUE",
                        help="part stack: a config override (e.g. finetune.autocast=bfloat16)")
    parser.add_argument("--parts", default="tests,demo,stack,bf16,lora",
                        help="which of tests, demo, stack, bf16, lora to run")
    parser.add_argument("--limit-scale", type=float, default=1.0, help="every step's time limit times this")
    args = parser.parse_args()
    if args.build:
        return build(args.build)
    work, scale = args.workdir.resolve(), args.limit_scale
    work.mkdir(parents=True, exist_ok=True)
    import torch
    import transformers

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU (the CPU)"
    print(f"{gpu}; torch {torch.__version__}, transformers {transformers.__version__}", flush=True)

    parts = args.parts.split(",")
    if "tests" in parts:
        status, wall, _ = timed("tests", [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS],
                                150 * scale, work)
        print(f"tests on {gpu}: {status} in {wall:.0f} s: {(work / 'tests.log').read_text().strip().splitlines()[-1]}",
              flush=True)
    base = args.demo_base.resolve()
    if "demo" in parts:
        experiment("demo-w1", work, base, 1, [], 100 * scale)
        experiment(f"demo-w{args.workers}", work, base, args.workers, [], 100 * scale)
    if "stack" in parts:
        n, size, workers = args.stack_runs, args.stack_size, args.stack_workers
        experiment(f"demo-{n}-stack{size}-w{workers}", work, base, workers, [f"seeds={n}", *args.stack_set],
                   200 * scale, stack=size)
    if "bf16" in parts:
        experiment(f"demo-w{args.workers}-bf16", work, base, args.workers, ["model.dtype=bfloat16"], 80 * scale)
    if "lora" not in parts:
        return

    checkpoint = work / "checkpoint"
    status, wall, peak = timed("checkpoint", [sys.executable, __file__, "--build", str(checkpoint)], 60 * scale, work)
    print(f"checkpoint built and pretrained 300 steps: {status}, {wall:.0f} s, "
          f"{(work / 'checkpoint.log').read_text().strip().splitlines()[-1:]}", flush=True)
    experiment("lora-bf16", work, None, 4, [f"base={checkpoint}", "finetune.method=lora", "model.dtype=bfloat16"],
               110 * scale)


if __name__ == "__main__":
    main()
