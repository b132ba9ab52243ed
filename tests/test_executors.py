"""Determinism across executors: the same config gives the same runs in this process, in two local worker
processes, on a local Ray instance that molab starts and stops, and on a Ray cluster named by its address."""

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from conftest import FAST, SETS, finish, with_base
from test_faults import run_ids, wait_until

ray = pytest.importorskip("ray")


def ray_processes() -> list[str]:
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout.splitlines()
    return [line for line in ps if "raylet" in line or "gcs_server" in line]


def runs(out) -> tuple:
    """Each run's id, losses, thread count and answers, in a fixed order."""
    from molab import load_answers, load_results

    df = load_results(out).set_index("run_id").sort_index()
    losses = df[[c for c in df.columns if c.startswith("loss.")]]
    threads = [json.loads(c)["threads"] for c in df["config"]]
    answers = load_answers(out).sort_values(["run_id", "condition", "prompt"])
    return list(df.index), losses, threads, answers[["run_id", "condition", "prompt", "answer"]].values.tolist()


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """A one-node Ray cluster started as a user would (`ray start --head`), stopped afterwards; its address."""
    if ray_processes():
        pytest.skip("a Ray instance is already running on this machine")
    env = os.environ | {"RAY_AUTH_MODE": "disabled"}  # token authentication is the cluster owner's choice
    port = "6391"
    cli = shutil.which("ray", path=os.path.dirname(sys.executable))
    subprocess.run([cli, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false"],
                   env=env, check=True, capture_output=True)
    yield f"127.0.0.1:{port}"
    subprocess.run([cli, "stop", "--force"], capture_output=True)


def test_every_executor_gives_identical_runs(tiny, tmp_path, ray_head):
    """One thread per run everywhere; the thread count is recorded with each run. The local Ray instance is
    gone when molab returns."""
    from molab import run_experiment
    from molab.config import load_config
    from molab.execution import Executor

    base = f"base={tiny[0] / 'base'}"
    cfg = load_config(overrides=[*FAST, base])
    executors = {"one": Executor(threads=1), "two": Executor(workers=2, threads=1),
                 "ray": Executor("ray", threads=1)}
    before = set(ray_processes())
    for name, executor in executors.items():
        run_experiment(cfg, tmp_path / name, executor, progress=False)
    assert not ray.is_initialized() and set(ray_processes()) == before
    cli = [sys.executable, "-m", "molab", "demo", "--out", str(tmp_path / "cluster"), *SETS, "--set", base,
           "--executor", "ray", "--address", ray_head, "--threads", "1"]
    done = subprocess.run(cli, capture_output=True, text=True, env=os.environ | {"RAY_AUTH_MODE": "disabled"})
    assert done.returncode == 0, done.stderr[-2000:]
    one = runs(tmp_path / "one")
    assert set(one[2]) == {1} and len(one[0]) >= 8
    for name in ("two", "ray", "cluster"):
        other = runs(tmp_path / name)
        assert other[0] == one[0] and other[1].equals(one[1]) and other[2] == one[2] and other[3] == one[3], name
    results = [json.loads((tmp_path / name / "results.json").read_text()) for name in ("one", "cluster")]
    for key in ("policy_counts", "p_sycophantic", "rates", "ceilings", "controls"):
        assert results[0][key] == results[1][key], key


def test_on_a_machine_with_several_gpus_each_local_worker_sees_one_in_turn(tmp_path):
    """Local workers take the machine's GPUs in turn (CUDA_VISIBLE_DEVICES, set before torch sets up CUDA); with one
    GPU or none the workers see what the driver sees. The GPUs are names here: CUDA_VISIBLE_DEVICES is all a worker
    reads of them. Each task waits until both workers have one, so that the two tasks run in two workers."""
    from molab.execution import _pool

    both = ('touch "$0/$PPID"; i=0; while [ "$(ls "$0" | wc -l)" -lt 2 ] && [ $i -lt 600 ]; do sleep 0.05; '
            'i=$((i + 1)); done; echo "$PPID:${CUDA_VISIBLE_DEVICES-unset}"')
    for i, (gpus, expected) in enumerate([(["3", "5"], {"3", "5"}),
                                          ([], {os.environ.get("CUDA_VISIBLE_DEVICES", "unset")})]):
        (tmp_path / str(i)).mkdir()
        with _pool(2, 1, gpus) as pool:
            out = pool.map(subprocess.check_output, [["sh", "-c", both, str(tmp_path / str(i))]] * 2)
            workers, seen = zip(*(line.decode().strip().split(":", 1) for line in out))
        assert len(set(workers)) == 2 and set(seen) == expected, gpus


def test_on_a_cluster_with_gpus_each_ray_task_is_shown_its_own(monkeypatch):
    """Ray gives a task that asks for no GPU none of its own (by Ray's version it sees none, CUDA_VISIBLE_DEVICES
    empty, or every GPU of its node, and torch puts every task on the first), so on a cluster with GPUs each of
    molab's tasks that uses one asks for one by default, or for the share `--gpus-per-task` gives, sees only that,
    and runs in a fresh worker process (a reused one would keep the GPU its first task set CUDA up on); asking for
    more GPUs than a node has is refused. The tasks it runs at once (`workers`) split stacked runs. The cluster's
    two GPUs are declared, not real: Ray schedules by them and sets CUDA_VISIBLE_DEVICES all the same."""
    from molab.execution import Executor, ExecutorError, run_all

    def seen(_):
        return os.environ.get("CUDA_VISIBLE_DEVICES"), [str(i) for i in ray.get_gpu_ids()], os.getpid()

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)  # Ray declares no more GPUs than it lists
    ray.init(address="local", num_cpus=2, num_gpus=2, include_dashboard=False, logging_level="ERROR",
             log_to_driver=False)
    try:
        for gpus in (None, 0.5):
            with Executor("ray", threads=1, gpus=gpus).started() as executor:
                assert executor.workers == 2  # its 2 CPUs, 1 a task (the GPUs would allow 2, or 4 halves)
                got = list(run_all(seen, range(4), executor))
            assert all(len(ids) == 1 and visible == ids[0] in ("0", "1") for visible, ids, _ in got), gpus
            assert len({pid for *_, pid in got}) == 4, gpus  # a fresh worker process for each task on a GPU
        with Executor("ray", threads=1).started() as executor:  # a task that uses no GPU asks for none
            got = list(run_all(seen, range(4), executor, on_gpu=lambda task: task % 2 == 0))
        assert [len(ids) for _, ids, _ in got if ids] == [1, 1] and sum(not ids for _, ids, _ in got) == 2
        with Executor("ray", threads=1, gpus=0).started() as executor:  # what molab asked for before it looked
            assert all(not ids and visible in (None, "") for visible, ids, _ in run_all(seen, range(4), executor))
        with pytest.raises(ExecutorError, match="--gpus-per-task: 3, but no node of the Ray cluster at a local "
                                                "instance has so many GPUs"):
            with Executor("ray", gpus=3).started():
                pass
    finally:
        ray.shutdown()


def ray_task_pids() -> list[int]:
    """Ray worker processes running a task now (Ray titles them `ray::_ray_task`; an idle one `ray::IDLE`)."""
    ps = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout.splitlines()
    return [int(line.split()[0]) for line in ps if line.split()[1:2] == ["ray::_ray_task"]]


def test_a_killed_ray_worker_loses_only_its_task_and_the_same_command_runs_it(reference, uninterrupted, tmp_path):
    out = with_base(tmp_path / "out", uninterrupted)
    cli = [sys.executable, "-m", "molab", "demo", "--out", str(out), *SETS, "--executor", "ray"]
    proc = subprocess.Popen(cli, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: len(run_ids(out)) >= 1 and ray_task_pids(), proc)
    os.kill(ray_task_pids()[0], signal.SIGKILL)
    code, err = finish(proc)
    assert code == 1 and err.strip().splitlines()[-1].startswith("molab: error: a worker process died"), err
    before = set(run_ids(out))
    done = subprocess.run(cli, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    after = run_ids(out)
    assert before < set(after) and len(after) == len(set(after))
    assert json.loads((out / "results.json").read_text())["n_runs"] == reference["n_runs"]
