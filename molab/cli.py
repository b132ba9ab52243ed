"""The `molab` command: a thin layer over molab's functions."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from molab.config import ConfigError, keys_markdown, load_config
from molab.worlds import WorldFileError

DEMO_OUT = "runs/demo"


def _run(config: str | None, out: str, overrides: list[str], workers: int) -> int:
    from molab.experiments.oversight import run_experiment

    try:
        cfg = load_config(config, overrides)
        results = run_experiment(cfg, out, workers=workers)
    except (ConfigError, WorldFileError) as e:
        print(f"molab: error: {e}", file=sys.stderr)
        return 2
    def p(summary):
        p = summary["p_sycophantic"]
        return "no finished runs" if p["estimate"] is None else f"{p['estimate']:.3f} [{p['ci'][0]:.3f}, {p['ci'][1]:.3f}]"

    if "pressure_curve" in results:
        from molab.report import prior_odds_words

        for c in results["pressure_curve"]:
            flag = "  (reproduced by the bigram table)" if c["bigram_reproduces"] else ""
            ci = "" if c["ci"] is None else f" [{c['ci'][0]:.3f}, {c['ci'][1]:.3f}]"
            print(f"molab: pressure {c['pressure']:g}: {c['k']}/{c['n']} sycophantic runs{ci}{flag}")
        print(f"molab: {prior_odds_words(results)}")
        print(f"molab: {results['n_runs']} runs ({results['n_failed']} failed); capable base: {results['capable']}")
    else:
        print(f"molab: {results['n_runs']} runs ({results['n_failed']} failed); policies {results['policy_counts']}; "
              f"P(sycophantic) = {p(results)} (bigram control: {p(results['bigram_control'])}); "
              f"capable base: {results['capable']}")
    print(f"molab: report at {Path(out) / 'report.html'}")
    return 0


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

    report = sub.add_parser("report", help="rewrite DIR/report.html from DIR's results")
    report.add_argument("dir", help="an experiment's output folder")

    sub.add_parser("keys", help="print every config key with its type, default and meaning")

    args = parser.parse_args(argv)
    if args.command == "run":
        return _run(args.config, args.out, args.overrides, args.workers)
    if args.command == "demo":
        return _run(None, args.out, args.overrides, args.workers)
    if args.command == "report":
        from molab.report import write_report

        if not (Path(args.dir) / "results.json").is_file():
            print(f"molab: error: {Path(args.dir) / 'results.json'}: no results here", file=sys.stderr)
            return 2
        print(f"molab: report at {write_report(args.dir)}")
        return 0
    print(keys_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
