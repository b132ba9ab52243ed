"""molab: model-organism experiments on the inductive biases of language models under oversight."""

import os

__version__ = "0.1.0"

# OpenMP threads that spin while they wait for each other lose every time slice another process takes: beside one
# busy process, training fell 16- to 26-fold. Threads that sleep at once wake too late for a small model's short
# kernels: alone, a finetuning step of the demo's model took twice as long. So they spin 1,000 times (GNU OpenMP's
# count, which torch's Linux wheels use; microseconds), then sleep: alone about as fast as spinning, beside a busy
# process 2.1-2.6x slower (bench/busy_machine.py). Only where the user set neither; only if set before torch loads.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ |= {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "1000"}


def load_results(out, eval=None):
    """Every run recorded under `out` as a pandas DataFrame, scored from its stored answers (see molab.store)."""
    from molab.store import load_results as _load

    return _load(out, eval)


def load_answers(out, run_ids=None):
    """Every stored answer under `out` (of the runs `run_ids` only, when given): one row per run × problem ×
    condition (see molab.store)."""
    from molab.store import load_answers as _load

    return _load(out, run_ids)


def run_experiment(cfg, out, executor=None, progress: bool = True) -> dict:
    """Run (or resume) the experiment `cfg` describes under `out`, its runs on `executor` (a
    molab.execution.Executor; default: in this process). See molab.sweep."""
    from molab.execution import Executor
    from molab.sweep import run_experiment as _run

    return _run(cfg, out, executor or Executor(), progress)


__all__ = ["__version__", "load_answers", "load_results", "run_experiment"]
