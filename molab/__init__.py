"""molab: model-organism experiments on the inductive biases of language models under oversight."""

__version__ = "0.1.0"


def load_results(out):
    """Every run recorded under `out` as a pandas DataFrame (see molab.store)."""
    from molab.store import load_results as _load

    return _load(out)


__all__ = ["__version__", "load_results"]
