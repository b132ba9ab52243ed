"""Task worlds (problems with graded difficulty) and their overseers. Worlds know nothing of molab's
config module: they raise WorldError, which the CLI turns into its one-line message."""

from molab.worlds.arithmetic import ArithmeticOverseer, ArithmeticWorld, column_arithmetic
from molab.worlds.jsonl import JsonlWorld, WorldFileError, read_jsonl
from molab.worlds.overseer import Overseer, StoredOverseer
from molab.worlds.problem import Problem, WorldError


def make_world(cfg):
    """The task world an ExperimentConfig describes; its overseer is `world.overseer`."""
    w, o = cfg.world, cfg.overseer
    if w.kind == "jsonl":
        return JsonlWorld(w.path, o.competence)
    return ArithmeticWorld(w.digits, w.operations, o.error_model, w.reverse_answers, w.pad_operands, w.n_diagnostic,
                           w.seed, o.competence)


__all__ = ["ArithmeticOverseer", "ArithmeticWorld", "JsonlWorld", "Overseer", "Problem", "StoredOverseer",
           "WorldError", "WorldFileError", "column_arithmetic", "make_world", "read_jsonl"]
