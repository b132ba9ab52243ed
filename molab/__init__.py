"""molab: model-organism experiments on the inductive biases of language models under oversight."""

__version__ = "0.1.0"


def load_results(out, eval=None):
    """Every run recorded under `out` as a pandas DataFrame, scored from its stored answers (see molab.store)."""
    from molab.store import load_results as _load

    return _load(out, eval)


def load_answers(out):
    """Every stored answer under `out`: one row per run × problem × condition (see molab.store)."""
    from molab.store import load_answers as _load

    return _load(out)


def run_experiment(cfg, out, workers: int = 1, progress: bool = True) -> dict:
    """Run (or resume) the experiment `cfg` describes under `out` (see molab.sweep)."""
    from molab.sweep import run_experiment as _run

    return _run(cfg, out, workers, progress)


__all__ = ["__version__", "load_answers", "load_results", "run_experiment"]
