"""The `molab` command: a thin layer over molab's functions."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from molab.analysis.policy import EquivalenceError
from molab.config import ConfigError, keys_markdown, load_config
from molab.execution import WorkerDied
from molab.store import FolderInUse
from molab.worlds import WorldError

DEMO_OUT = "runs/demo"
BAD_INPUT = (ConfigError, WorldError, EquivalenceError, FolderInUse)  # each says what is wrong in one line


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


def _run(config: str | None, out: str, overrides: list[str], workers: int) -> int:
    from molab.sweep import run_experiment

    def work():
        if not out.strip():
            raise ConfigError("--out: empty; name the output folder")
        if workers < 1:
            raise ConfigError(f"--workers: {workers}; at least 1 (1 runs everything in this process)")
        return run_experiment(load_config(config, overrides), out, workers=workers)

    return _finish(work, out)


def _report(out: str, overrides: list[str]) -> int:
    from molab.report import reanalyse

    return _finish(lambda: reanalyse(out, overrides), out)


def _print_summary(results: dict) -> None:
    from molab.report import answer_words

    for c in results.get("pressure_curve", []):
        flag = f"  (reproduced by {', '.join(c['reproduced_by'])})" if c["reproduced_by"] else ""
        ci = "" if c["ci"] is None else f" [{c['ci'][0]:.3f}, {c['ci'][1]:.3f}]"
        print(f"molab: pressure {c['pressure']:g}: {c['k']}/{c['n']} sycophantic runs{ci}{flag}")
    print(f"molab: {answer_words(results)}")
    if results["n_failed"]:
        print(f"molab: {results['n_failed']} runs failed (see the store's error column)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="molab", description="Model-organism experiments: does training "
                                     "under an oversight scheme pick the honest or the sycophantic policy?")
    sub = parser.add_subparsers(dest="command", required=True)
    workers_help = "local worker processes for the runs (1 = in this process)"

    run = sub.add_parser("run", help="run (or resume) the experiment a TOML config describes",
                         description="Run or resume an experiment. Config keys: see `molab keys`.")
    run.add_argument("config", help="experiment config (TOML); see examples/")
    run.add_argument("--out", required=True, help="output folder (store, results.json, report.html)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key, e.g. --set seeds=32 --set scheme.labeler=gold")
    run.add_argument("--workers", type=int, default=1, help=workers_help)

    demo = sub.add_parser("demo", help="run the embedded default experiment (CPU, a few minutes)")
    demo.add_argument("--out", default=DEMO_OUT, help=f"output folder (default {DEMO_OUT})")
    demo.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="override a config key of the default")
    demo.add_argument("--workers", type=int, default=1, help=workers_help)

    report = sub.add_parser("report", help="re-score DIR's stored answers and rewrite its results.json and report "
                            "(no training); --set eval.KEY=VALUE changes how")
    report.add_argument("dir", help="an experiment's output folder")
    report.add_argument("--set", dest="overrides", action="append", default=[], metavar="eval.KEY=VALUE",
                        help="re-analyse with another eval setting, e.g. --set eval.policy_threshold=0.6")

    sub.add_parser("keys", help="print every config key with its type, default and meaning")

    args = parser.parse_args(argv)
    if args.command == "run":
        return _run(args.config, args.out, args.overrides, args.workers)
    if args.command == "demo":
        return _run(None, args.out, args.overrides, args.workers)
    if args.command == "report":
        return _report(args.dir, args.overrides)
    print(keys_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
