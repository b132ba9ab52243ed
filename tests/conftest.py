"""The tiny oversight experiment, seconds long, shared by the end-to-end and sweep tests; a faster one run by
`molab demo` as a separate process, shared by the fault and executor tests."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TINY = ["seeds=2", "world.digits=2", "world.n_diagnostic=32", "model.width=64", "model.depth=2", "model.heads=2",
        "model.batch_size=64", "model.compile=false", "model.pretrain_steps=1200", "scheme.n_train=300",
        "finetune.steps=150", "finetune.lr=3e-3", "ceiling.seeds=2"]
# pretraining stops once both persona checks pass (at 1,000 steps on the CPUs tried); a budget of 800 left one CPU's
# base at 0.16 on the sycophantic persona, mid-anneal


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """(output folder, results) of the tiny experiment; its capable base is in `out / "base"`."""
    from molab.config import load_config
    from molab import run_experiment

    out = tmp_path_factory.mktemp("tiny")
    return out, run_experiment(load_config(overrides=TINY), out, progress=False)


FAST = [*TINY, "model.pretrain_steps=300", "finetune.steps=40", "ceiling.seeds=1", "scheme.n_train=100"]
SETS = [arg for item in FAST for arg in ("--set", item)]


def start(out: Path, workers: int = 2) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "molab", "demo", "--out", str(out), "--workers", str(workers),
                             *SETS], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    _, err = proc.communicate(timeout=600)
    return proc.returncode, err


@pytest.fixture(scope="session")
def uninterrupted(tmp_path_factory) -> Path:
    """The output folder of an uninterrupted run of the fast experiment."""
    out = tmp_path_factory.mktemp("uninterrupted")
    code, err = finish(start(out))
    assert code == 0, err
    return out


@pytest.fixture(scope="session")
def reference(uninterrupted) -> dict:
    """results.json of an uninterrupted run of the fast experiment."""
    return json.loads((uninterrupted / "results.json").read_text())


def with_base(out: Path, uninterrupted: Path) -> Path:
    """`out` holding the uninterrupted run's base, so a test that kills runs does not pretrain it again."""
    shutil.copytree(uninterrupted / "base", out / "base")
    return out
