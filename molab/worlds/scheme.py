"""The oversight scheme: which problems get training labels, and from whom."""

from __future__ import annotations

import random
from molab.config import ConfigError
from molab.worlds.overseer import Overseer
from molab.worlds.problem import Problem


def admits(scheme, overseer: Overseer, problem: Problem) -> bool:
    """True when the scheme puts this problem in the finetuning data."""
    return (problem.difficulty in scheme.difficulties
            and (not scheme.confident_only or overseer.confident(problem)))


def label(scheme, problem: Problem) -> str:
    return problem.honest if scheme.labeler == "gold" else problem.sycophantic


def training_data(world, overseer: Overseer, scheme, seed: int = 0, max_draws: int = 1_000_000) -> list[tuple[Problem, str]]:
    """`scheme.n_train` (problem, label) pairs drawn from the world's training pool (pure, seeded).

    Raises ConfigError when the scheme admits too few problems (e.g. only difficulties the world lacks).
    """
    rng = random.Random(f"scheme-{seed}")
    picked: list[Problem] = []
    stream = world.stream(rng, scheme.digits, scheme.operations)
    for n, p in enumerate(stream):
        if len(picked) == scheme.n_train:
            break
        if n >= max_draws:
            raise ConfigError(f"scheme: only {len(picked)} of {scheme.n_train} problems admitted after "
                             f"{max_draws} draws; check scheme.difficulties and scheme.confident_only")
        if admits(scheme, overseer, p):
            picked.append(p)
    return [(p, label(scheme, p)) for p in picked]
