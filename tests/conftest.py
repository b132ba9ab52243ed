"""The tiny oversight experiment, seconds long, shared by the end-to-end and sweep tests."""

import pytest

TINY = ["seeds=2", "world.digits=2", "world.n_diagnostic=32", "model.width=64", "model.depth=2", "model.heads=2",
        "model.batch_size=64", "model.compile=false", "model.pretrain_steps=800", "scheme.n_train=300",
        "finetune.steps=150", "ceiling.seeds=2"]


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """(output folder, results) of the tiny experiment; its capable base is in `out / "base"`."""
    from molab.config import load_config
    from molab import run_experiment

    out = tmp_path_factory.mktemp("tiny")
    return out, run_experiment(load_config(overrides=TINY), out, progress=False)
