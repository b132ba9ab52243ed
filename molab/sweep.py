"""Run (or resume) an experiment: its plan of runs handed to an executor, the answers into the store, the
analysis into results.json and the report.

`run_experiment` composes the stages: `prepare` (world, overseer, data; once per base) -> `capable_base` ->
`capability` (persona tags) and the ceiling runs -> the experiment's plan (asked again after each batch of runs, so a
plan may depend on earlier runs) and, in sweeps, adaptive rounds -> `summarize` -> `write_report`. Runs already in the
store are skipped, so running the same command again resumes it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from tqdm.auto import tqdm

from molab.analysis.prior_odds import next_pressures
from molab.analysis.summary import ceilings, summarize, summary_runs
from molab.bases import capability, capability_curve, capable_base
from molab.config import ExperimentConfig
from molab.execution import Executor, run_all, torch_threads
from molab.experiments import RunSpec
from molab.runs import Setup, deterministic, execute, prepare, run_id, tags_to_draw
from molab.store import Store, check_folder, holding, load_outputs, load_results, write_atomic


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


def _run_specs(setups: list[Setup], paths: list[Path], store: Store, specs: list[RunSpec], executor: Executor,
               progress: bool, keep: Path | None, learners: tuple[str, ...] | None = None) -> None:
    """Run every spec of `specs` for each learner (default: the LM and the config's controls) not yet in the store:
    one task per base, seed and learner (with `--stack`, `_stacked` joins a base's LM tasks of several seeds). The
    LM runs on every base; a control sees the base's tokenizer, not its weights, so it runs on the first base only.
    A run that cannot differ by seed (`deterministic`) runs at seed 0 only."""
    done = store.finished_ids()
    learners = learners or ("lm", *dict.fromkeys(setups[0].cfg.controls))
    wanted: dict[tuple, list[RunSpec]] = {}  # (base index, seed, learner) -> specs
    for i, setup in enumerate(setups):
        drawn = tags_to_draw(setup, paths[i]) if "lm" in learners else 0
        for learner in [name for name in learners if name == "lm" or i == 0]:
            for spec in specs:
                if spec.seed == 0 or not deterministic(setup, learner, spec, drawn_tags=drawn):
                    wanted.setdefault((i, spec.seed, learner), []).append(spec)
    tasks = []
    for (i, _, learner), seed_specs in sorted(wanted.items()):
        todo = [s for s in seed_specs if run_id(setups[i], learner, s) not in done]
        if todo:
            tasks.append((setups[i], paths[i], learner, todo, keep, False))
    tasks = _stacked(tasks, executor.stack, executor.workers)
    total, n_todo = sum(map(len, wanted.values())), sum(len(t[3]) for t in tasks)
    what = "ceiling runs" if specs and specs[0].ceiling else "runs"
    with tqdm(total=n_todo, desc=f"{what} ({total - n_todo} of {total} already done)", unit="run",
              disable=not progress) as bar:
        for records in run_all(execute, tasks, executor, on_gpu=lambda task: task[2] == "lm"):  # controls: no torch
            for record in records:
                store.record(**record)
                if record["status"] == "failed":
                    where = "" if record["pressure"] is None else f" pressure {record['pressure']}"
                    tqdm.write(f"molab: run {record['learner']} seed {record['seed']}{where} failed: "
                               f"{record['error']}")
            bar.update(len(records))


def _stacked(tasks: list[tuple], size: int, workers: int = 1) -> list[tuple]:
    """With `size` > 1, each base's LM tasks merged and split again into tasks of at most `size` runs, of sizes as
    equal as can be, each trained together (`run_stacked`): as few as there can be, but no fewer than `workers`
    while there are runs for them; the controls' tasks as they are."""
    if size <= 1:
        return tasks
    by_base: dict[Path, tuple] = {}
    for setup, path, learner, specs, keep, _ in tasks:
        if learner == "lm":
            by_base.setdefault(path, (setup, keep, []))[2].extend(specs)
    merged = [t for t in tasks if t[2] != "lm"]
    for path, (setup, keep, specs) in by_base.items():
        n = min(len(specs), max(-(-len(specs) // size), workers))
        merged += [(setup, path, "lm", specs[j * len(specs) // n:(j + 1) * len(specs) // n], keep, True)
                   for j in range(n)]
    return merged


def _finished(setups: list[Setup], out: Path, plan: list[RunSpec]):
    """The finished runs of `plan` on every base, scored under the config's eval settings, with a column
    `outputs.NAME` of each run's answers to each of the experiment's `answered` sets."""
    runs = summary_runs(load_results(out, setups[0].cfg.eval), [s.experiment_id for s in setups], _pairs(plan))
    runs = runs[runs["status"] == "done"]
    for name in setups[0].experiment.answered:
        runs = runs.assign(**{f"outputs.{name}": runs["run_id"].map(load_outputs(out, name))})
    return runs


def _adaptive_runs(setups: list[Setup], out: Path, plan: list[RunSpec], base: Path) -> list[RunSpec]:
    """`sweep.adaptive_runs` new runs (on each base) where the LM runs of `plan` so far, pooled over bases, tell
    least (`next_pressures`), pressures rounded to 6 decimals and then to what the experiment can use
    (`pressure_used`), each with the next seed unused at its pressure; none where a run cannot differ by seed
    (`deterministic`, on the first base, `base`: it would repeat seed 0's). The same stored runs always give the
    same runs, so a resumed sweep retraces its rounds."""
    runs = _finished(setups, out, plan)
    runs = runs[runs["learner"] == "lm"]
    cfg = setups[0].cfg
    pressure = setups[0].experiment.pressure
    proposed = next_pressures(runs["pressure"], runs["policy"] == pressure.toward, cfg.sweep.adaptive_runs,
                              high=pressure.high)
    next_seed: dict[float, int] = {}
    for spec in plan:
        next_seed[spec.pressure] = max(next_seed.get(spec.pressure, 0), spec.seed + 1)
    added = []
    experiment = setups[0].experiment
    drawn = tags_to_draw(setups[0], base)
    for pressure in sorted(experiment.pressure_used(cfg, round(x, 6)) for x in proposed):
        if deterministic(setups[0], "lm", RunSpec(0, pressure), drawn_tags=drawn):
            continue
        seed = next_seed.get(pressure, 0)
        next_seed[pressure] = seed + 1
        added.append(RunSpec(seed, pressure))
    return added


def base_configs(cfg: ExperimentConfig) -> list[ExperimentConfig]:
    """One config per base: `bases` of them, differing only in model.seed (model.seed, model.seed + 1, ...)."""
    return [dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, seed=cfg.model.seed + i))
            for i in range(cfg.bases)]


def base_path(out: Path, index: int) -> Path:
    """Where the `index`-th base is pretrained: out/base, out/base-1, out/base-2, ..."""
    return out / ("base" if index == 0 else f"base-{index}")


def _capable_bases(setups: list[Setup], out: Path, store: Store, executor: Executor,
                   progress: bool) -> tuple[list[Path], list[dict]]:
    """Pretrain (or reuse) every base, check it with its persona tags, and run its ceilings (the LM's, and on the
    first base the controls', which show whether a control can fire in this world); the bases' paths, and each
    base's identity and persona-tag capability, for `summarize`. Warns about every base whose ceilings or persona
    checks fall short of eval.capability_threshold."""
    cfg, paths, bases = setups[0].cfg, [], []
    for i, setup in enumerate(setups):
        with torch_threads(executor.threads):  # pretraining, in this process
            path = capable_base(setup, base_path(out, i), progress)
        paths.append(path)
        bases.append({"model_seed": setup.cfg.model.seed, "experiment_id": setup.experiment_id,
                      "ceiling_ids": {p: setup.ceiling_id(p) for p in ("honest", "sycophantic")},
                      "capability": capability(setup, path), "capability_curve": capability_curve(path)})
    if torch.cuda.is_available():  # pretraining's cached blocks, which would keep memory from a worker on this GPU
        torch.cuda.empty_cache()
    specs = [RunSpec(seed, ceiling=p) for p in ("honest", "sycophantic") for seed in range(cfg.ceiling.seeds)]
    _run_specs(setups, paths, store, specs, executor, progress, None)  # the controls' too: can they fire here?
    scored = load_results(out, cfg.eval)
    threshold = cfg.eval.capability_threshold
    for b in bases:
        ceiling = ceilings(scored, b["ceiling_ids"], cfg.ceiling.seeds, cfg.eval.confidence)
        ceiling = {p: c["mean"] or 0.0 for p, c in ceiling.items()}
        weak = {f"{how} {p} {v:.3f}" for how, got in (("ceiling", ceiling), ("persona", b["capability"]))
                for p, v in got.items() if v < threshold}
        if weak:
            print(f"molab: WARNING base seed {b['model_seed']} falls short of eval.capability_threshold {threshold} on "
                  f"hard problems ({', '.join(sorted(weak))}); the inductive-bias result is not meaningful")
    return paths, bases


def run_experiment(cfg: ExperimentConfig, out: str | Path, executor: Executor = Executor(),
                   progress: bool = True) -> dict:
    """Run (or resume) the whole experiment under `out`, its runs on `executor`; returns what results.json holds."""
    setups = [prepare(c) for c in base_configs(cfg)]  # fails on bad input before anything is written
    setup = setups[0]
    setup.score(setup.diagnostic[0], setup.diagnostic[0].honest)  # so does an answer equivalence that raises
    check_folder(out)
    # a second molab process on this folder refuses rather than interleaving
    with executor.started() as executor, holding(out):
        return _run_held(setups, Path(out), executor, progress)


def _run_held(setups: list[Setup], out: Path, executor: Executor, progress: bool) -> dict:
    """`run_experiment` once the output folder is held."""
    from molab.report import write_report

    setup, cfg = setups[0], setups[0].cfg
    write_data(setup, out)
    store = Store(out)
    store.add_problems(setup.problem_set, setup.diagnostic)
    paths, bases = _capable_bases(setups, out, store, executor, progress)
    keep = out / "weights" if cfg.keep == "final" else None
    experiment, plan = setup.experiment, []
    while new := [s for s in dict.fromkeys(experiment.plan(cfg, _finished(setups, out, plan))) if s not in plan]:
        _run_specs(setups, paths, store, new, executor, progress, keep)
        plan += new
    for round_ in range(cfg.sweep.adaptive_rounds if experiment.pressure is not None else 0):
        added = _adaptive_runs(setups, out, plan, paths[0])
        counts = {s.pressure: sum(a.pressure == s.pressure for a in added) for s in added}
        print(f"molab: adaptive round {round_ + 1}: " + (", ".join(f"{n} at {p:g}" for p, n in counts.items()) or
                                                         "no new run (only where runs cannot differ by seed)"))
        _run_specs(setups, paths, store, added, executor, progress, keep)
        plan += added
    results = summarize(out, cfg, bases, _pairs(plan))
    write_atomic(out / "results.json", json.dumps(results, indent=1))
    write_report(out, results)
    return results
