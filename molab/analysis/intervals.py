"""Intervals for probabilities estimated from counts of runs (one base, or several that may differ) and for
means of per-run shares."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.optimize import brentq, minimize_scalar
from scipy.stats import beta, betabinom, binom, chi2, t


def clopper_pearson(k: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper–Pearson) interval for a binomial probability after k successes in n trials (k and n may be
    fractional: an effective sample size and its successes).

    >>> clopper_pearson(0, 16)  # no sycophantic run in 16: P could still be up to ~0.21
    (0.0, 0.2059...)
    """
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"clopper_pearson: need 0 <= k <= n and n > 0, got k={k}, n={n}")
    alpha = 1 - confidence
    low = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


def _betabinom_loglik(mu: float, rho: float, k: np.ndarray, n: np.ndarray) -> float:
    """Log-likelihood of per-base counts under a beta-binomial with mean `mu` and intra-base correlation `rho`
    (rho = 0 is the binomial: bases do not differ)."""
    if rho < 1e-9:
        return float(binom.logpmf(k, n, mu).sum())
    a, b = mu * (1 - rho) / rho, (1 - mu) * (1 - rho) / rho
    return float(betabinom.logpmf(k, n, a, b).sum())


def _profile(mu: float, k: np.ndarray, n: np.ndarray) -> tuple[float, float]:
    """(best log-likelihood over rho at this mean, that rho)."""
    res = minimize_scalar(lambda r: -_betabinom_loglik(mu, r, k, n), bounds=(0.0, 0.999), method="bounded")
    at_zero = _betabinom_loglik(mu, 0.0, k, n)
    return (-res.fun, float(res.x)) if -res.fun > at_zero else (at_zero, 0.0)


def _most_rho(k: np.ndarray, n: np.ndarray, rho: float, cut: float) -> float:
    """The largest intra-base correlation whose profile log-likelihood (best over the mean) reaches `cut`, from the
    fitted `rho` up (1 where even 0.999 does)."""
    def at(r: float) -> float:
        return -minimize_scalar(lambda m: -_betabinom_loglik(m, r, k, n), bounds=(1e-6, 1 - 1e-6),
                                method="bounded").fun - cut
    if at(0.999) >= 0:
        return 1.0
    return rho if at(rho) <= 0 else float(brentq(at, rho, 0.999))


def pooled_probability(k, n, confidence: float = 0.95) -> dict:
    """P(a run follows a policy), pooled over bases that may differ: a beta-binomial fitted to the per-base counts
    `k` of `n` runs. Returns the mean over bases (`estimate`), the fitted intra-base correlation `rho` (0: the bases
    look alike; near 1: each base decides all its runs) with the between-base standard deviation of P, `spread`
    (both None where the counts cannot tell: every run the same way, or one run a base), and `ci`, a Clopper–Pearson
    interval on the runs' effective number (Korn and Graubard's, `effective_runs`): the runs divided by the design
    effect of the largest intra-base correlation the counts allow at the interval's confidence (its profile
    likelihood), from all of them when the bases surely look alike down to the bases' number (Kish's, for bases of
    unequal size) when each may decide its runs. Where the counts cannot tell rho, that is 1: 0 of 48 runs on 3
    bases is 0 to 0.71, as 0 of 3 bases would be, since three bases cannot rule out a fourth that decides the other
    way; 1 of 48 is 0 to 0.65, and 47 honest runs of 48 are 0.35 to 1, not a tight interval beside a wide one.

    >>> r = pooled_probability([0, 8, 0], [8, 8, 8])   # one base of three makes every run sycophantic
    >>> round(r["estimate"], 3), r["rho"] > 0.9, r["ci"][1] > 0.8
    (0.333, True, True)
    >>> pooled_probability([2, 2, 2], [8, 8, 8])["rho"]
    0.0
    >>> [round(x, 3) for x in pooled_probability([0, 0, 0], [16, 16, 16])["ci"]]
    [0.0, 0.708]
    """
    k, n = np.asarray(k, float), np.asarray(n, float)
    if len(k) == 0 or n.sum() == 0:
        raise ValueError("pooled_probability: no runs")
    told = 0 < k.sum() < n.sum() and (n > 1).any()  # else the likelihood is flat in rho
    mu, rho, most = float(k.sum() / n.sum()), 1.0, 1.0  # most: the rho the interval takes
    if told:
        eps = 1e-6
        grid = np.linspace(eps, 1 - eps, 41)
        prof = np.array([_profile(m, k, n)[0] for m in grid])
        i = int(prof.argmax())
        res = minimize_scalar(lambda m: -_profile(m, k, n)[0], bounds=(grid[max(i - 1, 0)], grid[min(i + 1, 40)]),
                              method="bounded")
        mu = float(res.x) if -res.fun >= prof[i] else float(grid[i])
        best, rho = _profile(mu, k, n)
        most = _most_rho(k, n, rho, best - chi2.ppf(confidence, 1) / 2)
    effective = n.sum() ** 2 / (n * (1 + (n - 1) * most)).sum()  # runs / design effect
    low, high = clopper_pearson(mu * effective, effective, confidence)
    return {"estimate": mu, "ci": [low, high], "rho": round(rho, 6) if told else None,
            "spread": float(np.sqrt(rho * mu * (1 - mu))) if told else None, "effective_runs": float(effective),
            "k": int(k.sum()), "n": int(n.sum())}


def mean_interval(values, groups=None, confidence: float = 0.95, within=(-math.inf, math.inf),
                  problems: int | None = None) -> dict:
    """Mean of per-run values with a t interval; with `groups` (each run's base) of at least two distinct values,
    the mean of the groups' means with a t interval over them (groups - 1 degrees of freedom): each base counts
    once, however many of its runs finished, and runs of one base do not count as independent (a cluster-robust
    interval around the runs' mean covered 78% at 95% with bases of 16, 2 and 2 runs; with equal groups the two
    are the same). The interval is cut to `within`, the values' possible range (a share's t interval over few bases
    can run past 0 or 1). One value has no interval (`ci` None), values that are all the same one of zero width:
    the t interval covers the seeds (and bases), not the problems the shares are taken over.

    Where each value is a share of `problems` answers, the interval is never narrower than those problems'
    Clopper–Pearson interval, so that it covers their draw too, and one run, or runs that all agree, still get a
    width. Simulated at 95% from runs × problems tables of 0/1 answers (400 experiments in each of 9 settings: runs
    differing by a standard deviation of 0.2 to 1 in log odds, problems by 1 to 4, 2 to 16 runs of 64 or 256
    problems), this covered the mean over runs and problems 0.96 to 1.00; the t interval alone 0.35 to 0.98 (0.35
    where problems differ most, as greedy answers do: each problem right or wrong for nearly every run);
    `two_way_interval`, which needs every answer, 0.89 to 0.97, at 0.4 to 1.1 times this one's width.

    >>> r = mean_interval([0.2, 0.4, 0.6, 0.8])
    >>> round(r["mean"], 2), r["ci"][0] < 0.5 < r["ci"][1]
    (0.5, True)
    >>> mean_interval([0.1, 0.1, 0.1, 0.9], groups=[0, 0, 0, 1])["mean"]   # two bases: the mean of their means
    0.5
    >>> mean_interval([1.0] * 16, problems=64)["ci"]   # every run right on all 64: the problems' interval
    [0.9439..., 1.0]
    """
    y = np.asarray(values, float)
    if len(y) == 0:
        return {"mean": None, "ci": None, "n": 0}
    if groups is not None and len(set(groups)) >= 2:
        y = pd.Series(y).groupby(np.asarray(groups)).mean().to_numpy()
    mean, ci = float(y.mean()), None  # one value: nothing varied between runs
    if len(y) > 1 and np.ptp(y) == 0:
        ci = [mean, mean]
    elif len(y) > 1:
        low, high = t.interval(confidence, len(y) - 1, loc=mean, scale=float(y.std(ddof=1) / math.sqrt(len(y))))
        ci = [float(max(low, within[0])), float(min(high, within[1]))]
    if problems:  # never narrower than the draw of problems
        low, high = clopper_pearson(round(mean * problems), problems, confidence)
        ci = [low, high] if ci is None else [min(ci[0], low), max(ci[1], high)]
    return {"mean": mean, "ci": ci, "n": len(values)}


def two_way_interval(hits, confidence: float = 0.95) -> dict:
    """Mean of a runs × problems table of 0/1 outcomes (e.g. whether each run's answer to each hard problem unlocks)
    with an interval over both of its draws, the runs' seeds and the problems of the diagnostic set: the mean's
    variance taken as the run means' variance over the runs plus the problem means' over the problems (Owen's
    pigeonhole estimate, which a bootstrap resampling runs and problems together approximates), with t on
    Satterthwaite's degrees of freedom, so that few runs give a wide interval (a percentile bootstrap covered 83% at
    95% with 4 runs). With one run, or runs that all answer alike, it covers the problems alone; where no outcome
    varies, a Clopper–Pearson interval over the problems. Cut to [0, 1].

    >>> r = two_way_interval([[1, 0, 1, 1], [1, 1, 0, 1]])
    >>> r["mean"], r["ci"][0] < 0.75 < r["ci"][1], r["runs"], r["problems"]
    (0.75, True, 2, 4)
    >>> two_way_interval([[0, 0, 0, 0]] * 3)["ci"]   # nothing varies: the problems are the units
    [0.0, 0.6023...]
    """
    x = np.asarray(hits, float)
    if x.size == 0:
        return {"mean": None, "ci": None, "runs": len(x), "problems": 0}
    mean, (runs, problems) = float(x.mean()), x.shape
    parts = [(x.mean(axis).var(ddof=1) / size, size - 1) for axis, size in ((1, runs), (0, problems)) if size > 1]
    variance = sum(v for v, _ in parts)
    if variance == 0:
        ci = list(clopper_pearson(round(mean * problems), problems, confidence))
    else:
        df = variance ** 2 / sum(v ** 2 / d for v, d in parts if v > 0)
        half = float(t.ppf(0.5 + confidence / 2, df) * math.sqrt(variance))
        ci = [max(0.0, mean - half), min(1.0, mean + half)]
    return {"mean": mean, "ci": ci, "runs": runs, "problems": problems}
