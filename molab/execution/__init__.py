"""Executors: hand a list of independent runs to this process or to local worker processes.

`run_all(fn, tasks, workers)` yields `fn(task)` for every task, as each finishes. With one
worker the runs happen in this process (easiest to debug); with more, each worker is a fresh
process pinned to its share of the CPU threads, which ends itself when the process that started it
dies (a killed driver leaves no workers behind).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool


class WorkerDied(RuntimeError):
    """A worker process ended without finishing its task (killed, or out of memory); one line."""


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    parent = os.getppid()

    def watch() -> None:  # once the parent is gone the worker is re-parented: end it mid-run, results unrecorded
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def run_all(fn: Callable, tasks: Iterable, workers: int = 1) -> Iterator:
    tasks = list(tasks)
    if workers <= 1 or len(tasks) <= 1:
        yield from map(fn, tasks)
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_worker, initargs=(threads,)) as pool:
        futures = [pool.submit(fn, t) for t in tasks]
        for future in as_completed(futures):
            try:
                yield future.result()
            except BrokenProcessPool:
                left = sum(f.cancelled() or not f.done() or f.exception() is not None for f in futures)
                raise WorkerDied(f"a worker process died (killed, or out of memory); {left} of {len(tasks)} tasks "
                                 "were not recorded; run the same command again to resume them") from None
