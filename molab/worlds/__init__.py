"""Task worlds (problems with graded difficulty) and their overseers. Worlds know nothing of molab's
config module: they raise WorldError, which the CLI turns into its one-line message."""

import functools

from molab.worlds.arithmetic import ArithmeticOverseer, ArithmeticWorld, column_arithmetic
from molab.worlds.jsonl import JsonlWorld, WorldFileError, read_jsonl
from molab.worlds.overseer import ModelOverseer, OverseenWorld, Overseer, StoredOverseer
from molab.worlds.problem import Problem, WorldError


def make_world(cfg):
    """The task world an ExperimentConfig describes; its overseer is `world.overseer`: the world's own rule, or
    (overseer.kind = model) a weaker local checkpoint."""
    w, o = cfg.world, cfg.overseer
    if w.kind == "jsonl":
        world = JsonlWorld(w.path, o.competence)
    else:
        world = ArithmeticWorld(w.digits, w.operations, o.error_model, w.reverse_answers, w.pad_operands,
                                w.n_diagnostic, w.seed, o.competence)
    if o.kind == "rule":
        return world
    from molab.learners.lm import overseer_answers

    return OverseenWorld(world, ModelOverseer(functools.partial(overseer_answers, o.path), o.confidence))


__all__ = ["ArithmeticOverseer", "ArithmeticWorld", "JsonlWorld", "ModelOverseer", "OverseenWorld", "Overseer",
           "Problem", "StoredOverseer",
           "WorldError", "WorldFileError", "column_arithmetic", "make_world", "read_jsonl"]
