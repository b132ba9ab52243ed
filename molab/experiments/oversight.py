"""The oversight experiment: finetune a capable base on the data an oversight scheme picks,
with a neutral prompt, and see which policy each run generalises to on hard problems. The sweep
experiments (incentive, spoonfeeding) are the same runs under a pressure (see `pressure.py`).

Every stage is a function: `prepare` (world, overseer, training and diagnostic data),
`capable_base` (pretrain or load, cached), `capability` (the check), `run_lm` / `run_bigram`
(one run), and `run_experiment`, which composes them and writes the store, results and report.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import random
import shutil
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers.utils import logging as hf_logging

from molab import __version__
from molab.analysis.policy import classify, rates
from molab.analysis.prior_odds import next_pressures
from molab.analysis.summary import summarize, summary_runs
from molab.config import ExperimentConfig, config_hash, to_dict
from molab.execution import run_all
from molab.experiments.pressure import cue, finetuning_examples, incentive_counts, incentive_phase
from molab.learners.bigram import BigramTable
from molab.learners.lm import add_tag, build_model, encode, generate_answers, load, load_tokenizer, n_params
from molab.learners.tokenizer import char_tokenizer
from molab.store import Store, load_results
from molab.training.loop import TrainingDiverged, train
from molab.training.objectives import sft
from molab.worlds import Overseer, Problem, make_world
from molab.worlds.scheme import draw, training_data

LEARNERS = ("lm", "bigram")


@dataclass(frozen=True)
class Setup:
    """Everything a run needs besides its seed: config, data, and where the base lives."""

    cfg: ExperimentConfig
    train: list[tuple[Problem, str]]  # (problem, label the scheme gave it)
    diagnostic: list[Problem]
    alphabet: str
    world_file: str  # sha256 of a JSONL world's file ("" for generated worlds), so edits are not missed
    incentive: list[Problem]  # the incentive experiment's prompts (empty in the others)
    spoonfed: list[Problem]  # hard problems to demonstrate sycophantically, as many as n_train (spoonfeeding)

    @cached_property  # hashes the whole config (and stats a local base's files): once per Setup
    def experiment_id(self) -> str:
        """Everything a run's result depends on but its seed, pressure and learner (the base included);
        the sections of the other experiments are left out, so changing them retrains nothing."""
        unused = {"seeds", "sweep", "incentive", "spoonfeeding"} - {self.cfg.experiment}
        return config_hash({k: v for k, v in to_dict(self.cfg).items() if k not in unused},
                           self.world_file, self.base_key)

    @cached_property
    def base_key(self) -> str:
        """What the base depends on: its config, or a local checkpoint's files (names, sizes, times)."""
        cfg = self.cfg
        if cfg.base:
            files = sorted(Path(cfg.base).glob("*"))
            return config_hash(cfg.base, [(f.name, f.stat().st_size, f.stat().st_mtime) for f in files])
        return config_hash(cfg.world, cfg.overseer, cfg.model, self.world_file, __version__)


def prepare(cfg: ExperimentConfig) -> Setup:
    """Build the world and overseer and pick the training data (pure; writes nothing)."""
    world = make_world(cfg)
    overseer = Overseer(cfg.overseer.competence)
    world_file = hashlib.sha256(Path(cfg.world.path).read_bytes()).hexdigest() if cfg.world.kind == "jsonl" else ""
    seed, incentive, spoonfed = cfg.world.seed, [], []
    if cfg.experiment == "incentive":
        wanted = cfg.incentive.difficulties
        incentive = draw(world, cfg.incentive.n_prompts, lambda p: p.difficulty in wanted if wanted else p.disagree,
                         f"incentive-{seed}", "incentive")
    if cfg.experiment == "spoonfeeding":
        wanted = cfg.spoonfeeding.difficulties
        spoonfed = draw(world, cfg.scheme.n_train, lambda p: p.disagree and (wanted is None or p.difficulty in wanted),
                        f"spoonfeeding-{seed}", "spoonfeeding", cfg.scheme.digits, cfg.scheme.operations)
    return Setup(cfg, training_data(world, overseer, cfg.scheme, seed), world.diagnostic(), world.alphabet(),
                 world_file, incentive, spoonfed)


def _max_len(tokenizer, problems: list[Problem]) -> int:
    """Longest tagged sequence: special tokens + tag + prompt + longest answer + eos."""
    longest = max(len(tokenizer(p.prompt + max(p.honest, p.sycophantic, key=len)).input_ids) for p in problems)
    return longest + 2


def _answer_len(tokenizer, problems: list[Problem]) -> int:
    return max(len(tokenizer(a, add_special_tokens=False).input_ids) for p in problems
               for a in (p.honest, p.sycophantic)) + 1


# ---------------------------------------------------------------- the capable base

def capable_base(setup: Setup, out: Path, progress: bool = True) -> Path:
    """The path of the capable base: `cfg.base` if given, else a small LM pretrained on a corpus
    in which a persona tag selects the policy, saved in `out/base/` and reused while its config
    hash matches."""
    cfg = setup.cfg
    if cfg.base:
        return Path(cfg.base)
    path, key = out / "base", setup.base_key
    marker = path / "molab_base.json"
    if marker.is_file() and json.loads(marker.read_text()).get("key") == key:
        return path
    world, m = make_world(cfg), cfg.model
    tokenizer = char_tokenizer(setup.alphabet, (m.honest_tag, m.sycophantic_tag))
    max_len = _max_len(tokenizer, setup.diagnostic + [p for p, _ in setup.train])
    torch.manual_seed(0)
    model = build_model(m, tokenizer, max_len)
    rng = random.Random("pretrain")
    stream = world.stream(rng)

    def batches():  # each problem shown with a random persona and that persona's answer
        while True:
            examples = []
            for _ in range(m.batch_size):
                p = next(stream)
                honest = rng.random() >= m.sycophantic_share
                examples.append(((m.honest_tag if honest else m.sycophantic_tag) + p.prompt,
                                 p.honest if honest else p.sycophantic))
            yield encode(tokenizer, examples, max_len)

    start = time.time()
    losses = train(model, batches(), sft, steps=m.pretrain_steps, lr=m.lr, weight_decay=0.01,
                   desc=f"pretraining base ({n_params(model) / 1e6:.2f}M params)", progress=progress,
                   compile=m.compile)
    seconds = time.time() - start
    tmp = out / "base.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    hf_logging.disable_progress_bar()
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "molab_base.json").write_text(json.dumps(
        {"key": key, "params": n_params(model), "steps": m.pretrain_steps, "seconds": round(seconds, 1),
         "tokens": m.pretrain_steps * m.batch_size * max_len, "loss_first": losses[0], "loss_last": losses[-1]},
        indent=1))
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)
    return path


def capability(setup: Setup, base: Path) -> dict[str, float]:
    """Accuracy of each policy on the hard diagnostic problems when asked for it by its persona tag."""
    model, tokenizer = load(base)
    hard = [p for p in setup.diagnostic if p.disagree]
    n_new = _answer_len(tokenizer, hard)
    out = {}
    for policy, tag in (("honest", setup.cfg.model.honest_tag), ("sycophantic", setup.cfg.model.sycophantic_tag)):
        answers = generate_answers(model, tokenizer, [tag + p.prompt for p in hard], n_new)
        out[policy] = sum(a == getattr(p, policy) for p, a in zip(hard, answers)) / len(hard)
    return out


# ---------------------------------------------------------------- one run

def _epochs(examples: list, rng: random.Random, batch_size: int):
    """Batches of `examples` in a fresh seeded order each epoch."""
    while True:
        order = list(examples)
        rng.shuffle(order)
        for i in range(0, max(1, len(order) - batch_size + 1), batch_size):
            yield order[i:i + batch_size]


def _tokenizer_and_lengths(setup: Setup, tokenizer, model=None) -> tuple[int, int]:
    """Add the cue tag when the run needs one; the padded training length and the answer budget."""
    tag = cue(setup)
    if tag:
        add_tag(model, tokenizer, tag)
    problems = setup.diagnostic + [p for p, _ in setup.train] + setup.spoonfed + setup.incentive
    return _max_len(tokenizer, problems) + bool(tag), _answer_len(tokenizer, setup.diagnostic + setup.incentive)


def _finetune(setup: Setup, base: Path, seed: int, pressure: float | None):
    """The base finetuned on one run's examples with a neutral prompt: (model, tokenizer, answer budget, losses)."""
    f = setup.cfg.finetune
    torch.manual_seed(seed)  # dropout, and a cue tag's fresh embedding
    model, tokenizer = load(base, dropout=f.dropout)
    max_len, n_new = _tokenizer_and_lengths(setup, tokenizer, model)
    examples = finetuning_examples(setup, pressure)
    batches = (encode(tokenizer, b, max_len) for b in _epochs(examples, random.Random(seed), f.batch_size))
    losses = train(model, batches, sft, steps=f.steps, lr=f.lr, desc=f"run seed {seed}", progress=False)
    return model, tokenizer, n_new, {"loss_first": losses[0], "loss_last": sum(losses[-10:]) / len(losses[-10:])}


def run_lm(setup: Setup, base: Path, seed: int, pressures: list) -> dict:
    """One seed's runs, one per pressure: {pressure: metrics on the diagnostic set, or why it failed}.
    The incentive experiment's finetuning does not depend on λ, so it is done once and each pressure's
    incentive phase starts from a copy."""
    shared = setup.cfg.experiment == "incentive"
    try:
        finetuned = _finetune(setup, base, seed, None) if shared else None
    except TrainingDiverged as e:
        return dict.fromkeys(pressures, str(e))
    out = {}
    for pressure in pressures:
        try:
            model, tokenizer, n_new, metrics = copy.deepcopy(finetuned) if shared else _finetune(
                setup, base, seed, pressure)
            if shared:
                torch.manual_seed(seed)  # the incentive phase's samples
                losses = incentive_phase(model, tokenizer, setup, seed, pressure, n_new)
                metrics |= {"incentive_loss_first": losses[0], "incentive_loss_last": losses[-1]}
        except TrainingDiverged as e:
            out[pressure] = str(e)
            continue
        answers = generate_answers(model, tokenizer, [p.prompt for p in setup.diagnostic], n_new)
        out[pressure] = _metrics(setup, answers) | metrics
    return out


def run_bigram(setup: Setup, base: Path, seed: int, pressures: list) -> dict:
    """The bigram-table control on the same finetuning tokens (and pressure), evaluated the same way."""
    tokenizer = load_tokenizer(base)
    _, n_new = _tokenizer_and_lengths(setup, tokenizer)
    prompts = tokenizer([p.prompt for p in setup.diagnostic]).input_ids
    out = {}
    for pressure in pressures:
        examples = finetuning_examples(setup, pressure)
        random.Random(seed).shuffle(examples)  # order cannot matter to counts; kept for symmetry with run_lm
        ids = encode(tokenizer, examples)
        seqs = [row[m.bool()].tolist() for row, m in zip(ids["input_ids"], ids["attention_mask"])]
        table = BigramTable().fit(seqs)
        if setup.cfg.experiment == "incentive":
            incentive_counts(table, tokenizer, setup, seed, pressure, n_new)
        answers = [tokenizer.decode(table.generate(p, n_new, tokenizer.eos_token_id), skip_special_tokens=True)
                   for p in prompts]
        out[pressure] = _metrics(setup, answers)
    return out


def _metrics(setup: Setup, answers: list[str]) -> dict:
    r = rates(setup.diagnostic, answers)
    return {"policy": classify(r["hard"], setup.cfg.eval.policy_threshold), "rates": r,
            "examples": [{"prompt": p.prompt, "answer": a} for p, a in list(zip(setup.diagnostic, answers))[-3:]]}


RUNNERS = {"lm": run_lm, "bigram": run_bigram}


def execute(task: tuple[Setup, Path, str, int, list]) -> list[dict]:
    """One learner's runs of one seed (one per pressure) as records for the store; a diverging loss
    is a failed run, not a crash. Each record's `seconds` is an equal share of the task's time."""
    setup, base, learner, seed, pressures = task
    start = time.time()
    results = RUNNERS[learner](setup, base, seed, pressures)
    seconds = (time.time() - start) / len(pressures)
    return [{"run_id": run_id(setup, learner, seed, pressure), "experiment_id": setup.experiment_id,
             "learner": learner, "seed": seed, "pressure": pressure,
             "config": to_dict(setup.cfg) | {"seed": seed, "pressure": pressure, "learner": learner,
                                             "base_key": setup.base_key},
             "status": "failed" if isinstance(got, str) else "done", "metrics": None if isinstance(got, str) else got,
             "error": got if isinstance(got, str) else None, "seconds": seconds}
            for pressure, got in results.items()]


def run_id(setup: Setup, learner: str, seed: int, pressure: float | None = None) -> str:
    return config_hash(setup.experiment_id, learner, seed, *([] if pressure is None else [pressure]))


# ---------------------------------------------------------------- the experiment

def write_data(setup: Setup, out: Path) -> None:
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    with (data / "train.jsonl").open("w") as f:
        for p, label in setup.train:
            f.write(json.dumps(p.to_json() | {"label": label}) + "\n")
    for name, problems in (("diagnostic", setup.diagnostic), ("incentive", setup.incentive),
                           ("spoonfed", setup.spoonfed)):
        if problems:
            with (data / f"{name}.jsonl").open("w") as f:
                for p in problems:
                    f.write(json.dumps(p.to_json()) + "\n")


def _run_tasks(setup: Setup, base: Path, store: Store, plan: list[tuple], workers: int, progress: bool) -> None:
    """Run every (pressure, seed) of `plan`, for each learner, not yet in the store: one task per seed and learner."""
    done = store.finished_ids()
    by_seed: dict[int, list] = {}
    for pressure, seed in plan:
        by_seed.setdefault(seed, []).append(pressure)
    tasks = []
    for seed, pressures in sorted(by_seed.items()):
        for learner in LEARNERS:
            todo = [x for x in pressures if run_id(setup, learner, seed, x) not in done]
            if todo:
                tasks.append((setup, base, learner, seed, todo))
    total, n_todo = len(plan) * len(LEARNERS), sum(len(t[-1]) for t in tasks)
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


def _adaptive_runs(setup: Setup, out: Path, plan: list[tuple]) -> list[tuple]:
    """`sweep.adaptive_runs` new (pressure, seed) runs where the LM runs of `plan` so far tell least
    (`next_pressures`), pressures rounded to 3 decimals, each with the next seed unused at its pressure.
    The same stored runs always give the same runs, so a resumed sweep retraces its rounds."""
    runs = summary_runs(load_results(out), setup.experiment_id, setup.cfg.seeds, plan)
    runs = runs[(runs["learner"] == "lm") & (runs["status"] == "done")]
    high = 1.0 if setup.cfg.experiment == "spoonfeeding" else None
    proposed = next_pressures(runs["pressure"], runs["policy"] == "sycophantic", setup.cfg.sweep.adaptive_runs,
                              high=high)
    next_seed: dict[float, int] = {}
    for pressure, seed in plan:
        next_seed[pressure] = max(next_seed.get(pressure, 0), seed + 1)
    added = []
    for pressure in sorted(round(x, 3) for x in proposed):
        seed = next_seed.get(pressure, 0)
        next_seed[pressure] = seed + 1
        added.append((pressure, seed))
    return added


def run_experiment(cfg: ExperimentConfig, out: str | Path, workers: int = 1, progress: bool = True) -> dict:
    """Run (or resume) the whole experiment under `out`; returns what results.json holds."""
    from molab.report import write_report

    setup = prepare(cfg)  # fails on bad input before anything is written
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_data(setup, out)
    base = capable_base(setup, out, progress)
    cap = capability(setup, base)
    capable = min(cap.values()) >= cfg.eval.capability_threshold
    if not capable:
        print(f"molab: WARNING the base is not capable of both policies (accuracy on hard problems: "
              f"honest {cap['honest']:.2f}, sycophantic {cap['sycophantic']:.2f}; threshold "
              f"{cfg.eval.capability_threshold}); the inductive-bias result is not meaningful")
    store = Store(out)
    plan = [(pressure, seed) for pressure in cfg.pressures() for seed in range(cfg.seeds)]
    _run_tasks(setup, base, store, plan, workers, progress)
    for round_ in range(cfg.sweep.adaptive_rounds if cfg.experiment != "oversight" else 0):
        added = _adaptive_runs(setup, out, plan)
        counts = {p: sum(q == p for q, _ in added) for p, _ in added}
        print(f"molab: adaptive round {round_ + 1}: " + ", ".join(f"{n} at {p:g}" for p, n in counts.items()))
        plan += added
        _run_tasks(setup, base, store, added, workers, progress)
    results = summarize(out, setup.experiment_id, cfg, cap, capable, plan)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    write_report(out, results)
    return results
