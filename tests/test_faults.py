"""Faults of long jobs: a driver or a worker killed with kill -9, a second process on the same folder.

Each test runs `molab demo` as a separate process on a small config, kills it at a chosen point, runs the same
command again, and compares the outcome with an uninterrupted run: no finished run lost, none duplicated, the
same results.json. And a machine busy with other work: the OpenMP thread wait molab sets.
"""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import SETS, finish, start, with_base
from molab.cli import main
from molab.store import holding

def run_ids(out: Path) -> list[str]:
    if not (out / "molab.sqlite").exists():
        return []
    try:
        with sqlite3.connect(out / "molab.sqlite", timeout=30) as db:
            return [r[0] for r in db.execute("SELECT run_id FROM runs")]
    except sqlite3.OperationalError:   # the table is not there yet
        return []


def wait_until(condition, proc: subprocess.Popen, timeout: float = 300) -> None:
    end = time.time() + timeout
    while not condition():
        assert proc.poll() is None, f"molab ended before the point to kill it: {proc.stderr.read()[-2000:]}"
        assert time.time() < end, "timed out waiting for the point to kill molab"
        time.sleep(0.1)


def resume_and_compare(out: Path, reference: dict) -> None:
    """Run the same command again to the end: every run recorded before is still there, none twice, and
    results.json is the uninterrupted run's."""
    before = set(run_ids(out))
    code, err = finish(start(out))
    assert code == 0, err
    after = run_ids(out)
    assert before <= set(after) and len(after) == len(set(after))
    assert json.loads((out / "results.json").read_text()) == reference


def workers_of(pid: int) -> list[int]:
    """The pool's worker processes of `pid` (not multiprocessing's resource tracker)."""
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out if "spawn_main" in _cmdline(int(p))]


def _cmdline(pid: int) -> str:
    """A process's command line; "" once it has ended (a short-lived child, gone between ps and here)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_text(errors="ignore")
    except FileNotFoundError:
        return ""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_killing_the_driver_loses_nothing_duplicates_nothing_and_leaves_no_workers(reference, tmp_path):
    """kill -9 during pretraining, then again once runs are being recorded; the third time runs to the end."""
    out = tmp_path / "out"
    for point in (lambda: (out / "data" / "diagnostic.jsonl").exists(), lambda: len(run_ids(out)) >= 1):
        proc = start(out)
        wait_until(point, proc)
        pool = workers_of(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        time.sleep(3)   # a worker notices its driver is gone within a second
        assert not [pid for pid in pool if alive(pid)]
    resume_and_compare(out, reference)


def test_a_killed_worker_stops_the_sweep_in_one_line_and_the_same_command_resumes(reference, uninterrupted, tmp_path):
    out = with_base(tmp_path / "out", uninterrupted)
    proc = start(out)
    wait_until(lambda: len(run_ids(out)) >= 1 and workers_of(proc.pid), proc)
    os.kill(workers_of(proc.pid)[0], signal.SIGKILL)
    code, err = finish(proc)
    lines = err.strip().splitlines()
    assert code == 1 and lines[-1].startswith("molab: error: a worker process died"), err
    resume_and_compare(out, reference)


def test_a_second_molab_on_the_same_folder_refuses_and_a_dead_holder_blocks_nobody(tmp_path, capsys):
    out = tmp_path / "out"
    proc = start(out, workers=1)
    wait_until(lambda: (out / "molab.lock").exists() and (out / "molab.lock").read_text(), proc)
    capsys.readouterr()
    assert main(["demo", "--out", str(out), *SETS]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"molab: error: {out}: in use by another molab process (pid {proc.pid}")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (out / "molab.lock").read_text()   # the holder's name is left behind, its lock is not
    with holding(out):
        pass


def test_a_report_refuses_while_a_run_holds_the_folder(tiny, capsys):
    out, _ = tiny
    before = (out / "results.json").read_bytes()
    with holding(out):   # as a molab run does
        assert main(["report", str(out)]) == 2
    assert "in use by another molab process" in capsys.readouterr().err
    assert (out / "results.json").read_bytes() == before


@pytest.mark.parametrize("given, expected", [
    ({}, ("PASSIVE", "1000")),  # spin briefly, then sleep
    ({"OMP_WAIT_POLICY": "ACTIVE"}, ("ACTIVE", None)),  # the user's choice, not overridden by a spin count
    ({"GOMP_SPINCOUNT": "5"}, (None, "5")),
])
def test_openmp_waits_as_the_user_set_it_or_spins_briefly(given, expected):
    """molab's thread wait (molab/__init__.py), read by OpenMP when torch loads: set only where the user set none."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")} | given
    code = "import os, molab; print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == [str(x) for x in expected]
