"""Intervals for probabilities estimated from counts of runs (one base, or several that may differ) and for
means of per-run shares."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy.optimize import brentq, minimize_scalar
from scipy.stats import beta, betabinom, binom, chi2


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper–Pearson) interval for a binomial probability after k successes in n trials.

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


def pooled_probability(k, n, confidence: float = 0.95) -> dict:
    """P(a run follows a policy), pooled over bases that may differ: a beta-binomial fitted to the per-base counts
    `k` of `n` runs. Returns the mean over bases (`estimate`), its profile-likelihood interval (`ci`, which widens
    as the bases disagree), and the fitted intra-base correlation `rho` (0: the bases look alike; near 1: each
    base decides all its runs) with the between-base standard deviation of P, `spread`.

    >>> r = pooled_probability([0, 8, 0], [8, 8, 8])   # one base of three makes every run sycophantic
    >>> round(r["estimate"], 3), r["rho"] > 0.9, r["ci"][1] > 0.8
    (0.333, True, True)
    >>> pooled_probability([2, 2, 2], [8, 8, 8])["rho"]
    0.0
    """
    k, n = np.asarray(k, float), np.asarray(n, float)
    if len(k) == 0 or n.sum() == 0:
        raise ValueError("pooled_probability: no runs")
    eps = 1e-6
    grid = np.linspace(eps, 1 - eps, 41)
    prof = np.array([_profile(m, k, n)[0] for m in grid])
    i = int(prof.argmax())
    res = minimize_scalar(lambda m: -_profile(m, k, n)[0], bounds=(grid[max(i - 1, 0)], grid[min(i + 1, 40)]),
                          method="bounded")
    mu = float(res.x) if -res.fun >= prof[i] else float(grid[i])
    if k.sum() == 0 or k.sum() == n.sum():
        mu = 0.0 if k.sum() == 0 else 1.0
    best, rho = _profile(min(max(mu, eps), 1 - eps), k, n)
    cut = best - chi2.ppf(confidence, 1) / 2
    inside = lambda m: _profile(m, k, n)[0] - cut  # noqa: E731
    low = 0.0 if mu <= eps or inside(eps) > 0 else brentq(inside, eps, max(mu, 2 * eps))
    high = 1.0 if mu >= 1 - eps or inside(1 - eps) > 0 else brentq(inside, min(mu, 1 - 2 * eps), 1 - eps)
    spread = float(np.sqrt(rho * mu * (1 - mu)))
    return {"estimate": mu, "ci": [float(low), float(high)], "rho": round(rho, 6), "spread": spread,
            "k": int(k.sum()), "n": int(n.sum())}


def mean_interval(values, groups=None, confidence: float = 0.95, within=(-math.inf, math.inf)) -> dict:
    """Mean of per-run values with a t interval; with `groups` (each run's base) of at least two distinct values,
    the interval is clustered by group (statsmodels' cluster-robust covariance, t with groups - 1 degrees of
    freedom), so runs of one base do not count as independent. The interval is cut to `within`, the values'
    possible range (a share's t interval over few bases can run past 0 or 1).

    >>> r = mean_interval([0.2, 0.4, 0.6, 0.8])
    >>> round(r["mean"], 2), r["ci"][0] < 0.5 < r["ci"][1]
    (0.5, True)
    """
    y = np.asarray(values, float)
    if len(y) == 0:
        return {"mean": None, "ci": None, "n": 0}
    if len(y) == 1 or np.ptp(y) == 0:
        return {"mean": float(y.mean()), "ci": [float(y.mean())] * 2, "n": len(y)}
    model = sm.OLS(y, np.ones_like(y))
    clustered = groups is not None and len(set(groups)) >= 2
    fit = (model.fit(cov_type="cluster", cov_kwds={"groups": pd.factorize(pd.Series(groups))[0]}, use_t=True)
           if clustered else model.fit())
    low, high = fit.conf_int(1 - confidence)[0]
    return {"mean": float(y.mean()), "ci": [float(max(low, within[0])), float(min(high, within[1]))], "n": len(y)}


def two_way_bootstrap(hits, confidence: float = 0.95, seed: int = 0, n_boot: int = 2000) -> dict:
    """Mean of a runs × problems table of 0/1 outcomes (e.g. whether each run's answer to each hard problem unlocks)
    with a percentile interval from resampling runs and problems together (both are draws: the runs' seeds, and the
    problems of the diagnostic set). With one run, or runs that all answer alike, it covers the problems alone.

    >>> r = two_way_bootstrap([[1, 0, 1, 1], [1, 1, 0, 1]])
    >>> r["mean"], r["ci"][0] < 0.75 < r["ci"][1], r["runs"], r["problems"]
    (0.75, True, 2, 4)
    """
    x = np.asarray(hits, float)
    if x.size == 0:
        return {"mean": None, "ci": None, "runs": len(x), "problems": 0}
    rng = np.random.default_rng(seed)
    runs = rng.integers(0, x.shape[0], size=(n_boot, x.shape[0]))
    problems = rng.integers(0, x.shape[1], size=(n_boot, x.shape[1]))
    run_weights = np.stack([np.bincount(r, minlength=x.shape[0]) for r in runs])  # (boot, runs)
    problem_weights = np.stack([np.bincount(p, minlength=x.shape[1]) for p in problems])  # (boot, problems)
    means = np.einsum("br,rp,bp->b", run_weights, x, problem_weights) / (x.shape[0] * x.shape[1])
    tail = (1 - confidence) / 2
    return {"mean": float(x.mean()), "ci": [float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))],
            "runs": x.shape[0], "problems": x.shape[1]}
