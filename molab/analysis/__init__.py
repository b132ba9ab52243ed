"""Analysis of stored runs: intervals, policy classification, experiment summaries, prior odds."""

from molab.analysis.intervals import clopper_pearson
from molab.analysis.policy import classify, rates, score
from molab.analysis.prior_odds import PriorOdds, fit_prior_odds, next_pressures

__all__ = ["PriorOdds", "classify", "clopper_pearson", "fit_prior_odds", "next_pressures", "rates", "score"]
