"""How many nats of log odds at zero pressure a 400-run sweep pins down: a fixed grid against adaptive placement.

A simulated learner is sycophantic with probability sigmoid(a + b·λ), P = 1e-4 at zero pressure and slope
2.5 per unit λ. (i) a fixed grid: 10 pressures from 0 to 8, 40 runs each; (ii) adaptive: 8 rounds of 50
runs, each placed by next_pressures from the runs so far. Prints, over the simulated sweeps, the median
width of the profile interval for the log odds at zero (target for adaptive: <= 4 nats), its coverage
of the true value, and the median width for the 50% pressure. Asserts nothing.

    python bench/prior_odds_efficiency.py [--sweeps 100] [--seed 0]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from scipy.special import expit

from molab.analysis.prior_odds import ETA_STAR, fit_prior_odds, next_pressures

A = math.log(1e-4 / (1 - 1e-4))  # true log odds at zero pressure
B = 2.5  # true slope per unit pressure
HIGH = 8.0


def run(pressures, rng) -> list[bool]:
    return list(rng.random(len(pressures)) < expit(A + B * np.asarray(pressures)))


def fixed_grid(rng) -> tuple[list[float], list[bool]]:
    pressure = list(np.repeat(np.linspace(0, HIGH, 10), 40))
    return pressure, run(pressure, rng)


def adaptive(rng, rounds: int = 8, batch: int = 50) -> tuple[list[float], list[bool]]:
    pressure: list[float] = []
    sycophantic: list[bool] = []
    for _ in range(rounds):
        batch_pressures = next_pressures(pressure, sycophantic, batch, low=0.0, high=HIGH)
        pressure += batch_pressures
        sycophantic += run(batch_pressures, rng)
    return pressure, sycophantic


def ideal_width(n: int = 400, confidence_z: float = 1.96) -> float:
    """Wald width of the log odds at zero under the best two-point design for the true curve: the floor."""
    lo, hi = (-ETA_STAR - A) / B, (ETA_STAR - A) / B
    sd = math.sqrt(expit(ETA_STAR) * expit(-ETA_STAR))
    return 2 * confidence_z * (hi / sd + lo / sd) / (math.sqrt(n) * (hi - lo))


def summarise(name: str, design, sweeps: int, rng) -> None:
    widths_a, widths_h, covered, refused = [], [], 0, []
    start = time.perf_counter()
    for _ in range(sweeps):
        pressure, sycophantic = design(rng)
        try:
            fit = fit_prior_odds(pressure, sycophantic)
        except ValueError as e:
            refused.append(str(e))
            continue
        low, high = fit.log_odds_at_zero_ci
        widths_a.append(high - low)
        widths_h.append(fit.pressure_at_half_ci[1] - fit.pressure_at_half_ci[0])
        covered += low <= A <= high
    fitted = len(widths_a)
    print(f"{name:>9}: median width of log odds at zero {np.median(widths_a):5.2f} nats "
          f"(quartiles {np.percentile(widths_a, 25):.2f}..{np.percentile(widths_a, 75):.2f}), "
          f"coverage {covered / max(fitted, 1):.2f} of {fitted}, median width of λ½ {np.median(widths_h):.3f}, "
          f"refused {len(refused)}, {time.perf_counter() - start:.1f} s")
    for reason in sorted(set(refused)):
        print(f"           refused: {reason}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"true a = {A:.3f} (P = 1e-4 at zero pressure), b = {B}, λ½ = {-A / B:.3f}; "
          f"{args.sweeps} sweeps of 400 runs")
    print(f"floor: the best two-point design for the true curve gives a Wald width of {ideal_width():.2f} nats")
    summarise("fixed", fixed_grid, args.sweeps, np.random.default_rng(args.seed))
    summarise("adaptive", adaptive, args.sweeps, np.random.default_rng(args.seed))


if __name__ == "__main__":
    main()
