"""The oversight experiment: finetune a capable base on the data an oversight scheme picks,
with a neutral prompt, and see which policy each run generalises to on hard problems.

Every stage is a function: `prepare` (world, overseer, training and diagnostic data),
`capable_base` (pretrain or load, cached), `capability` (the check), `run_lm` / `run_bigram`
(one run), and `run_experiment`, which composes them and writes the store, results and report.
"""

from __future__ import annotations

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
from molab.analysis.summary import summarize
from molab.config import ExperimentConfig, config_hash, to_dict
from molab.execution import run_all
from molab.learners.bigram import BigramTable
from molab.learners.lm import build_model, encode, generate_answers, load, load_tokenizer, n_params
from molab.learners.tokenizer import char_tokenizer
from molab.store import Store
from molab.training.loop import TrainingDiverged, train
from molab.training.objectives import sft
from molab.worlds import Overseer, Problem, make_world
from molab.worlds.scheme import training_data

LEARNERS = ("lm", "bigram")


@dataclass(frozen=True)
class Setup:
    """Everything a run needs besides its seed: config, data, and where the base lives."""

    cfg: ExperimentConfig
    train: list[tuple[Problem, str]]  # (problem, label the scheme gave it)
    diagnostic: list[Problem]
    alphabet: str
    world_file: str  # sha256 of a JSONL world's file ("" for generated worlds), so edits are not missed

    @cached_property  # hashes the whole config (and stats a local base's files): once per Setup
    def experiment_id(self) -> str:
        """Everything a run's result depends on but its seed and learner (the base included)."""
        return config_hash({k: v for k, v in to_dict(self.cfg).items() if k != "seeds"}, self.world_file,
                           self.base_key)

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
    return Setup(cfg, training_data(world, overseer, cfg.scheme, cfg.world.seed), world.diagnostic(),
                 world.alphabet(), world_file)


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

    forward = torch.compile(model) if m.compile else model
    start = time.time()
    losses = train(model, batches(), sft, steps=m.pretrain_steps, lr=m.lr, weight_decay=0.01,
                   desc=f"pretraining base ({n_params(model) / 1e6:.2f}M params)", progress=progress,
                   forward=forward)
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


def run_lm(setup: Setup, base: Path, seed: int, progress: bool = False) -> dict:
    """Finetune the base under the scheme with a neutral prompt; rates on the diagnostic set."""
    f = setup.cfg.finetune
    torch.manual_seed(seed)  # dropout
    model, tokenizer = load(base, dropout=f.dropout)
    examples = [(p.prompt, label) for p, label in setup.train]
    max_len = _max_len(tokenizer, setup.diagnostic + [p for p, _ in setup.train])
    batches = (encode(tokenizer, b, max_len) for b in _epochs(examples, random.Random(seed), f.batch_size))
    losses = train(model, batches, sft, steps=f.steps, lr=f.lr, desc=f"run seed {seed}", progress=progress)
    answers = generate_answers(model, tokenizer, [p.prompt for p in setup.diagnostic],
                               _answer_len(tokenizer, setup.diagnostic))
    return _metrics(setup, answers) | {"loss_first": losses[0], "loss_last": sum(losses[-10:]) / len(losses[-10:])}


def run_bigram(setup: Setup, base: Path, seed: int, progress: bool = False) -> dict:
    """The bigram-table control on the same finetuning tokens, evaluated the same way."""
    tokenizer = load_tokenizer(base)
    examples = [(p.prompt, label) for p, label in setup.train]
    random.Random(seed).shuffle(examples)  # order cannot matter to counts; kept for symmetry with run_lm
    ids = encode(tokenizer, examples)
    seqs = [row[m.bool()].tolist() for row, m in zip(ids["input_ids"], ids["attention_mask"])]
    table = BigramTable().fit(seqs)
    n_new = _answer_len(tokenizer, setup.diagnostic)
    prompts = tokenizer([p.prompt for p in setup.diagnostic]).input_ids
    answers = [tokenizer.decode(table.generate(p, n_new, tokenizer.eos_token_id), skip_special_tokens=True)
               for p in prompts]
    return _metrics(setup, answers)


def _metrics(setup: Setup, answers: list[str]) -> dict:
    r = rates(setup.diagnostic, answers)
    return {"policy": classify(r["hard"], setup.cfg.eval.policy_threshold), "rates": r,
            "examples": [{"prompt": p.prompt, "answer": a} for p, a in list(zip(setup.diagnostic, answers))[-3:]]}


RUNNERS = {"lm": run_lm, "bigram": run_bigram}


def execute(task: tuple[Setup, Path, str, int]) -> dict:
    """One run as a record for the store; a diverging loss is a failed run, not a crash."""
    setup, base, learner, seed = task
    start = time.time()
    try:
        metrics, status, error = RUNNERS[learner](setup, base, seed), "done", None
    except TrainingDiverged as e:
        metrics, status, error = None, "failed", str(e)
    return {"run_id": run_id(setup, learner, seed), "experiment_id": setup.experiment_id, "learner": learner,
            "seed": seed, "config": to_dict(setup.cfg) | {"seed": seed, "learner": learner, "base_key": setup.base_key},
            "status": status, "metrics": metrics, "error": error, "seconds": time.time() - start}


def run_id(setup: Setup, learner: str, seed: int) -> str:
    return config_hash(setup.experiment_id, learner, seed)


# ---------------------------------------------------------------- the experiment

def write_data(setup: Setup, out: Path) -> None:
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    with (data / "train.jsonl").open("w") as f:
        for p, label in setup.train:
            f.write(json.dumps(p.to_json() | {"label": label}) + "\n")
    with (data / "diagnostic.jsonl").open("w") as f:
        for p in setup.diagnostic:
            f.write(json.dumps(p.to_json()) + "\n")


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
    done = store.finished_ids()
    tasks = [(setup, base, learner, seed) for seed in range(cfg.seeds) for learner in LEARNERS
             if run_id(setup, learner, seed) not in done]
    bar = tqdm(total=len(tasks), desc=f"runs ({cfg.seeds * len(LEARNERS) - len(tasks)} already done)",
               unit="run", disable=not progress)
    for record in run_all(execute, tasks, workers):
        store.record(**record)
        if record["status"] == "failed":
            tqdm.write(f"molab: run {record['learner']} seed {record['seed']} failed: {record['error']}")
        bar.update()
    bar.close()
    results = summarize(out, setup.experiment_id, cfg, cap, capable)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    write_report(out, results)
    return results
