"""Run (or resume) an experiment: its plan of runs handed to an executor, the answers into the store, the
analysis into results.json and the report.

`run_experiment` composes the stages: `prepare` (world, overseer, data) -> `capable_base` -> `capability`
-> the experiment's plan (asked again after each batch of runs, so a plan may depend on earlier runs) and,
in sweeps, adaptive rounds -> `summarize` -> `write_report`. Runs already in the store are skipped, so
running the same command again resumes it.
"""

from __future__ import annotations

import json
from pathlib import Path

from tqdm.auto import tqdm

from molab.analysis.prior_odds import next_pressures
from molab.analysis.summary import summarize, summary_runs
from molab.bases import capability, capable_base
from molab.config import ExperimentConfig
from molab.execution import run_all
from molab.experiments import RunSpec
from molab.runs import Setup, execute, prepare, run_id
from molab.store import Store, load_results, write_atomic


def write_data(setup: Setup, out: Path) -> None:
    """The run's problem sets as JSONL in out/data/: train (with the scheme's labels), diagnostic, and the
    experiment's extra sets."""
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    write_atomic(data / "train.jsonl", "".join(json.dumps(p.to_json() | {"label": label}) + "\n"
                                               for p, label in setup.train))
    for name, problems in {"diagnostic": setup.diagnostic, **setup.datasets}.items():
        write_atomic(data / f"{name}.jsonl", "".join(json.dumps(p.to_json()) + "\n" for p in problems))


def _pairs(plan: list[RunSpec]) -> list[tuple]:
    return [(spec.pressure, spec.seed) for spec in plan]


def _run_specs(setup: Setup, base: Path, store: Store, specs: list[RunSpec], workers: int, progress: bool,
               keep: Path | None) -> None:
    """Run every spec of `specs`, for each learner, not yet in the store: one task per seed and learner."""
    done = store.finished_ids()
    by_seed: dict[int, list[RunSpec]] = {}
    for spec in specs:
        by_seed.setdefault(spec.seed, []).append(spec)
    tasks = []
    for seed, seed_specs in sorted(by_seed.items()):
        for learner in setup.experiment.learners:
            todo = [s for s in seed_specs if run_id(setup, learner, s) not in done]
            if todo:
                tasks.append((setup, base, learner, todo, keep))
    total, n_todo = len(specs) * len(setup.experiment.learners), sum(len(t[3]) for t in tasks)
    bar = tqdm(total=n_todo, desc=f"runs ({total - n_todo} of {total} already done)", unit="run",
               disable=not progress)
    for records in run_all(execute, tasks, workers):
        for record in records:
            store.record(**record)
            if record["status"] == "failed":
                where = "" if record["pressure"] is None else f" pressure {record['pressure']}"
                tqdm.write(f"molab: run {record['learner']} seed {record['seed']}{where} failed: {record['error']}")
        bar.update(len(records))
    bar.close()


def _finished(setup: Setup, out: Path, plan: list[RunSpec]):
    """The finished runs of `plan`, scored under the config's eval settings."""
    runs = summary_runs(load_results(out, setup.cfg.eval), setup.experiment_id, _pairs(plan))
    return runs[runs["status"] == "done"]


def _adaptive_runs(setup: Setup, out: Path, plan: list[RunSpec]) -> list[RunSpec]:
    """`sweep.adaptive_runs` new runs where the LM runs of `plan` so far tell least (`next_pressures`), pressures
    rounded to 3 decimals, each with the next seed unused at its pressure. The same stored runs always give the
    same runs, so a resumed sweep retraces its rounds."""
    runs = _finished(setup, out, plan)
    runs = runs[runs["learner"] == "lm"]
    proposed = next_pressures(runs["pressure"], runs["policy"] == "sycophantic", setup.cfg.sweep.adaptive_runs,
                              high=setup.experiment.pressure.high)
    next_seed: dict[float, int] = {}
    for spec in plan:
        next_seed[spec.pressure] = max(next_seed.get(spec.pressure, 0), spec.seed + 1)
    added = []
    for pressure in sorted(round(x, 3) for x in proposed):
        seed = next_seed.get(pressure, 0)
        next_seed[pressure] = seed + 1
        added.append(RunSpec(seed, pressure))
    return added


def run_experiment(cfg: ExperimentConfig, out: str | Path, workers: int = 1, progress: bool = True) -> dict:
    """Run (or resume) the whole experiment under `out`; returns what results.json holds."""
    from molab.report import write_report

    setup = prepare(cfg)  # fails on bad input before anything is written
    setup.score(setup.diagnostic[0], setup.diagnostic[0].honest)  # so does an answer equivalence that raises
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_data(setup, out)
    base = capable_base(setup, out, progress)
    cap = capability(setup, base)
    if min(cap.values()) < cfg.eval.capability_threshold:
        print(f"molab: WARNING the base is not capable of both policies (accuracy on hard problems: "
              f"honest {cap['honest']:.2f}, sycophantic {cap['sycophantic']:.2f}; threshold "
              f"{cfg.eval.capability_threshold}); the inductive-bias result is not meaningful")
    store = Store(out)
    store.add_problems(setup.problem_set, setup.diagnostic)
    keep = out / "weights" if cfg.keep == "final" else None
    experiment, plan = setup.experiment, []
    while new := [s for s in dict.fromkeys(experiment.plan(cfg, _finished(setup, out, plan))) if s not in plan]:
        _run_specs(setup, base, store, new, workers, progress, keep)
        plan += new
    for round_ in range(cfg.sweep.adaptive_rounds if experiment.pressure is not None else 0):
        added = _adaptive_runs(setup, out, plan)
        counts = {s.pressure: sum(a.pressure == s.pressure for a in added) for s in added}
        print(f"molab: adaptive round {round_ + 1}: " + ", ".join(f"{n} at {p:g}" for p, n in counts.items()))
        _run_specs(setup, base, store, added, workers, progress, keep)
        plan += added
    results = summarize(out, setup.experiment_id, cfg, experiment.pressure, cap, _pairs(plan))
    write_atomic(out / "results.json", json.dumps(results, indent=1))
    write_report(out, results)
    return results

