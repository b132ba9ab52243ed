"""The `molab` command: a thin layer over molab's functions."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from molab.analysis.policy import EquivalenceError
from molab.config import ConfigError, keys_markdown, load_config
from molab.execution import Executor, ExecutorError, WorkerDied
from molab.store import FolderInUse
from molab.worlds import WorldError

DEMO_OUT = "runs/demo"
# each says what is wrong in one line
BAD_INPUT = (ConfigError, WorldError, EquivalenceError, FolderInUse, ExecutorError)


def _finish(work, out: str) -> int:
    """Do `work` (returning results), print their summary and where the report is; bad input: one line, exit 2."""
    try:
        results = work()
    except BAD_INPUT as e:
        print(f"molab: error: {e}", file=sys.stderr)
        return 2
    except WorkerDied as e:  # finished runs are stored; the same command resumes the rest
        print(f"molab: error: {e}", file=sys.stderr)
        return 1
    _print_summary(results)
    print(f"molab: report at {Path(out) / 'report.html'}")
    return 0


def _run(config: str | None, args: argparse.Namespace) -> int:
    from molab.sweep import run_experiment

    def work():
        if not args.out.strip():
            raise ConfigError("--out: empty; name the output folder")
        executor = Executor(args.executor, args.workers, args.threads, args.address, args.stack, args.gpus_per_task)
        return run_experiment(load_config(config, args.overrides), args.out, executor)

    return _finish(work, args.out)


def _report(out: str, overrides: list[str]) -> int:
    from molab.report import reanalyse

    return _finish(lambda: reanalyse(out, overrides), out)


def _print_summary(results: dict) -> None:
    from molab.report import answer_words, pushed_toward

    for c in results.get("pressure_curve", []):
        flag = f"  (reproduced by {', '.join(c['reproduced_by'])})" if c["reproduced_by"] else ""
        ci = (f" [{c['ci'][0]:.3f}, {c['ci'][1]:.3f}]" if c["ci"] else
              " (one run, the same for every seed: no interval)" if c["n"] else "")
        print(f"molab: pressure {c['pressure']:g}: {c['k']}/{c['n']} {pushed_toward(results)} runs{ci}{flag}")
    print(f"molab: {answer_words(results)}")
    if results["n_failed"]:
        print(f"molab: {results['n_failed']} runs failed (see the store's error column)")


def _executor_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, default=1, help="local worker processes for the runs (1 = in this "
                        "process; on a machine with several GPUs the workers take them in turn)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for pretraining and for each run "
                        "(default: torch's own with one worker, the cores shared among several, 1 per Ray task)")
    parser.add_argument("--stack", type=int, default=1, help="LM runs trained together in one process, their weights "
                        "stacked into one batched model (runs whose phases are all supervised finetuning; 1 = each "
                        "alone): many small runs at once on a GPU")
    parser.add_argument("--executor", default="local", help="where the runs go: local (this process or --workers "
                        "processes) or ray (a Ray cluster; molab starts a local one without --address)")
    parser.add_argument("--gpus-per-task", type=float, default=None, metavar="G", help="with --executor ray: GPUs each "
                        "task asks Ray for (default: 1 on a cluster with GPUs, else 0; 0.125 lets 8 tasks share a GPU; "
                        "with --stack, one task a GPU)")
    parser.add_argument("--address", default=None, help="with --executor ray: HOST:PORT of a running Ray cluster's "
                        "head; its nodes must see the output folder (a shared filesystem) and have molab installed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="molab", description="Model-organism experiments: does training "
                                     "under an oversight scheme pick the honest or the sycophantic policy?")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run (or resume) the experiment a TOML config describes",
                         description="Run or resume an experiment. Config keys: see `molab keys`.")
    run.add_argument("config", help="experiment config (TOML); see examples/")
    run.add_argument("--out", required=True, help="output folder (store, results.json, report.html)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key, e.g. --set seeds=32 --set scheme.labeler=gold")
    _executor_arguments(run)

    demo = sub.add_parser("demo", help="run the embedded default experiment (CPU, a few minutes)",
                          description="Run or resume the embedded default experiment (the oversight organism on "
                          "graded arithmetic). Config keys: see `molab keys`.")
    demo.add_argument("--out", default=DEMO_OUT, help=f"output folder (default {DEMO_OUT})")
    demo.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="override a config key of the default")
    _executor_arguments(demo)

    report = sub.add_parser("report", help="re-score DIR's stored answers and rewrite its results.json and report "
                            "(no training); --set eval.KEY=VALUE changes how")
    report.add_argument("dir", help="an experiment's output folder")
    report.add_argument("--set", dest="overrides", action="append", default=[], metavar="eval.KEY=VALUE",
                        help="re-analyse with another eval setting, e.g. --set eval.policy_threshold=0.6")

    sub.add_parser("keys", help="print every config key with its type, default and meaning")

    args = parser.parse_args(argv)
    if args.command == "run":
        return _run(args.config, args)
    if args.command == "demo":
        return _run(None, args)
    if args.command == "report":
        return _report(args.dir, args.overrides)
    print(keys_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
