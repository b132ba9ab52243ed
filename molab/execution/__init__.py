"""Executors: hand a list of independent runs to this process, to local worker processes, or to Ray.

`run_all(fn, tasks, executor)` yields `fn(task)` for every task, as each finishes; the caller (the
driver) alone writes what comes back to the store. An `Executor` says where the runs go:

- `workers = 1` (the default): in this process, easiest to debug;
- `workers = N`: N fresh local processes, each ending itself when the process that started it dies
  (a killed driver leaves no workers behind), and on a machine with several GPUs each seeing one of them, in
  turn; inside `Executor.started()` one pool serves every `run_all`, so the workers import torch and set up
  their device once per experiment, not once per batch of runs;
- `kind = "ray"`: one Ray task per item, on the cluster at `address`, or on a local Ray instance that
  molab starts and stops. On a cluster with GPUs each task asks for `gpus` of them (default 1; a fraction
  shares one GPU among tasks), and Ray shows it only those. Tasks carry the experiment's setup and the base's
  *path*: on a cluster of several machines the output folder must be on a filesystem every node sees (a shared
  path), and molab must be installed on every node.

Every run uses `threads` torch threads (default: torch's own in this process, the machine's cores
shared among several workers, 1 per Ray task), and the count is recorded with the run: float sums may
differ with the thread count, so identical runs are expected only at equal thread counts. Importing
molab sets OpenMP's wait policy (a short spin, then sleep; see molab/__init__.py); worker processes and Ray tasks
inherit it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool

KINDS = ("local", "ray")


class WorkerDied(RuntimeError):
    """A worker process ended without finishing its task (killed, or out of memory); one line."""


class ExecutorError(ValueError):
    """An executor that cannot be used as asked (a bad --workers, a Ray address that does not answer); one line."""


@dataclasses.dataclass(frozen=True)
class Executor:
    kind: str = "local"
    workers: int = 1  # local: processes (1 = this process); ray: the tasks the cluster runs at once, by started()
    threads: int | None = None  # torch threads per run; None: the cores shared among the workers, 1 per Ray task
    address: str | None = None  # ray: an existing cluster ("HOST:PORT"); None starts a local instance
    stack: int = 1  # LM runs trained together in one task, their weights stacked (molab.learners.stacked)
    gpus: float | None = None  # ray: GPUs each task asks for; None: 1 where the cluster has GPUs, else 0 (started())
    pool: ProcessPoolExecutor | None = dataclasses.field(default=None, compare=False, repr=False)  # set by started()

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ExecutorError(f"--executor: {self.kind!r}; one of {', '.join(KINDS)}")
        if self.workers < 1:
            raise ExecutorError(f"--workers: {self.workers}; at least 1 (1 runs everything in this process)")
        if self.threads is not None and self.threads < 1:
            raise ExecutorError(f"--threads: {self.threads}; at least 1")
        if self.stack < 1:
            raise ExecutorError(f"--stack: {self.stack}; at least 1 (1 trains every run alone)")
        if self.address is not None and self.kind != "ray":
            raise ExecutorError("--address: only with --executor ray")
        if self.gpus is not None and self.kind != "ray":
            raise ExecutorError("--gpus-per-task: only with --executor ray (local workers take this machine's GPUs in "
                                "turn)")
        if self.gpus is not None and not (0 <= self.gpus <= 1 or self.gpus > 1 and float(self.gpus).is_integer()):
            raise ExecutorError(f"--gpus-per-task: {self.gpus:g}; a share of one GPU (0 to 1) or a whole number")

    @contextlib.contextmanager
    def started(self):
        """The executor, ready for `run_all` (Ray: connected to the cluster at `address`, or a local instance
        started, and stopped again at the end). Refuses in one line, before anything is written, a Ray that is
        not installed or an address where no Ray cluster answers (within 10 s for a closed port; Ray itself
        would retry such an address for minutes)."""
        if self.kind != "ray":
            if self.workers <= 1:
                yield self
                return
            with _pool(self.workers, self.run_threads) as pool:  # workers start at the first task, not here
                yield dataclasses.replace(self, pool=pool)
            return
        try:
            import ray
        except ImportError:
            raise ExecutorError("--executor ray: Ray is not installed; pip install 'molab[ray]'") from None
        if self.address:
            check_address(self.address)
        if ray.is_initialized():  # the caller's Ray session: use it, leave it running
            yield self._settled()
            return
        env = {"env_vars": {k: os.environ[k] for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if k in os.environ}}
        try:
            ray.init(address=self.address or "local", include_dashboard=False, logging_level="ERROR",
                     log_to_driver=False, runtime_env=env)
        except (ConnectionError, RuntimeError) as e:
            said = [str(e)]
            while e.__cause__ is not None:
                e = e.__cause__
                said.append(str(e))
            why = said[-1].strip().partition(". ")[0]
            hint = ("; a cluster with token authentication also needs RAY_AUTH_MODE=token here"
                    if "InvalidAuthToken" in "".join(said) else "")
            raise ExecutorError(f"--executor ray: could not connect to Ray at {self.address or 'a local instance'} "
                                f"({why}){hint}") from None
        try:
            yield self._settled()
        finally:
            ray.shutdown()

    def _settled(self) -> Executor:
        """This Ray executor settled against the cluster: `gpus`, by default 1 a task where it has GPUs, else 0
        (refused in one line where no node has so many: its tasks would wait for ever), and `workers`, the tasks it
        runs at once (its CPUs over the threads a task asks for, and no more than its GPUs over `gpus`), so that
        runs are stacked into enough tasks to keep them all busy. Ray gives a task that asks for no GPU none of its
        own: by Ray's version it sees none (CUDA_VISIBLE_DEVICES empty) or every GPU of its node, where torch would
        put every task on the first."""
        import ray

        resources = ray.cluster_resources()
        has = resources.get("GPU", 0)
        most = max((node["Resources"].get("GPU", 0) for node in ray.nodes() if node["Alive"]), default=0)
        gpus = (1.0 if has else 0.0) if self.gpus is None else self.gpus
        if gpus > most:
            where = self.address or "a local instance"
            raise ExecutorError(f"--gpus-per-task: {gpus:g}, but no node of the Ray cluster at {where} has so many "
                                f"GPUs (at most {most:g})")
        at_once = resources.get("CPU", 1) / self.run_threads
        return dataclasses.replace(self, gpus=gpus, workers=max(1, int(min(at_once, has / gpus if gpus else at_once))))

    @property
    def run_threads(self) -> int | None:
        """torch threads per run: `threads` if given, else 1 per Ray task, the cores shared among several
        workers, or (one worker) torch's own default (None)."""
        if self.threads is not None or self.kind == "ray":
            return self.threads or 1
        return max(1, (os.cpu_count() or 1) // self.workers) if self.workers > 1 else None


def run_all(fn: Callable, tasks: Iterable, executor: Executor = Executor(),
            on_gpu: Callable[[object], bool] = lambda task: True) -> Iterator:
    """`fn(task)` for every task, as each finishes. On Ray, a task for which `on_gpu(task)` is false asks for no
    GPU (it would only keep one from a task that uses it)."""
    tasks = list(tasks)
    if executor.kind == "ray":
        yield from _ray(fn, tasks, executor.run_threads, executor.gpus or 0, on_gpu)
    elif executor.workers <= 1 or len(tasks) <= 1:
        yield from _here(fn, tasks, executor.run_threads)
    elif executor.pool is not None:
        yield from _processes(fn, tasks, executor.pool)
    else:
        with _pool(executor.workers, executor.run_threads) as pool:
            yield from _processes(fn, tasks, pool)


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """torch's thread count in this process set to `threads` (None: left as it is), restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _here(fn: Callable, tasks: list, threads: int | None) -> Iterator:
    with torch_threads(threads):
        yield from map(fn, tasks)


def _init_worker(threads: int, gpus: list[str], started) -> None:
    """A worker's set-up: its torch threads; on a machine with several GPUs, one of them (the workers take them in
    turn, counted by `started`); its bars off; and its end when the driver's."""
    if len(gpus) > 1:
        with started.get_lock():
            n, started.value = started.value, started.value + 1
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[n % len(gpus)]  # before torch sets up CUDA
    import torch
    from tqdm import tqdm

    torch.set_num_threads(threads)
    # Workers draw no bars; tqdm's default lock is a named semaphore, reported as leaked when a worker is killed.
    tqdm.set_lock(threading.RLock())
    parent = os.getppid()

    def watch() -> None:  # once the parent is gone the worker is re-parented: end it mid-run, results unrecorded
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _pool(workers: int, threads: int, gpus: list[str] | None = None) -> ProcessPoolExecutor:
    """`workers` fresh processes; with several GPUs (`gpus`, as CUDA_VISIBLE_DEVICES names them; default: this
    machine's), each worker sees one, in turn."""
    context = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                               initargs=(threads, _gpus() if gpus is None else gpus, context.Value("i", 0)))


def _gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES names them (none without CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return visible.split(",") if visible else [str(i) for i in range(torch.cuda.device_count())]


def _processes(fn: Callable, tasks: list, pool: ProcessPoolExecutor) -> Iterator:
    futures = [pool.submit(fn, t) for t in tasks]
    for future in as_completed(futures):
        try:
            yield future.result()
        except BrokenProcessPool:
            left = sum(f.cancelled() or not f.done() or f.exception() is not None for f in futures)
            raise _died(left, len(tasks)) from None


def _died(left: int, total: int) -> WorkerDied:
    return WorkerDied(f"a worker process died (killed, or out of memory); {left} of {total} tasks were not "
                      "recorded; run the same command again to resume them (where memory ran out: with fewer "
                      "--workers, or a smaller --stack)")


def check_address(address: str, timeout: float = 10.0) -> None:
    """Refuse, in one line and within `timeout` seconds, a Ray address where nothing answers."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ExecutorError(f"--address: {address!r}; expected HOST:PORT of a Ray cluster's head (or ray://HOST:PORT)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise ExecutorError(f"--address: nothing answers at {address} ({e.strerror or e}); is the Ray head "
                            "running (`ray start --head`)?") from None


def _ray(fn: Callable, tasks: list, threads: int, gpus: float, on_gpu: Callable[[object], bool]) -> Iterator:
    """Inside `Executor.started()`: one Ray task per item, each asking for `threads` CPUs and, where `on_gpu`, `gpus`
    GPUs. A task on a GPU runs in a fresh worker process (Ray's way for tasks that ask for GPUs in `ray.remote`): a
    reused one would keep the GPU its first task set up CUDA on, whichever GPU Ray gives the next."""
    import ray

    cpu = ray.remote(num_cpus=threads, max_retries=0)(_ray_task)
    gpu = ray.remote(num_cpus=threads, num_gpus=gpus, max_retries=0)(_ray_task) if gpus else cpu
    pending = [(gpu if on_gpu(t) else cpu).remote(fn, t, threads) for t in tasks]
    lost = 0
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        try:
            yield ray.get(ready[0])
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError, ray.exceptions.OutOfMemoryError):
            lost += 1  # the others go on; the lost tasks run again on resume
    if lost:
        raise _died(lost, len(tasks))


def _ray_task(fn: Callable, task, threads: int):
    import torch

    torch.set_num_threads(threads)  # a Ray worker process is reused across tasks
    return fn(task)
