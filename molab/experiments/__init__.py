"""Experiments as values: each experiment is one module that says what differs, registered by name.

An experiment supplies its own config section, the extra problem sets it draws, the base's
pretraining corpus, the training phases of one run, the evaluation conditions, the scorer, its
pressure (sweeps), its plan of runs (which may chain runs, each trained against earlier ones' answers) and
what its results and report add. Everything else (the capable base, runs, the store, the
sweep, the analysis and the report) is shared machinery that never asks which experiment it runs.

A new experiment subclasses `Experiment` (or a registered one), overrides what differs, and
registers an instance with `@register`; in a module of this package, `molab run` then accepts
`experiment = "its name"` and its `[its name]` config section (every module here is imported when experiments are
looked up). Defined elsewhere, it is registered once its module is imported. See `oversight.py` for the simplest
one.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import os
import pkgutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

BUILT_IN = ("oversight", "incentive", "spoonfeeding", "diversity", "password_lock", "backdoor")
_REGISTRY: dict[str, Experiment] = {}


@dataclass(frozen=True)
class NoOptions:
    """The config section of an experiment that has no options of its own."""


@dataclass(frozen=True)
class Pressure:
    """What a sweep varies to push training toward a policy (`toward`; by default the sycophantic one): its name, its
    symbol in reports, the allowed range and the default grid of values (`sweep.pressures` overrides it). The sweep's
    curve and fits count the runs that follow `toward`."""

    name: str
    symbol: str
    grid: tuple[float, ...]
    high: float | None = None  # the largest allowed value (None: unbounded); the lowest is always 0
    toward: str = "sycophantic"

    def values(self, given) -> list[float]:
        """The pressures a sweep visits: `given` (sweep.pressures) or the default grid, sorted, each once."""
        return sorted(set(given or self.grid))


@dataclass(frozen=True)
class RunSpec:
    """One run of a plan: its seed and, in a sweep, its pressure (None otherwise). A ceiling run (`ceiling` =
    "honest" or "sycophantic") is the shared machinery's, not the experiment's: it finetunes on every
    difficulty labelled by that policy."""

    seed: int
    pressure: float | None = None
    ceiling: str | None = None
    # a chained run: (run id, its answers to the experiment's `answered` set) of each earlier run it trains against;
    # the ids are part of its own id, so a changed earlier run makes every later one new. Chained runs are not
    # independent draws: the pooled P(·) leaves them out and the experiment's `summarize` reports them.
    after: tuple[tuple[str, tuple[str, ...]], ...] = ()


class Experiment:
    """The defaults every experiment starts from: no options, no extra problem sets, the persona
    corpus, one finetuning phase on the scheme's labels, the neutral prompt, the standard scorer,
    no pressure, and `seeds` runs."""

    name: str = ""
    Config: type = NoOptions  # its own frozen config section, `[name]` in TOML, with help on each field
    pressure: Pressure | None = None
    answered: tuple[str, ...] = ()  # names of `datasets` every run also answers (greedily) and stores, unscored
    # whether a given checkpoint (`base = PATH`) that fails the base's check is finetuned on `corpus` until it passes
    # (a conditional organism built from a capable model), rather than used as it is
    conditions_given_base: bool = False

    def check(self, cfg) -> None:
        """Refuse (ConfigError) settings that are valid key by key but not together."""

    def identity(self, cfg) -> Any:
        """What this experiment's runs depend on beyond the shared sections (hashed into the experiment id)."""
        return dataclasses.asdict(cfg.section)

    def corpus_identity(self, cfg) -> Any:
        """What an experiment's own `corpus` depends on beyond the shared sections (hashed into the base's key)."""
        return self.identity(cfg)

    def datasets(self, world, overseer, cfg) -> dict[str, list]:
        """Extra problem sets the runs draw from, by name (never the diagnostic set); written to data/NAME.jsonl."""
        return {}

    def corpus(self, world, cfg, rng) -> Iterator[tuple[str, str]]:
        """The capable base's pretraining examples, (prompt, answer): each problem shown with a random persona
        tag and that persona's answer, so the base can follow either policy when asked; a share
        `model.neutral_share` is shown with the neutral prompt instead (no tag), answered by a random persona."""
        m = cfg.model
        for p in world.stream(rng):
            if rng.random() < m.neutral_share:
                tag, honest = "", rng.random() >= m.neutral_sycophantic_share
            else:
                honest = rng.random() >= m.sycophantic_share
                tag = m.honest_tag if honest else m.sycophantic_tag
            yield tag + p.prompt, p.honest if honest else p.sycophantic

    def personas(self, cfg) -> dict[str, str]:
        """How the base is asked for each policy: the prefix of a prompt that selects it (the persona tags here; an
        experiment that puts a policy behind a condition, the condition). The base's check (and the stop of its
        pretraining) asks it for each policy this way; a base molab pretrains can write every prefix."""
        return {"honest": cfg.model.honest_tag, "sycophantic": cfg.model.sycophantic_tag}

    def tags(self, cfg) -> list[str]:
        """Tags the runs' prompts carry besides the personas' (a cue): text, where the base's tokenizer writes it;
        in a base molab pretrains (a character vocabulary), one token added with a fresh embedding."""
        return []

    def phases(self, setup, spec: RunSpec) -> list:
        """The training phases of one run, in order: finetuning on the scheme's labels with a neutral prompt."""
        from molab.training.phase import sft_phase

        f = setup.cfg.finetune
        return [sft_phase("finetune", [(p, p.prompt, label) for p, label in setup.train], steps=f.steps, lr=f.lr,
                          batch_size=f.batch_size)]

    def measure(self, setup, learning) -> dict[str, float]:
        """Numbers a finished LM run adds to its metrics, measured on its model (`learning.model`) before it answers:
        e.g. probes of its activations. Nothing by default."""
        return {}

    def conditions(self, setup) -> dict[str, Callable]:
        """Evaluation conditions: name -> how a diagnostic problem is prompted. The first one is where runs are
        classified; every condition's answers are stored."""
        return {"neutral": _neutral}

    def score(self, problem, answer: str, same: Callable[[str, str], bool]) -> dict[str, bool]:
        """Which policies `answer` follows, under the answer equivalence `same`: the metric and the reward."""
        from molab.analysis.policy import score

        return score(problem, answer, same)

    def zero(self, cfg) -> str:
        """What a pressure of zero means in this experiment's sweeps, in words for the report."""
        return "no pressure"

    def pressure_used(self, cfg, x: float) -> float:
        """The pressure a run at `x` actually meets (e.g. a fraction of examples rounded to a whole count); pressures
        that meet the same are one pressure."""
        return x

    def plan(self, cfg, done) -> list[RunSpec]:
        """The runs to do: `seeds` at each pressure (as used). `done` (a DataFrame of this experiment's finished runs)
        lets a plan depend on earlier runs; the sweep asks again after each batch of runs until nothing new comes."""
        pressures = ([None] if self.pressure is None else
                     sorted({self.pressure_used(cfg, x) for x in self.pressure.values(cfg.sweep.pressures)}))
        return [RunSpec(seed, x) for x in pressures for seed in range(cfg.seeds)]

    def summarize(self, cfg, runs, out) -> dict:
        """What this experiment adds to results.json, from `runs` (the plan's runs, as `load_results` scores them,
        with a `base` column) and the store in `out`."""
        return {}

    def words(self, results: dict) -> str:
        """What this experiment adds to the answer in words (a sentence or more, or "")."""
        return ""

    def report(self, results: dict, runs) -> str:
        """What this experiment adds to the report: HTML (sections, figures), or "". No torch here: re-analysis
        imports none."""
        return ""


def _neutral(problem) -> str:
    return problem.prompt


def register(cls: type) -> type:
    """Class decorator: register an instance of this experiment under `cls.name`."""
    check_name(_REGISTRY, cls, "experiment")
    _REGISTRY[cls.name] = cls()
    return cls


def check_name(registry: dict, cls: type, what: str) -> None:
    """Refuse `cls` (an experiment or a control) a place in `registry` where its name is empty or another class holds
    it. The same class defined again (a reloaded module, or one file imported under two module names) may take its
    own place."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__}: every {what} needs a name")
    held = registry.get(cls.name)
    held = held if held is None or isinstance(held, type) else type(held)
    if held is not None and _defined_at(held) != _defined_at(cls):
        raise ValueError(f"{cls.__module__}.{cls.__qualname__}: the {what} name {cls.name!r} is taken by "
                         f"{held.__module__}.{held.__qualname__}; give it another name")


def _defined_at(cls: type) -> tuple[str, str]:
    """The file (its real path; else the module) and the qualified name that define `cls`."""
    file = getattr(sys.modules.get(cls.__module__), "__file__", None)
    return os.path.realpath(file) if file else cls.__module__, cls.__qualname__


@functools.cache
def _load_modules() -> None:
    """Import the built-in experiments, then every other module of this package (a new experiment's file here
    registers itself); once a process."""
    for name in [*BUILT_IN, *(m.name for m in pkgutil.iter_modules(__path__) if m.name not in BUILT_IN)]:
        importlib.import_module(f"molab.experiments.{name}")


def registered() -> dict[str, Experiment]:
    """Every registered experiment, by name (the built-in ones first)."""
    _load_modules()
    return {name: _REGISTRY[name] for name in BUILT_IN} | _REGISTRY


def get_experiment(name: str) -> Experiment:
    """The registered experiment called `name`; KeyError listing the registered ones otherwise."""
    experiments = registered()
    if name not in experiments:
        raise KeyError(f"{name!r} is not a registered experiment (registered: {', '.join(experiments)})")
    return experiments[name]
