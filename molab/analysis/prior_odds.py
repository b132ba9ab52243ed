"""Prior odds of the sycophantic policy at zero pressure, extrapolated from a sweep over pressure.

Counting runs at zero pressure cannot tell P(sycophantic) = 0 from 1e-4: both give 0 in 400. A *sweep*
trains runs at several values of a pressure λ ≥ 0 that pushes training toward the sycophantic policy and
fits P(sycophantic | λ) = sigmoid(a + b·λ); the log odds at zero pressure, a, is then read off the fitted
line. The intervals invert the likelihood-ratio test (profile likelihood): Wald intervals assume a
symmetric, quadratic likelihood, which fails exactly where this module is used, far from the data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import statsmodels.api as sm
from scipy.optimize import brentq
from scipy.special import expit
from scipy.stats import chi2

# Runs at fitted logit ±ETA_STAR tell most about a line extrapolated far away: ±2.3994 maximises
# eta² p (1 - p) (the two-point c-optimal design for logistic extrapolation, Ford, Torsney & Wu 1992).
ETA_STAR = 2.3994
WIDE = 1e3  # a profile search that passes this many scales of its parameter without crossing gives ±inf
MAX_LOGIT_STEP = 10.0  # the largest change of any run's logit in one Newton step of a profile fit


@dataclass(frozen=True)
class PriorOdds:
    """A logistic fit of P(sycophantic | λ) = sigmoid(a + b·λ) to one sweep, with profile-likelihood intervals.

    `log_odds_at_zero` is a = log(P(sycophantic) / P(not sycophantic)) at λ = 0: negative when a sycophantic
    run is the less likely outcome; the prior odds are 1 : exp(-a) (honest : sycophantic when every run is one
    of the two; otherwise the runs that are neither count with the honest ones). `pressure_at_half` is
    λ½ = -a/b, the pressure at which a run is as likely sycophantic as not. Every interval is at `confidence`; an end is
    ±inf when the data do not bound it. When the slope's interval reaches 0, so does λ½'s to inf (or to -inf when most
    runs are sycophantic); the likelihood-ratio set then also holds λ½ far on the other side, reached only
    by negative slopes, which is left out: the interval is the piece around the estimate.
    """

    log_odds_at_zero: float
    log_odds_at_zero_ci: tuple[float, float]
    pressure_at_half: float
    pressure_at_half_ci: tuple[float, float]
    slope: float
    slope_ci: tuple[float, float]
    n_runs: int
    confidence: float


def _grouped(pressure, is_sycophantic, who: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Check one sweep and group it by pressure: (distinct pressures, sycophantic runs, runs) at each."""
    try:
        lam = np.asarray(pressure, dtype=float)
        syc = np.asarray(is_sycophantic, dtype=float)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{who}: pressure and is_sycophantic must be numbers and booleans ({e})") from None
    if lam.ndim != 1 or syc.ndim != 1 or len(lam) != len(syc):
        raise ValueError(f"{who}: pressure and is_sycophantic must be 1-D, of one length, got {lam.shape}, {syc.shape}")
    bad = lam[~(np.isfinite(lam) & (lam >= 0))]
    if len(bad):
        raise ValueError(f"{who}: every pressure must be finite and >= 0, got {bad[:3].tolist()}")
    if not np.all((syc == 0) | (syc == 1)):
        raise ValueError(f"{who}: is_sycophantic must be booleans or 0/1")
    x, index = np.unique(lam, return_inverse=True)
    return x, np.bincount(index, weights=syc, minlength=len(x)), np.bincount(index, minlength=len(x)).astype(float)


def separation(x: np.ndarray, k: np.ndarray, m: np.ndarray) -> str | None:
    """'up' when no pressure's count short of all (`k` < `m`: a run, or an answer, that does not follow the policy)
    is higher than one with some (`k` > 0), so that pressure separates them and a logistic fit's slope runs off to
    infinity; 'down' the reverse; else None."""
    honest, syc = x[k < m], x[k > 0]
    if honest.max() <= syc.min():
        return "up"
    return "down" if syc.max() <= honest.min() else None


def _loglik(eta, k: np.ndarray, m: np.ndarray) -> float:
    return float(k @ eta - m @ np.logaddexp(0.0, eta))


def _best_along(offset, direction: np.ndarray, k: np.ndarray, m: np.ndarray, t: float) -> float:
    """Largest log-likelihood over t at logits offset + t·direction, from t (concave in t: capped Newton steps)."""
    offset = offset + 0.0 * direction
    # Far out on a profile the given start can be saturated (every p near 0 or 1); the start that matches
    # the overall share of sycophantic runs at the runs' mean is then much nearer.
    share, weight = k.sum() / m.sum(), m / m.sum()
    if weight @ direction != 0:
        matched = (math.log(share / (1 - share)) - weight @ offset) / (weight @ direction)
        t = max(t, matched, key=lambda v: _loglik(offset + v * direction, k, m))
    ll = _loglik(offset + t * direction, k, m)
    max_step = MAX_LOGIT_STEP / np.abs(direction).max()
    for _ in range(200):
        p = expit(offset + t * direction)
        grad, curv = direction @ (k - m * p), (direction**2) @ (m * p * (1 - p))
        # Where every run's p is saturated the curvature vanishes and Newton's step is huge: cap it.
        step = grad / curv if curv * max_step > abs(grad) else math.copysign(max_step, grad)
        for _ in range(60):  # halve a step that overshoots
            new = _loglik(offset + (t + step) * direction, k, m)
            if new >= ll:
                break
            step /= 2
        else:
            return ll
        t, ll = t + step, new
        if abs(step) <= 1e-11 * (1 + abs(t)):
            break
    return ll


def _profile_interval(deviance, estimate: float, scale: float, q: float, limit: float) -> tuple[float, float]:
    """Where deviance(v) = q each side of estimate: step out, doubling from scale, then brentq; ±inf past limit."""
    ends = []
    for side in (-1.0, 1.0):
        inside, step = estimate, scale
        while True:
            probe = estimate + side * step
            if deviance(probe) > q:
                ends.append(brentq(lambda v: deviance(v) - q, inside, probe, xtol=1e-10, rtol=1e-12))
                break
            if step > limit:
                ends.append(side * math.inf)
                break
            inside, step = probe, 2 * step
    return ends[0], ends[1]


def _mle(x: np.ndarray, k: np.ndarray, m: np.ndarray):
    """statsmodels' binomial GLM (logit link) on the grouped runs: (a, b, covariance of a and b)."""
    # One row per (pressure, outcome) weighted by its count, rather than one row of shares per pressure: with
    # two pressures the shares are fitted exactly, which statsmodels would take for perfect prediction.
    lam, outcome, count = np.r_[x, x], np.r_[np.ones_like(x), np.zeros_like(x)], np.r_[k, m - k]
    keep = count > 0
    res = sm.GLM(outcome[keep], np.column_stack([np.ones(keep.sum()), lam[keep]]), family=sm.families.Binomial(),
                 freq_weights=count[keep]).fit()
    if not res.converged:
        raise ValueError("fit_prior_odds: the maximum-likelihood fit did not converge")
    return float(res.params[0]), float(res.params[1]), np.asarray(res.cov_params())


def fit_prior_odds(pressure, is_sycophantic, confidence: float = 0.95, policy: str = "sycophantic") -> PriorOdds:
    """Fit P(sycophantic | λ) = sigmoid(a + b·λ) to a sweep's runs, with profile-likelihood intervals. `policy` names
    the policy the pressure pushes toward in the messages (the fit is the same for any).

    Refuses (ValueError) rather than extrapolate when the fit does not exist or means nothing: fewer than
    two pressures, all runs alike, pressure separating honest from sycophantic runs, or a slope <= 0.

    >>> runs = {0: (0, 20), 1: (1, 20), 2: (4, 20), 3: (12, 20), 4: (18, 20)}  # pressure: (sycophantic, runs)
    >>> pressure = [lam for lam, (k, n) in runs.items() for _ in range(n)]
    >>> sycophantic = [i < k for lam, (k, n) in runs.items() for i in range(n)]
    >>> fit = fit_prior_odds(pressure, sycophantic)
    >>> round(fit.log_odds_at_zero, 2), [round(v, 2) for v in fit.log_odds_at_zero_ci]
    (-4.97, [-7.21, -3.3])
    >>> round(fit.pressure_at_half, 2), [round(v, 2) for v in fit.pressure_at_half_ci]
    (2.77, [2.44, 3.13])
    """
    if not 0 < confidence < 1:
        raise ValueError(f"fit_prior_odds: confidence must be between 0 and 1, got {confidence}")
    x, k, m = _grouped(pressure, is_sycophantic, "fit_prior_odds")
    if len(x) < 2:
        raise ValueError("fit_prior_odds: no runs" if len(x) == 0 else
                         "fit_prior_odds: need runs at two or more distinct pressures to fit a slope, got one")
    if k.sum() in (0, m.sum()):
        which = f"all {int(m.sum())} runs are" if k.sum() else f"none of the {int(m.sum())} runs is"
        raise ValueError(f"fit_prior_odds: {which} {policy}, so the fit does not exist; add runs at "
                         f"{'lower' if k.sum() else 'higher'} pressure")
    split = separation(x, k, m)
    if split == "up":
        raise ValueError(f"fit_prior_odds: pressure separates the runs (no run that is not {policy} above one that "
                         f"is), so the slope estimate is infinite; add runs between the last pressure without {policy} "
                         f"runs and the first with them")
    if split == "down":
        raise ValueError(f"fit_prior_odds: every {policy} run is at lower pressure than every other run: "
                         f"pressure does not push toward the {policy} policy here, so there is nothing to extrapolate")
    a, b, cov = _mle(x, k, m)
    if not b > 0:
        raise ValueError(f"fit_prior_odds: fitted slope {b:.3g} <= 0: pressure does not push toward the {policy} "
                         "policy here, so the 50% pressure and the extrapolation to zero pressure are meaningless")
    h = -a / b
    ll_max = max(_loglik(a + b * x, k, m), _best_along(a, x, k, m, b))  # polish the GLM's optimum a little
    q = float(chi2.ppf(confidence, df=1))

    # Each profile fixes one parameter and maximises over the other, a one-dimensional concave problem.
    def dev_a(v):
        return 2 * (ll_max - _best_along(v, x, k, m, b))

    def dev_b(v):
        return 2 * (ll_max - _best_along(v * x, np.ones_like(x), k, m, a))

    def dev_h(v):  # reparametrised: logit p = b·(λ - λ½)
        return 2 * (ll_max - _best_along(0.0, x - v, k, m, b))

    grad_h = np.array([-1 / b, a / b**2])  # delta-method scale, only to size the first search step
    se_a, se_b, se_h = math.sqrt(cov[0, 0]), math.sqrt(cov[1, 1]), math.sqrt(grad_h @ cov @ grad_h)
    return PriorOdds(
        log_odds_at_zero=a,
        log_odds_at_zero_ci=_profile_interval(dev_a, a, se_a, q, WIDE * (1 + se_a)),
        pressure_at_half=h,
        pressure_at_half_ci=_profile_interval(dev_h, h, se_h, q, WIDE * (x.max() + se_h)),
        slope=b,
        slope_ci=_profile_interval(dev_b, b, se_b, q, WIDE * (b + se_b)),
        n_runs=int(m.sum()),
        confidence=confidence,
    )


def _spread(lo: float, hi: float, n: int, ends: str = "both") -> np.ndarray:
    """n evenly spaced pressures from lo to hi; ends 'high' leaves out lo, 'low' leaves out hi."""
    if ends == "both":
        return np.linspace(lo, hi, n) if n > 1 else np.array([(lo + hi) / 2] * n)
    grid = np.linspace(lo, hi, n + 1)
    return grid[1:] if ends == "high" else grid[:-1]


def next_pressures(pressure, is_sycophantic, n: int, low: float = 0.0, high: float | None = None) -> list[float]:
    """Propose pressures in [low, high] for the next n runs, where they tell most about the log odds at zero.

    Until a curve can be fitted, look for the switch: with no runs, spread over the range; with all runs
    honest, spread above the highest pressure tried (doubling it when `high` is None); with all sycophantic,
    below the lowest; when pressure separates the two, across the gap. Once the fit exists, use the design
    that minimises the variance of the log odds at zero: runs where the fitted logit is -2.4 and +2.4
    (P ≈ 0.08 and 0.92), more of them at the lower point, the nearer it is to zero; all at `low` once P
    there is already above 0.08 (counting runs there beats extrapolating), all at `high` while P there is
    below it. A slope <= 0 puts the model itself in doubt, so the runs spread over the range.

    >>> next_pressures([0, 0, 1, 1], [0, 0, 0, 0], 4)  # all honest so far: push pressure up
    [1.25, 1.5, 1.75, 2.0]
    """
    if high is not None and not high > low >= 0:
        raise ValueError(f"next_pressures: need 0 <= low < high, got low={low}, high={high}")
    if n < 0:
        raise ValueError(f"next_pressures: n must be >= 0, got {n}")
    x, k, m = _grouped(pressure, is_sycophantic, "next_pressures")
    top = high if high is not None else (2 * x.max() if len(x) and x.max() > low else low + 1.0)
    if len(x) == 0:
        proposal = _spread(low, top, n)
    elif k.sum() == 0:
        proposal = _spread(x.max(), top, n, ends="high")
    elif k.sum() == m.sum():
        proposal = _spread(low, x.min(), n, ends="low")
    elif len(x) < 2 or separation(x, k, m) == "down":
        proposal = _spread(low, top, n)
    elif separation(x, k, m) == "up":
        last_honest, first_syc = x[k < m].max(), x[k > 0].min()
        margin = max(first_syc - last_honest, (x.max() - x.min()) / len(x)) / 2  # half the gap, or half a step
        proposal = np.linspace(last_honest - margin, first_syc + margin, n + 2)[1:-1]  # inside, off the ends tried
    else:
        a, b, _ = _mle(x, k, m)
        if not b > 0:
            proposal = _spread(low, top, n)
        else:
            lo, hi = (-ETA_STAR - a) / b, min((ETA_STAR - a) / b, top)
            if lo <= low:
                proposal = np.full(n, low)
            elif lo >= top:
                proposal = np.full(n, top)
            else:
                # weight of each point in the extrapolated value at 0, over its logit's standard deviation
                p = expit(a + b * np.array([lo, hi]))
                weight = np.array([hi, lo]) / np.sqrt(p * (1 - p))
                n_lo = int(round(n * weight[0] / weight.sum()))
                proposal = np.array([lo] * n_lo + [hi] * (n - n_lo))
    return [float(v) for v in np.clip(proposal, low, top)]
