"""The oversight scheme: which problems get training labels, and from whom; and the other problem
sets a pressure experiment draws from the same training pool (never from the diagnostic set)."""

from __future__ import annotations

import random
from collections.abc import Callable

from molab.worlds.overseer import Overseer
from molab.worlds.problem import Problem, WorldError


def admits(scheme, overseer: Overseer, problem: Problem) -> bool:
    """True when the scheme puts this problem in the finetuning data."""
    return (problem.difficulty in scheme.difficulties
            and (not scheme.confident_only or overseer.confident(problem)))


def label(scheme, overseer: Overseer, problem: Problem) -> str:
    """The training label: the true answer (gold) or the overseer's own answer."""
    return problem.honest if scheme.labeler == "gold" else overseer.answer(problem)


def draw(world, n: int, keep: Callable[[Problem], bool], seed: str, what: str, digits=None, operations=None,
         max_draws: int = 1_000_000) -> list[Problem]:
    """`n` problems of the world's training pool that `keep` admits (pure, seeded by `seed`).

    Raises WorldError naming the config section `what` when too few are admitted.
    """
    rng = random.Random(seed)
    picked: list[Problem] = []
    for i, p in enumerate(world.stream(rng, digits, operations)):
        if len(picked) == n:
            break
        if i >= max_draws:
            raise WorldError(f"{what}: only {len(picked)} of {n} problems admitted after {max_draws} draws; "
                              f"check {what}.difficulties")
        if keep(p):
            picked.append(p)
    return picked


def training_data(world, overseer: Overseer, scheme, seed: int = 0,
                  max_draws: int = 1_000_000) -> list[tuple[Problem, str]]:
    """`scheme.n_train` (problem, label) pairs drawn from the world's training pool (pure, seeded).

    Raises WorldError when the scheme admits too few problems (e.g. only difficulties the world lacks).
    """
    picked = draw(world, scheme.n_train, lambda p: admits(scheme, overseer, p), f"scheme-{seed}", "scheme",
                  scheme.digits, scheme.operations, max_draws)
    return [(p, label(scheme, overseer, p)) for p in picked]


def ceiling_data(world, scheme, seed: int = 0) -> list[Problem]:
    """`scheme.n_train` problems of every difficulty from the training pool (the scheme's operand sizes and
    operations), for the ceiling runs: labelled by gold they show the honest policy, by the overseer the
    sycophantic one."""
    return draw(world, scheme.n_train, lambda p: True, f"ceiling-{seed}", "scheme", scheme.digits, scheme.operations)
