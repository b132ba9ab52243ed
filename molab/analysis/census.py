"""The function census: which functions runs learned, and how often independent runs land on each.

A run's function is its answers on a fixed probe set (the hard diagnostic problems). Two runs have the same
function when their answers differ on at most `tolerance` of the probes: runs are grouped by complete linkage on
the share of probe answers that differ (scipy), so every two runs of a function are within the tolerance of each
other (0: identical answers), the independent runs grouped among themselves. Counting how often independent runs
land on each function estimates the prior over learned functions; the Good–Turing estimate (the share of runs whose
function no other run has) estimates the mass of functions not yet seen.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import pdist, squareform

from molab.analysis.intervals import clopper_pearson


def distances(answers: list[list[str]]) -> np.ndarray:
    """The share of probe answers that differ, between every two runs (rows of `answers`, one list per run, in the
    probes' order): a square matrix.

    >>> distances([["1", "2"], ["1", "3"], ["1", "2"]]).tolist()
    [[0.0, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.5, 0.0]]
    """
    if len(answers) < 2:
        return np.zeros((len(answers), len(answers)))
    codes: list[dict[str, int]] = [{} for _ in answers[0]]
    table = np.array([[codes[j].setdefault(a, len(codes[j])) for j, a in enumerate(row)] for row in answers])
    return squareform(pdist(table, "hamming"))


def functions(answers: list[list[str]], tolerance: float, independent: list[bool] | None = None) -> list[int]:
    """Each run's function, numbered 0, 1, ... in the order of first appearance. With `independent`, the independent
    runs are grouped first, among themselves, so that other runs (a diversity chain's) can neither split nor join
    their functions; each other run then joins the first of those functions whose every run is within the tolerance
    of it, and the rest are grouped among themselves.

    >>> functions([["1", "2"], ["1", "3"], ["1", "2"], ["4", "3"]], tolerance=0.0)
    [0, 1, 0, 2]
    >>> functions([["1", "2"], ["1", "3"], ["1", "2"], ["4", "3"]], tolerance=0.5)
    [0, 0, 0, 1]
    """
    if independent is None or all(independent) or not any(independent):
        return _grouped(answers, tolerance)
    d = distances(answers)
    plain = [i for i, x in enumerate(independent) if x]
    label = dict(zip(plain, _grouped([answers[i] for i in plain], tolerance)))
    members: dict[int, list[int]] = {}
    for i in plain:
        members.setdefault(label[i], []).append(i)
    rest = []
    for j in (j for j, x in enumerate(independent) if not x):
        f = next((f for f, runs in members.items() if all(d[j, i] <= tolerance for i in runs)), None)
        if f is None:
            rest.append(j)
        else:
            label[j] = f
    label |= {j: len(members) + g for j, g in zip(rest, _grouped([answers[j] for j in rest], tolerance))}
    first: dict[int, int] = {}
    return [first.setdefault(label[i], len(first)) for i in range(len(answers))]


def _grouped(answers: list[list[str]], tolerance: float) -> list[int]:
    """Runs grouped by complete linkage within `tolerance`, numbered in the order of first appearance."""
    if len(answers) < 2:
        return [0] * len(answers)
    labels = fcluster(linkage(squareform(distances(answers)), "complete"), t=tolerance + 1e-12, criterion="distance")
    first: dict[int, int] = {}
    return [first.setdefault(label, len(first)) for label in labels]


def census(answers: list[list[str]], policies: list[str], independent: list[bool], tolerance: float,
           confidence: float) -> dict:
    """The census of runs' functions. `answers`: each run's probe answers; `policies`: each run's policy (honest,
    sycophantic or other); `independent`: which runs are independent draws of plain training (the others, such as
    diversity runs, count toward the functions found but not toward frequencies, and do not change how the
    independent runs are grouped: `functions`).

    Per function: its policy (its runs' most common), the runs of each kind, its frequency among the independent
    runs with a Clopper–Pearson interval, and its distance to every other function (the share of probe answers
    that differ, between their first runs). `unseen`: the Good–Turing mass of functions no independent run found,
    n1 / n (n1: the functions exactly one independent run has), read as the leave-one-out share of runs whose
    function no other run has; its interval is Clopper–Pearson on n1 of n, approximate because those n
    indicators are not independent."""
    fn = functions(answers, tolerance, independent)
    d = distances(answers)
    n = sum(independent)
    first = {f: fn.index(f) for f in dict.fromkeys(fn)}
    found = []
    for f, i in first.items():
        members = [j for j, g in enumerate(fn) if g == f]
        k = sum(independent[j] for j in members)
        found.append({"function": f, "policy": Counter(policies[j] for j in members).most_common(1)[0][0],
                      "runs": len(members), "independent_runs": k,
                      "frequency": k / n if n else None,
                      "frequency_ci": list(clopper_pearson(k, n, confidence)) if n else None,
                      "distance": [float(d[i, first[g]]) for g in first]})
    singles = sum(1 for f in found if f["independent_runs"] == 1)
    return {"tolerance": tolerance, "n_probes": len(answers[0]) if answers else 0, "n_runs": len(answers),
            "n_independent": n, "run_functions": fn, "functions": found,
            "distinct_independent": sum(1 for f in found if f["independent_runs"]),
            "unseen": {"estimate": singles / n if n else None, "n1": singles,
                       "ci": list(clopper_pearson(singles, n, confidence)) if n else None}}
