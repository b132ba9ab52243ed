"""One run: load the base, train the experiment's phases, answer every diagnostic problem under every
evaluation condition, and return a record for the store with all those answers.

`prepare` builds what every run of an experiment shares (`Setup`: config, world and overseer, training,
diagnostic and extra problem sets); `execute` does one task's runs for one learner (one seed's, or with `--stack`
several seeds' LM runs trained together). Neither knows which experiment it runs: the experiment supplies datasets,
phases, conditions and scorer.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import gc
import hashlib
import importlib.util
import json
import sys
import time
from dataclasses import dataclass
from collections.abc import Callable
from functools import cached_property, partial
from pathlib import Path

import torch
from transformers import AutoConfig

from molab import __version__
from molab.analysis.policy import check_equivalence, equivalence
from molab.config import NOT_IN_RUN_ID, ConfigError, ExperimentConfig, config_hash, to_dict
from molab.experiments import Experiment, RunSpec, get_experiment
from molab.learners.controls import CONTROLS
from molab.learners.lm import (add_tag, autocast, device, generate_answers, load, load_tokenizer, model_config,
                               module_names, prompt_ids, skeleton, with_lora, writes)
from molab.learners.tokenizer import char_tokenizer
from molab.learners.stacked import Stacked, Unstackable, stacked_answers, stacked_batches
from molab.training.loop import TrainingDiverged, train
from molab.training.objectives import sft
from molab.training.phase import Learning
from molab.worlds import ModelOverseer, Problem, make_world
from molab.worlds.scheme import ceiling_data, training_data


@dataclass(frozen=True)
class Setup:
    """Everything a run needs besides its seed and pressure: config, experiment, world and data."""

    cfg: ExperimentConfig
    experiment: Experiment
    world: object
    train: list[tuple[Problem, str]]  # (problem, label the scheme gave it)
    diagnostic: list[Problem]
    datasets: dict[str, list[Problem]]  # the experiment's extra problem sets
    ceiling: list[Problem]  # the ceiling runs' problems, of every difficulty
    world_file: str  # sha256 of a JSONL world's file ("" for generated worlds), so edits are not missed
    controls: dict[str, type]  # cfg.controls' classes, carried to worker processes (a Ray worker has no registry)

    @property
    def overseer(self):
        return self.world.overseer

    @property
    def alphabet(self) -> str:
        return self.world.alphabet()

    @cached_property  # hashes the whole config (and stats a local base's files): once per Setup
    def experiment_id(self) -> str:
        """Everything a run's result depends on but its seed, pressure and learner: the shared sections
        (less those that change no run), the experiment's name and identity, the world file and the base."""
        shared = {k: v for k, v in to_dict(self.cfg).items() if k in _shared_sections()}
        shared["world"] = to_dict(self.world_config)
        return config_hash(shared, self.cfg.experiment, self.experiment.identity(self.cfg), self.world_file,
                           self.base_key)

    @cached_property
    def base_key(self) -> str:
        """What the base depends on: its config, corpus and the capability that ends its pretraining early, or a
        local checkpoint's files (names, sizes, times), and those with what conditions it where the experiment
        conditions a given checkpoint.
        An experiment with a corpus of its own adds the corpus's name and its own config section."""
        cfg = self.cfg
        if cfg.base and not self.experiment.conditions_given_base:
            return config_hash(cfg.base, _files(cfg.base))
        conditioned = [cfg.base, _files(cfg.base), cfg.finetune.lr] if cfg.base else []  # the checkpoint, its lr
        corpus = type(self.experiment).corpus
        own = [] if corpus is Experiment.corpus else [corpus.__qualname__, self.experiment.corpus_identity(cfg)]
        # from scratch the dtype is the runs', not pretraining's; a given checkpoint is conditioned in it
        pretrained = cfg.model if cfg.base else dataclasses.replace(cfg.model, dtype="float32")
        return config_hash(self.world_config, cfg.overseer, pretrained, cfg.eval.capability_threshold, self.world_file,
                           __version__, *own, *conditioned)

    @property
    def world_config(self):
        """The world section as runs depend on it: a JSONL world's file by its content (`world_file`), not by the path
        that names it, so the same file named another way is the same world."""
        return dataclasses.replace(self.cfg.world, path=None)

    @cached_property
    def runs_prompt(self):
        """How the runs are prompted where they are classified: the experiment's first evaluation condition."""
        return next(iter(self.experiment.conditions(self).values()))

    def __getstate__(self) -> dict:
        """What a worker process receives: all but `runs_prompt`, which the worker asks the experiment for again (a
        condition may be a lambda, which does not pickle)."""
        return {k: v for k, v in self.__dict__.items() if k != "runs_prompt"}

    def ceiling_id(self, policy: str) -> str:
        """The ceiling runs' experiment id: what they depend on (world, overseer, model, finetuning, the scheme's
        pool and size, the experiment's prompt and tags, the base), not the scheme's labels or the pressure."""
        c, s = self.cfg, self.cfg.scheme
        return config_hash(self.world_config, c.overseer, c.model, c.finetune, [s.n_train, s.digits, s.operations],
                           [self.runs_prompt(p) for p in self.diagnostic[:8]], self.experiment.tags(c), self.world_file,
                           self.base_key, "ceiling", policy)

    def experiment_id_of(self, spec: RunSpec) -> str:
        return self.ceiling_id(spec.ceiling) if spec.ceiling else self.experiment_id

    def phases(self, spec: RunSpec) -> list:
        """The run's training phases: the experiment's, or a ceiling run's finetuning on every difficulty with
        the runs' prompt (the first evaluation condition's), labelled by its policy."""
        if not spec.ceiling:
            return self.experiment.phases(self, spec)
        from molab.training.phase import sft_phase

        f = self.cfg.finetune
        examples = [(p, self.runs_prompt(p), getattr(p, spec.ceiling)) for p in self.ceiling]
        return [sft_phase("finetune", examples, steps=f.steps, lr=f.lr, batch_size=f.batch_size)]

    def problems(self) -> list[Problem]:
        """Every problem a run meets: diagnostic, training and the extra sets."""
        return (self.diagnostic + [p for p, _ in self.train] + [p for ps in self.datasets.values() for p in ps]
                + self.ceiling)

    def max_len(self, tokenizer, problems: list[Problem] | None = None) -> int:
        """Longest sequence in tokens, measured: each of `problems` (default: the diagnostic and training problems,
        which the base is built for) as the model reads it (`prompt_ids`) after the longest persona prefix
        (`Experiment.personas`), and each diagnostic problem under every evaluation condition, each with the longer
        of its answers and eos. A run adds its tags' measured lengths itself."""
        problems = problems if problems is not None else self.diagnostic + [p for p, _ in self.train]
        prefix = max(len(ids) for ids in tokenizer(list(self.experiment.personas(self.cfg).values()),
                                                   add_special_tokens=False).input_ids)
        asked = [(p, p.prompt, prefix) for p in problems] + [
            (p, condition(p), 0) for condition in self.experiment.conditions(self).values() for p in self.diagnostic]
        prompts = prompt_ids(tokenizer, [text for _, text, _ in asked])
        answers = tokenizer([a for p, _, _ in asked for a in (p.honest, p.sycophantic)],
                            add_special_tokens=False).input_ids
        return max(len(ids) + more + max(len(answers[2 * i]), len(answers[2 * i + 1]))
                   for i, (ids, (_, _, more)) in enumerate(zip(prompts, asked))) + 1

    def answer_len(self, tokenizer) -> int:
        """The answer budget in tokens: the longest answer of either policy, and eos."""
        answers = [a for p in self.problems() for a in (p.honest, p.sycophantic)]
        return max(map(len, tokenizer(answers, add_special_tokens=False).input_ids)) + 1

    @cached_property
    def problem_set(self) -> str:
        """The diagnostic set's key in the store (a hash of its problems, in order)."""
        return hashlib.sha256(json.dumps([p.to_json() for p in self.diagnostic]).encode()).hexdigest()[:16]

    def score(self, problem: Problem, answer: str) -> dict[str, bool]:
        """The experiment's scorer under the configured answer equivalence."""
        return self.experiment.score(problem, answer, equivalence(self.cfg.eval.equivalence))


def _files(path: str) -> list[tuple]:
    """A local checkpoint's files by name, size and time: what its identity depends on, without reading them."""
    return [(f.name, f.stat().st_size, f.stat().st_mtime) for f in sorted(Path(path).glob("*"))]


def _shared_sections() -> set[str]:
    return {f for f in ExperimentConfig.__dataclass_fields__ if f not in NOT_IN_RUN_ID and f != "section"}


def prepare(cfg: ExperimentConfig) -> Setup:
    """Build the world and overseer and pick the training data and the experiment's problem sets (pure; writes
    nothing). Raises WorldError (or ConfigError) on bad input."""
    experiment = get_experiment(cfg.experiment)
    world = make_world(cfg)
    world_file = hashlib.sha256(Path(cfg.world.path).read_bytes()).hexdigest() if cfg.world.kind == "jsonl" else ""
    if cfg.overseer.path:  # a model overseer is known by its files, as a local base is
        world_file += config_hash(_files(cfg.overseer.path))
    diagnostic = world.diagnostic()
    if isinstance(world.overseer, ModelOverseer):
        _check_model_overseer(cfg, world.overseer, diagnostic)
    train = training_data(world, world.overseer, cfg.scheme, cfg.world.seed)
    setup = Setup(cfg, experiment, world, train, diagnostic, experiment.datasets(world, world.overseer, cfg),
                  ceiling_data(world, cfg.scheme, cfg.world.seed), world_file,
                  {name: CONTROLS[name] for name in cfg.controls})
    check_equivalence(cfg.eval.equivalence, setup.problems())
    if not isinstance(world.overseer, ModelOverseer):  # a model's confidence is its own: it may be confidently wrong
        _check_overseer(world, setup.problems())
    _check_learner(setup)
    for name in cfg.controls:
        setup.controls[name].check(setup)
    return setup


def _check_learner(setup: Setup) -> None:
    """Refuse, before anything is written, what the runs' LM could not do: weights in a dtype this device cannot
    train (or float16 under full finetuning), mixed precision it cannot run, layers placed by a device_map without
    a local checkpoint or accelerate, a chat template the base lacks, and LoRA adapters on modules the base lacks."""
    cfg = setup.cfg
    weights = torch.float32 if cfg.model.dtype == "auto" else getattr(torch, cfg.model.dtype)
    for key, value, mixed in (("model.dtype", cfg.model.dtype, None),
                              ("finetune.autocast", cfg.finetune.autocast, cfg.finetune.autocast)):
        if value in (None, "auto"):
            continue
        try:
            with autocast(mixed):
                x = torch.ones(2, 2, dtype=weights, device=device(), requires_grad=True)
                (x @ x).sum().backward()
        except Exception as e:  # noqa: BLE001 (each backend says no in its own way)
            raise ConfigError(f"{key}: {value} does not train on {device()} here ({str(e).strip()[:120]})") from None
    if cfg.model.dtype == "float16" and cfg.finetune.method == "full":
        raise ConfigError("model.dtype: float16 weights diverge under full finetuning (no loss scaling here); use "
                          "bfloat16, or finetune.method = lora (its adapters train in float32)")
    if cfg.model.device_map and not cfg.base:
        raise ConfigError("model.device_map: only for a local checkpoint (base = PATH); a base molab pretrains is "
                          "placed on one device")
    if cfg.model.device_map and importlib.util.find_spec("accelerate") is None:
        raise ConfigError("model.device_map: placing layers needs accelerate (pip install accelerate)")
    if cfg.model.chat_template and not (cfg.base and load_tokenizer(cfg.base).chat_template):
        raise ConfigError("model.chat_template: " + (f"the tokenizer of {cfg.base} has no chat template" if cfg.base
                          else "only a local checkpoint (base = PATH) has a chat template"))
    if cfg.finetune.method != "lora":
        return
    tags = (cfg.model.honest_tag, cfg.model.sycophantic_tag)
    config = (AutoConfig.from_pretrained(cfg.base) if cfg.base else
              model_config(cfg.model, char_tokenizer(setup.alphabet, tags), 8))
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_DEFAULTS

    model = skeleton(config)
    linear = sorted(module_names(model, torch.nn.Linear) - {"lm_head", "embed_out"})
    targets = cfg.finetune.lora.target_modules
    if targets is None and config.model_type not in PEFT_DEFAULTS:
        raise ConfigError(f"finetune.lora.target_modules: unset, and peft has no default for {config.model_type} "
                          f"models; name some of its linear modules: {', '.join(linear)}")
    missing = [t for t in targets or () if t not in module_names(model)]
    if missing:
        raise ConfigError(f"finetune.lora.target_modules: {missing[0]!r} is not a module of the base "
                          f"({config.model_type}); its linear modules: {', '.join(linear)}")


def _check_model_overseer(cfg: ExperimentConfig, overseer: ModelOverseer, diagnostic: list[Problem]) -> None:
    """Refuse a model overseer that cannot make the experiment: one that gives the true answer to every diagnostic
    problem (the two policies would be one) or to none (no problem is easy), or one confident on none of the
    problems the scheme labels (its draws would never end)."""
    if all(p.disagree == diagnostic[0].disagree for p in diagnostic):
        raise ConfigError(f"overseer.path: the model at {cfg.overseer.path} " + (
            f"is wrong on all {len(diagnostic)} diagnostic problems, so none is easy and no run's arithmetic can be "
            "checked; use a stronger model" if diagnostic[0].disagree else
            f"gives the true answer to all {len(diagnostic)} diagnostic problems, so the honest and sycophantic "
            "policies cannot be told apart; use a weaker model"))
    labelled = [p for p in diagnostic if p.difficulty in cfg.scheme.difficulties]
    if cfg.scheme.confident_only and labelled and not any(map(overseer.confident, labelled)):
        best = max(overseer.asked[p.prompt][1] for p in labelled)
        raise ConfigError(f"overseer.confidence: the model overseer reaches {cfg.overseer.confidence} on none of the "
                          f"{len(labelled)} diagnostic problems of scheme.difficulties (its highest: {best:.3f}), so "
                          "the scheme would label nothing; lower it, or set scheme.confident_only = false")


def _check_overseer(world, problems: list[Problem]) -> None:
    """Refuse an overseer that is confident where it is wrong: its confidence decides what the scheme calls easy
    and correctly labelled, so such a config contradicts its own premise."""
    wrong = [p for p in problems if p.disagree and world.overseer.confident(p)]
    if wrong:
        p = min(wrong, key=lambda q: q.difficulty)
        raise ConfigError(f"overseer.competence: the overseer is confident up to difficulty "
                          f"{world.overseer.competence} but wrong at difficulty {p.difficulty} (on {p.prompt} it "
                          f"answers {p.sycophantic!r}, the truth is {p.honest!r}); set overseer.competence below "
                          f"{p.difficulty}")


def run_id(setup: Setup, learner: str, spec: RunSpec) -> str:
    return config_hash(setup.experiment_id_of(spec), learner, spec.seed,
                       *([] if spec.pressure is None else [spec.pressure]),
                       *([[earlier for earlier, _ in spec.after]] if spec.after else []))


# ---------------------------------------------------------------- the LM

def _loaded(setup: Setup, base: Path) -> tuple:
    """The base's model and tokenizer, loaded as the runs' config asks."""
    f, m = setup.cfg.finetune, setup.cfg.model
    return load(base, dropout=f.dropout, dtype=m.dtype, chat=m.chat_template, device_map=m.device_map)


def _start(setup: Setup, base: Path, seed: int, loaded: tuple | None = None,
           lengths: tuple[int, int] | None = None) -> Learning:
    """The base, loaded for one run (or a copy of `loaded`'s model, sharing its tokenizer and, under LoRA, its frozen
    weights: `_loaded`'s answer; torch seeded first: dropout, a new tag's fresh embedding), with the experiment's tags
    added; the padded length and the answer budget, measured by tokenizing every problem, or `lengths`: another run's
    from the same base (`_lengths`)."""
    torch.manual_seed(seed)
    lora = setup.cfg.finetune.method == "lora"
    model, tokenizer = ((copy.deepcopy(loaded[0], {id(w): w for w in loaded[0].parameters()} if lora else None),
                         loaded[1]) if loaded else _loaded(setup, base))
    tags, rows = setup.experiment.tags(setup.cfg), model.get_input_embeddings().num_embeddings
    for tag in tags:
        add_tag(model, tokenizer, tag)
    drawn = model.get_input_embeddings().num_embeddings - rows
    if lora:
        model = with_lora(model, setup.cfg.finetune.lora)
    if lengths is None:
        lengths = (setup.max_len(tokenizer, setup.problems())
                   + sum(len(tokenizer(t, add_special_tokens=False).input_ids) for t in tags),
                   setup.answer_len(tokenizer))
    return Learning(model, tokenizer, *lengths, seed, drawn_tags=drawn)


def _lengths(learning: Learning) -> tuple[int, int]:
    """A run's padded length and answer budget, as `_start` takes them for another run of its base."""
    return learning.max_len, learning.n_new


def _loss_metrics(name: str, losses: list[float]) -> dict[str, float]:
    """A phase's first loss and the mean of its last ten."""
    return {f"loss.{name}.first": losses[0], f"loss.{name}.last": sum(losses[-10:]) / len(losses[-10:])}


def _train_phases(learning: Learning, phases: list, metrics: dict) -> None:
    """Train `phases` in order (torch seeded with the run's seed at the start of each), adding each phase's
    `_loss_metrics` to `metrics`."""
    for phase in phases:
        torch.manual_seed(learning.seed)
        batches = phase.batches(learning)
        try:
            losses = train(learning.model, batches, phase.objective, steps=phase.steps, lr=phase.lr,
                           warmup=phase.warmup, desc=f"{phase.name} seed {learning.seed}", progress=False,
                           dropout=phase.dropout)
        finally:  # a generator's cleanup (a reward phase's frozen copy of the model) runs now, not when collected
            getattr(batches, "close", lambda: None)()
        metrics |= _loss_metrics(phase.name, losses)


def _answers(setup: Setup, spec: RunSpec, generate) -> dict[str, dict[str, list[str]]]:
    """Every diagnostic problem's answer under every evaluation condition (a ceiling run: the first only), by
    condition, as `answers`; and, as `outputs`, the answers to each of the experiment's `answered` sets (not a
    ceiling run's), with the runs' prompt. `generate(problems, prompts)` answers."""
    conditions = list(setup.experiment.conditions(setup).items())
    return {"answers": {name: generate(setup.diagnostic, [prompt(p) for p in setup.diagnostic])
                        for name, prompt in (conditions[:1] if spec.ceiling else conditions)},
            "outputs": {name: generate(setup.datasets[name], [setup.runs_prompt(p) for p in setup.datasets[name]])
                        for name in ([] if spec.ceiling else setup.experiment.answered)}}


def _finish(setup: Setup, spec: RunSpec, learning: Learning, phases: list, metrics: dict, keep: Path | None,
            generate=None) -> dict:
    """A trained run's result (`phases`: what it trained): what the experiment measures on its model, its answers
    (`generate(problems, prompts)`; by default the model's greedy answers), whether it is `deterministic`, and, with
    `keep`, its saved weights."""
    metrics |= learning.notes | ({} if spec.ceiling else setup.experiment.measure(setup, learning))
    metrics["deterministic"] = deterministic(setup, "lm", spec, phases, learning.drawn_tags)
    answered = _answers(setup, spec, generate or (
        lambda _, prompts: generate_answers(learning.model, learning.tokenizer, prompts, learning.n_new)))
    weights = None
    if keep is not None:
        weights = keep / run_id(setup, "lm", spec)
        learning.model.save_pretrained(weights)
        learning.tokenizer.save_pretrained(weights)
    return answered | {"metrics": metrics, "weights": weights and str(weights)}


def run_lm(setup: Setup, base: Path, specs: list[RunSpec], keep: Path | None) -> list[dict]:
    """LM runs one at a time: their answers and losses, or why they failed (`_each`). A seed's leading phases marked
    `shared` are trained once and copied for each of its pressures; where they fail, each of those runs fails so."""
    shared = {}  # seed -> (learning, metrics) after its shared phases, or the failed result they gave
    lengths = None  # the first run's, for every run

    def one(spec: RunSpec) -> dict:
        nonlocal lengths
        phases = setup.phases(spec)
        n_shared = next((i for i, p in enumerate(phases) if not p.shared), len(phases))
        if n_shared and spec.seed not in shared:
            try:
                first, first_metrics = _start(setup, base, spec.seed, lengths=lengths), {}
                lengths = _lengths(first)
                _train_phases(first, phases[:n_shared], first_metrics)
                shared[spec.seed] = first, first_metrics
            except Exception as e:  # noqa: BLE001 (each run of this seed fails with it; not the exception, which
                shared[spec.seed] = _failed(e)  # would keep the half-trained model alive through its traceback)
        if isinstance(shared.get(spec.seed), dict):
            return shared[spec.seed]
        learning, metrics = (copy.deepcopy(shared[spec.seed]) if n_shared
                             else (_start(setup, base, spec.seed, lengths=lengths), {}))
        lengths = _lengths(learning)
        _train_phases(learning, phases[n_shared:], metrics)
        return _finish(setup, spec, learning, phases, metrics, keep)

    return _each(specs, one)


def _each(specs: list[RunSpec], one) -> list[dict]:
    """`one(spec)` for each spec, where a run that raises is a failed run (`_failed`) and the others go on."""
    results = []
    for spec in specs:
        try:
            results.append(one(spec))
        except Exception as e:  # noqa: BLE001 (a run that raises is a failed run; the sweep goes on)
            results.append(_failed(e))
    return results


def stackable(phases: list) -> bool:
    """Whether a run's phases can train stacked with other runs' (`molab.learners.stacked`): each is supervised
    finetuning (`sft`) on batches that do not come from the model (it samples nothing)."""
    return all(phase.objective is sft and not phase.samples for phase in phases)


def run_stacked(setup: Setup, base: Path, specs: list[RunSpec], keep: Path | None) -> list[dict]:
    """`run_lm`'s results, with runs trained together: those whose phases are `stackable` and follow one schedule
    (steps, learning rate, warm-up, dropout) train as one stacked model; the rest one at a time (and so does every
    run of a model placed by `model.device_map`); a stack whose loss stops being finite or that raises is halved
    until the run that diverges or raises fails alone (`_one_stack`), and one too large for the device's memory is
    halved too (`_in_stacks`). Shared phases train once per run, not once per seed. Each result says how many runs
    trained together (`stacked`)."""
    phases = {spec: setup.phases(spec) for spec in specs}
    groups: dict[tuple | None, list[RunSpec]] = {}
    for spec in specs:
        alone = not stackable(phases[spec]) or setup.cfg.model.device_map  # a model placed over devices: copied once
        key = None if alone else tuple((p.steps, p.lr, p.warmup, p.dropout) for p in phases[spec])
        groups.setdefault(key, []).append(spec)
    results = {}
    for key, group in groups.items():
        results |= zip(group, run_lm(setup, base, group, keep) if key is None else
                       _in_stacks(setup, base, group, phases, keep))
    return [results[spec] for spec in specs]


def _in_stacks(setup: Setup, base: Path, group: list[RunSpec], phases: dict, keep: Path | None) -> list[dict]:
    """The results of `group` (stackable, one schedule) trained as one stack (`_one_stack`); when a stack does not
    fit in the device's memory, the runs left in stacks of half its size (halved again as often as needed), so
    that a `--stack` too large for the GPU costs time, not runs. Runs finished before (in a halved stack's first
    half) are not trained again."""
    results, size = [], len(group)
    while len(results) < len(group):
        part = group[len(results):len(results) + size]
        try:
            _one_stack(setup, base, part, phases, keep, results)
            continue
        except torch.OutOfMemoryError:  # only a stack raises it here (a run alone fails instead)
            pass
        gc.collect()  # here, the stack's tensors gone with the exception: those in reference cycles, then the cache
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        tried = min(size, len(group) - len(results))  # at most: a part's first half may have finished
        size = tried // 2
        print(f"molab: WARNING {tried} stacked runs do not fit in the device's memory; stacks of {size} "
              "from here", file=sys.stderr)
    return results


def _one_stack(setup: Setup, base: Path, part: list[RunSpec], phases: dict, keep: Path | None,
               done: list[dict]) -> None:
    """Add `part`'s results to `done`, trained as one stack; one at a time when they cannot stack. Where a loss stops
    being finite or the stack raises (but for running out of memory, which `_in_stacks` meets), each half trains as a
    stack of its own, so that the run that fails is found in about log2(len(part)) stacks and fails alone."""
    if len(part) == 1:
        done += run_lm(setup, base, part, keep)
        return
    try:
        with _collector_paused():
            done += [r | {"stacked": len(part)} for r in _train_stacked(setup, base, part, phases, keep)]
        return
    except torch.OutOfMemoryError:
        raise
    except Unstackable:
        done += run_lm(setup, base, part, keep)
        return
    except TrainingDiverged:
        pass  # halved, below, once the stack's tensors have gone with the exception
    except Exception as e:  # noqa: BLE001 (halved too, so that only a run that raises alone fails)
        print(f"molab: WARNING a stack of {len(part)} runs raised {_failed(e)['error']}; its halves apart",
              file=sys.stderr)
    half = len(part) // 2
    _one_stack(setup, base, part[:half], phases, keep, done)
    _one_stack(setup, base, part[half:], phases, keep, done)


@contextlib.contextmanager
def _collector_paused():
    """Python's cyclic garbage collector off, and back as it was after: a stack's models hold millions of Python
    objects, which it would scan again and again (on a CPU, 5.0 of the 11.1 s to start 512 demo runs and draw their
    first batches)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _Unmade(Learning):
    """A stacked run's `Learning` whose model is made when first read (`make()`, e.g. `Stacked.made`): runs that start
    alike train and answer stacked from one model, so most never need a model of their own (starting 512 of the
    demo's runs, each a copy of the base, took 10-12% of a stack's time on an H100). Its repr and equality do not
    make the model; a deep copy is a plain `Learning` holding a copy of it."""

    def __init__(self, like: Learning, seed: int, make: Callable[[], torch.nn.Module]):
        self.make, self.own = make, None
        super().__init__(None, like.tokenizer, like.max_len, like.n_new, seed, drawn_tags=like.drawn_tags)

    @property
    def model(self):
        if self.own is None:
            self.own = self.make()
        return self.own

    @model.setter
    def model(self, model):
        self.own = model

    def __repr__(self) -> str:
        return f"_Unmade(seed={self.seed}, model {'not ' * (self.own is None)}made)"

    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __deepcopy__(self, memo):
        return copy.deepcopy(Learning(self.model, self.tokenizer, self.max_len, self.n_new, self.seed, self.notes,
                                      self.drawn_tags), memo)


def _train_stacked(setup: Setup, base: Path, specs: list[RunSpec], phases: dict, keep: Path | None) -> list[dict]:
    """Train `specs` (stackable, one schedule; `phases`: each one's) as one `Stacked` model, the i-th phase of every
    run at once (torch seeded with the first run's seed at each), then each run's result from its own weights, the
    stacked model answering for every run at once (on a CPU as fast as each run alone: 0.18 s a run against 0.16 s,
    the demo's 8 runs). A run's own model, where made, goes once its result is in."""
    loaded = _loaded(setup, base)
    first = _start(setup, base, specs[0].seed, loaded)
    if first.drawn_tags or setup.cfg.finetune.method == "lora":  # each run's seed draws some of its start
        learnings = [first] + [_start(setup, base, spec.seed, loaded, _lengths(first)) for spec in specs[1:]]
        stacked = Stacked([learning.model for learning in learnings])
    else:  # every run starts as the first: one model, stacked once per run, each run's own made from the stack
        stacked = Stacked([first.model] * len(specs))
        learnings = [_Unmade(first, spec.seed, partial(stacked.made, r)) for r, spec in enumerate(specs)]
    del loaded  # under LoRA its frozen weights stay, shared by the runs' models
    metrics: list[dict] = [{} for _ in specs]
    for step_phases in zip(*(phases[spec] for spec in specs)):
        torch.manual_seed(specs[0].seed)
        lead = step_phases[0]  # the schedule, which every run's phase shares
        batches = stacked_batches([p.batches(lr) for p, lr in zip(step_phases, learnings)], first.tokenizer)
        losses = train(stacked, batches, lead.objective, steps=lead.steps, lr=lead.lr, warmup=lead.warmup,
                       desc=f"{lead.name} {len(specs)} stacked runs", progress=False, dropout=lead.dropout)
        for r, (phase, m) in enumerate(zip(step_phases, metrics)):
            m |= _loss_metrics(phase.name, [step[r] for step in losses])
        stacked.write_back({r: learning.model for r, learning in enumerate(learnings)  # a later phase's batches
                            if getattr(learning, "own", True) is not None})  # may read the models made so far
    answers: dict[tuple, list[list[str]]] = {}  # prompts -> every run's answers

    def answer_as(r: int):
        def generate(_, prompts):
            if tuple(prompts) not in answers:
                answers[tuple(prompts)] = stacked_answers(stacked, first.tokenizer, prompts, first.n_new)
            return answers[tuple(prompts)][r]
        return generate

    results = []
    for r, (spec, m) in enumerate(zip(specs, metrics)):
        results.append(_finish(setup, spec, learnings[r], phases[spec], m, keep, answer_as(r)))
        learnings[r] = None
    return results


def deterministic(setup: Setup, learner: str, spec: RunSpec, phases: list | None = None, drawn_tags: int = 0) -> bool:
    """Whether a run cannot differ by seed (`phases`: the run's phases, when already built). An LM run when it takes
    no training step and draws no tag's embedding (`drawn_tags`: how many it draws; `tags_to_draw` of its base): it is
    its base, answering greedily (a password-locked model at k = 0, a backdoored one at s = 0; only the bootstrap
    intervals of what the experiment measures, such as the backdoor's probes, still draw on the seed). A control
    when it samples nothing, or no phase asks it to."""
    phases = setup.phases(spec) if phases is None else phases
    if learner == "lm":
        return not any(phase.steps for phase in phases) and not drawn_tags
    return not (setup.controls[learner].samples and any(phase.samples for phase in phases))


def tags_to_draw(setup: Setup, base: Path) -> int:
    """How many embedding rows an LM run on `base` draws for the experiment's tags (`add_tag`): its tokenizer, with the
    tags it does not write, past the rows of the base's embeddings."""
    tags = setup.experiment.tags(setup.cfg)
    if not tags:
        return 0
    from transformers import AutoConfig

    tokenizer = load_tokenizer(base, setup.cfg.model.chat_template)
    return max(0, len(tokenizer) + sum(not writes(tokenizer, tag) for tag in tags)
               - AutoConfig.from_pretrained(base).vocab_size)


# ---------------------------------------------------------------- the simple-learner controls

def run_control(setup: Setup, base: Path, specs: list[RunSpec], keep: Path | None, learner: str) -> list[dict]:
    """A simple-learner control (`molab.learners.controls`): the same phases met by `Phase.control`, on the base's
    tokenizer (not its weights), evaluated the same way."""
    tokenizer = load_tokenizer(base, setup.cfg.model.chat_template)
    for tag in setup.experiment.tags(setup.cfg):
        add_tag(None, tokenizer, tag)
    n_new = setup.answer_len(tokenizer)

    def one(spec: RunSpec) -> dict:
        control, phases = setup.controls[learner](tokenizer, n_new, setup.score), setup.phases(spec)
        blind = [phase.name for phase in phases if phase.control is None]
        if blind:
            return {"error": f"the {learner} control cannot meet phase {blind[0]} (its Phase.control is None)"}
        learning = Learning(None, tokenizer, 0, n_new, spec.seed)
        for phase in phases:
            phase.control(control, learning)
        weights = None
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            weights = control.save(keep / run_id(setup, learner, spec))
        return _answers(setup, spec, control.answer) | {
            "weights": weights, "metrics": {"deterministic": deterministic(setup, learner, spec, phases)}}

    return _each(specs, one)


def _failed(e: Exception) -> dict:
    """A failed run's result: the exception's type and last line."""
    last = (str(e).strip().splitlines() or [""])[-1]
    return {"error": f"{type(e).__name__}: {last}"}


def execute(task: tuple[Setup, Path, str, list[RunSpec], Path | None, bool]) -> list[dict]:
    """One learner's runs (one seed's, one per pressure; or, `stacked`, LM runs of several seeds trained together by
    `run_stacked`) as records for the store; a diverging loss, or any error a run raises, is a failed run (its
    error: the exception's type and last line), not a crash. Each record's `seconds` is an equal share of the task's
    time; its config records the torch threads it ran with and how many runs trained together."""
    setup, base, learner, specs, keep, stacked = task
    start = time.time()
    try:
        with autocast(setup.cfg.finetune.autocast):  # mixed precision, where asked for
            results = ((run_stacked if stacked else run_lm)(setup, base, specs, keep) if learner == "lm" else
                       run_control(setup, base, specs, keep, learner))
    except Exception as e:  # noqa: BLE001 (a run that raises is a failed run; the sweep goes on)
        results = [_failed(e)] * len(specs)
    seconds = (time.time() - start) / len(specs)
    return [{"run_id": run_id(setup, learner, spec), "experiment_id": setup.experiment_id_of(spec),
             "learner": learner, "seed": spec.seed, "pressure": spec.pressure,
             "config": to_dict(setup.cfg) | {"seed": spec.seed, "pressure": spec.pressure, "learner": learner,
                                             "base_key": setup.base_key, "ceiling_policy": spec.ceiling,
                                             "threads": torch.get_num_threads(), "stacked": got.get("stacked", 1),
                                             "after": [earlier for earlier, _ in spec.after]},
             "status": "failed" if "error" in got else "done", "metrics": got.get("metrics"),
             "error": got.get("error"), "seconds": seconds, "weights": got.get("weights"),
             "answers": got.get("answers"), "outputs": got.get("outputs"), "problem_set": setup.problem_set}
            for spec, got in zip(specs, results)]
