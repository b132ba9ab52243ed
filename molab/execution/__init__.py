"""Executors: hand a list of independent runs to this process or to local worker processes.

`run_all(fn, tasks, workers)` yields `fn(task)` for every task, as each finishes. With one
worker the runs happen in this process (easiest to debug); with more, each worker is a fresh
process pinned to its share of the CPU threads.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def run_all(fn: Callable, tasks: Iterable, workers: int = 1) -> Iterator:
    tasks = list(tasks)
    if workers <= 1 or len(tasks) <= 1:
        yield from map(fn, tasks)
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_worker, initargs=(threads,)) as pool:
        for future in as_completed([pool.submit(fn, t) for t in tasks]):
            yield future.result()
