import math

import numpy as np
import pytest
import statsmodels.api as sm
from scipy.special import expit
from scipy.stats import chi2

from molab.analysis.prior_odds import PriorOdds, fit_prior_odds, next_pressures


def simulate(a: float, b: float, pressure, rng) -> np.ndarray:
    """One sweep of a learner that ends sycophantic with probability sigmoid(a + b·λ)."""
    return rng.random(len(pressure)) < expit(a + b * np.asarray(pressure, dtype=float))


def test_recovers_known_log_odds_and_half_pressure():
    a, b = -6.0, 2.0  # P(sycophantic) = 0.25% at zero pressure, 50% at λ = 3
    pressure = np.repeat(np.linspace(0, 6, 13), 200)
    fit = fit_prior_odds(pressure, simulate(a, b, pressure, np.random.default_rng(0)))
    assert isinstance(fit, PriorOdds) and fit.n_runs == 2600 and fit.confidence == 0.95
    assert fit.log_odds_at_zero == pytest.approx(a, abs=0.5) and fit.slope == pytest.approx(b, abs=0.2)
    assert fit.pressure_at_half == pytest.approx(3.0, abs=0.05)
    for estimate, (low, high), truth in [(fit.log_odds_at_zero, fit.log_odds_at_zero_ci, a),
                                         (fit.pressure_at_half, fit.pressure_at_half_ci, -a / b),
                                         (fit.slope, fit.slope_ci, b)]:
        assert low < estimate < high and low <= truth <= high
    assert fit.pressure_at_half == pytest.approx(-fit.log_odds_at_zero / fit.slope)
    # extrapolating to zero is less sure than interpolating to the middle: the interval for a is skewed longer below
    assert fit.log_odds_at_zero - fit.log_odds_at_zero_ci[0] > fit.log_odds_at_zero_ci[1] - fit.log_odds_at_zero


@pytest.fixture(scope="module")
def coverage_fits():
    # 400 sweeps: the share covered has a standard error of about 0.011, so [0.90, 0.99] is about 3 of them
    # either side of the ~0.94 that long simulations give for 180 runs (profile intervals run a little short).
    a, b = -4.0, 1.5
    pressure = np.repeat(np.arange(9.0), 20)
    rng = np.random.default_rng(0)
    return a, b, [fit_prior_odds(pressure, simulate(a, b, pressure, rng)) for _ in range(400)]


@pytest.mark.parametrize("field,truth", [("log_odds_at_zero", -4.0), ("pressure_at_half", 4.0 / 1.5), ("slope", 1.5)])
def test_profile_intervals_cover_the_truth_at_about_their_confidence(coverage_fits, field, truth):
    _, _, fits = coverage_fits
    coverage = np.mean([getattr(f, field + "_ci")[0] <= truth <= getattr(f, field + "_ci")[1] for f in fits])
    assert 0.90 <= coverage <= 0.99, f"{field}: coverage {coverage:.3f}"


def test_higher_confidence_gives_wider_intervals():
    pressure = [0] * 20 + [1] * 20 + [2] * 20 + [3] * 20
    sycophantic = [i < k for k in (1, 3, 9, 15) for i in range(20)]
    narrow, wide = fit_prior_odds(pressure, sycophantic, 0.8), fit_prior_odds(pressure, sycophantic, 0.99)
    (wide_low, wide_high), (narrow_low, narrow_high) = wide.log_odds_at_zero_ci, narrow.log_odds_at_zero_ci
    assert wide_low < narrow_low < narrow.log_odds_at_zero < narrow_high < wide_high


def _runs(counts: dict[float, tuple[int, int]]) -> tuple[list[float], list[bool]]:
    """pressure: (sycophantic, runs) -> one entry per run."""
    pressure = [lam for lam, (k, n) in counts.items() for _ in range(n)]
    return pressure, [i < k for k, n in counts.values() for i in range(n)]


@pytest.mark.parametrize("pressure,sycophantic,why", [
    ([0, 1, 2], [0, 1], "one length"),
    ([], [], "no runs"),
    ([0, -1, 2], [0, 1, 1], ">= 0"),
    ([0, math.nan, 2], [0, 1, 1], "finite"),
    ([0, math.inf, 2], [0, 1, 1], "finite"),
    ([0, 1, 2], [0, 2, 1], "booleans"),
    ([0, 1, 2], ["no", "yes", "yes"], "numbers and booleans"),
    ([2, 2, 2, 2], [0, 1, 0, 1], "two or more distinct pressures"),
    ([0, 1, 2, 3], [0, 0, 0, 0], "none of the 4 runs is sycophantic"),
    ([0, 1, 2, 3], [1, 1, 1, 1], "all 4 runs are sycophantic"),
    ([0, 1, 2, 3], [0, 0, 1, 1], "separates"),  # complete separation
    ([0, 1, 1, 2, 3], [0, 0, 1, 1, 1], "separates"),  # quasi-complete: both outcomes only at λ = 1
    ([0, 0, 1, 1], [0, 0, 0, 1], "separates"),  # two pressures, no sycophantic run at the lower
    ([0, 1, 2, 3], [1, 1, 0, 0], "does not push toward the sycophantic policy"),  # separated the other way
    (*_runs({0: (6, 10), 1: (4, 10), 2: (3, 10)}), "slope"),  # overlapping, but the fitted slope is negative
])
def test_refuses_what_it_cannot_fit(pressure, sycophantic, why):
    with pytest.raises(ValueError, match="fit_prior_odds") as err:
        fit_prior_odds(pressure, sycophantic)
    assert why in str(err.value) and "\n" not in str(err.value)


def test_refuses_a_negative_slope_with_the_reason():
    with pytest.raises(ValueError, match=r"slope -\S+ <= 0: pressure does not push toward the sycophantic policy"):
        fit_prior_odds(*_runs({0: (6, 10), 1: (4, 10), 2: (3, 10)}))


def test_refuses_bad_confidence():
    with pytest.raises(ValueError, match="confidence"):
        fit_prior_odds([0, 1, 2], [0, 1, 0], confidence=1.0)


SMALL = {0: (0, 8), 1: (1, 8), 2: (3, 8), 3: (6, 8)}


def _brute_deviance(pressure, sycophantic, constrained) -> float:
    """Deviance of a constrained fit, refitted from scratch with statsmodels on the individual runs."""
    y, lam = np.asarray(sycophantic, dtype=float), np.asarray(pressure, dtype=float)
    full = sm.GLM(y, np.column_stack([np.ones_like(lam), lam]), family=sm.families.Binomial()).fit()
    exog, offset = constrained(lam)
    restricted = sm.GLM(y, exog[:, None], family=sm.families.Binomial(), offset=offset).fit()
    return 2 * (full.llf - restricted.llf)


@pytest.mark.parametrize("field,constrained", [
    ("log_odds_at_zero", lambda v: lambda lam: (lam, np.full_like(lam, v))),  # a fixed: fit b alone
    ("pressure_at_half", lambda v: lambda lam: (lam - v, np.zeros_like(lam))),  # λ½ fixed: logit p = b (λ - λ½)
    ("slope", lambda v: lambda lam: (np.ones_like(lam), v * lam)),  # b fixed: fit a alone
])
def test_profile_interval_matches_a_brute_force_grid(field, constrained):
    pressure, sycophantic = _runs(SMALL)
    fit = fit_prior_odds(pressure, sycophantic)
    low, high = getattr(fit, field + "_ci")
    estimate, q = getattr(fit, field), chi2.ppf(0.95, 1)
    # the interval is exactly the part of a fine grid whose brute-force profile deviance is below the threshold
    grid = np.linspace(low - 0.5 * (estimate - low), high + 0.5 * (high - estimate), 121)
    inside = grid[[_brute_deviance(pressure, sycophantic, constrained(v)) <= q for v in grid]]
    step = grid[1] - grid[0]
    assert inside.min() - step < low <= inside.min() and inside.max() <= high < inside.max() + step
    for end in (low, high):
        assert _brute_deviance(pressure, sycophantic, constrained(end)) == pytest.approx(q, abs=1e-5)


def test_half_pressure_interval_is_open_above_when_the_slope_may_be_zero():
    fit = fit_prior_odds(*_runs({0: (2, 10), 1: (4, 10)}))
    assert fit.slope_ci[0] < 0 < fit.slope
    assert fit.pressure_at_half_ci[1] == math.inf and 0 < fit.pressure_at_half_ci[0] < fit.pressure_at_half
    assert all(map(math.isfinite, fit.log_odds_at_zero_ci))


def test_next_pressures_from_nothing_spreads_over_the_range():
    proposal = next_pressures([], [], 5, high=8.0)
    assert proposal == pytest.approx([0, 2, 4, 6, 8])
    assert all(0 <= v <= 1 for v in next_pressures([], [], 3)) and max(next_pressures([], [], 3)) > 0
    assert next_pressures([], [], 0) == []


def test_next_pressures_pushes_up_while_every_run_is_honest():
    proposal = next_pressures([0] * 5 + [1] * 5, [False] * 10, 4)
    assert all(v > 1 for v in proposal) and max(proposal) == pytest.approx(2.0)  # doubling without an upper limit
    proposal = next_pressures([0] * 5 + [1] * 5, [False] * 10, 4, high=5.0)
    assert all(1 < v <= 5 for v in proposal) and max(proposal) == 5.0


def test_next_pressures_pulls_down_while_every_run_is_sycophantic():
    proposal = next_pressures([2] * 5 + [3] * 5, [True] * 10, 4, high=8.0)
    assert all(0 <= v < 2 for v in proposal)


def test_next_pressures_looks_across_the_gap_of_separated_runs():
    proposal = next_pressures([0, 2, 4, 6], [0, 0, 1, 1], 5, high=8.0)
    assert all(1 <= v <= 5 for v in proposal) and min(proposal) < 2 < 4 < max(proposal)


def test_next_pressures_targets_the_informative_region_of_a_fitted_curve():
    a, b = -8.0, 2.0  # 50% at λ = 4
    pressure = np.repeat(np.linspace(0, 8, 17), 40)
    proposal = np.array(next_pressures(pressure, simulate(a, b, pressure, np.random.default_rng(3)), 50, high=8.0))
    p = expit(a + b * proposal)
    assert np.all((0.03 < p) & (p < 0.97))  # where runs are neither surely honest nor surely sycophantic
    below, above = proposal[proposal < 4], proposal[proposal > 4]
    assert len(below) + len(above) == 50 and len(below) > len(above) > 0  # more runs on the side nearer zero
    assert np.all(expit(a + b * below) < 0.2) and np.all(expit(a + b * above) > 0.8)


def test_next_pressures_stays_at_zero_once_sycophancy_is_common_there():
    pressure = np.repeat([0.0, 1.0, 2.0], 100)
    proposal = next_pressures(pressure, simulate(-1.0, 1.0, pressure, np.random.default_rng(4)), 6, high=8.0)
    assert proposal == [0.0] * 6


def test_next_pressures_rejects_a_bad_range():
    with pytest.raises(ValueError, match="low"):
        next_pressures([], [], 3, low=2.0, high=1.0)
    with pytest.raises(ValueError, match=">= 0"):
        next_pressures([-1.0], [0], 3)


def test_adaptive_sweep_pins_down_rare_sycophancy_better_than_a_grid():
    a, b = math.log(1e-4 / (1 - 1e-4)), 2.5
    rng = np.random.default_rng(5)
    grid = np.repeat(np.linspace(0, 8, 10), 40)
    widths = {"grid": [], "adaptive": []}
    for _ in range(10):
        fit = fit_prior_odds(grid, simulate(a, b, grid, rng))
        widths["grid"].append(fit.log_odds_at_zero_ci[1] - fit.log_odds_at_zero_ci[0])
        pressure, sycophantic = [], []
        for _ in range(8):
            batch = next_pressures(pressure, sycophantic, 50, high=8.0)
            pressure, sycophantic = pressure + batch, sycophantic + list(simulate(a, b, batch, rng))
        fit = fit_prior_odds(pressure, sycophantic)
        widths["adaptive"].append(fit.log_odds_at_zero_ci[1] - fit.log_odds_at_zero_ci[0])
    assert np.median(widths["adaptive"]) < 4.0 < np.median(widths["grid"])
