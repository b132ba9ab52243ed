"""Task worlds (problems with graded difficulty) and their overseers."""

from molab.worlds.arithmetic import ArithmeticWorld, column_arithmetic
from molab.worlds.jsonl import JsonlWorld, WorldFileError, read_jsonl
from molab.worlds.overseer import Overseer
from molab.worlds.problem import Problem


def make_world(cfg):
    """The task world an ExperimentConfig describes."""
    w, o = cfg.world, cfg.overseer
    if w.kind == "jsonl":
        return JsonlWorld(w.path)
    return ArithmeticWorld(w.digits, w.operations, o.error_model, w.reverse_answers, w.pad_operands, w.n_diagnostic,
                           w.seed)


__all__ = ["ArithmeticWorld", "JsonlWorld", "Overseer", "Problem", "WorldFileError", "column_arithmetic",
           "make_world", "read_jsonl"]
