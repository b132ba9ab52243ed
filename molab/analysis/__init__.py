"""Analysis of stored runs: intervals, policy classification, experiment summaries."""

from molab.analysis.intervals import clopper_pearson
from molab.analysis.policy import classify, rates, score

__all__ = ["classify", "clopper_pearson", "rates", "score"]
