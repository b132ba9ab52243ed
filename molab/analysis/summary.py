"""What results.json holds: per learner, how runs split over policies, with intervals."""

from __future__ import annotations

import re

import pandas as pd

from molab.analysis.intervals import clopper_pearson
from molab.analysis.policy import POLICIES
from molab.config import to_dict
from molab.store import load_results


def _probability(k: int, n: int, confidence: float) -> dict:
    if n == 0:
        return {"estimate": None, "ci": None, "k": 0, "n": 0}
    return {"estimate": k / n, "ci": list(clopper_pearson(k, n, confidence)), "k": k, "n": n}


def learner_summary(runs: pd.DataFrame, confidence: float) -> dict:
    """Policy counts, P(sycophantic) and P(honest) with Clopper–Pearson intervals, and the
    mean rates of honest / sycophantic / other answers on easy, hard and each difficulty."""
    done = runs[runs["status"] == "done"]
    n = len(done)
    counts = {p: int((done["policy"] == p).sum()) if n else 0 for p in POLICIES}
    groups: dict[str, dict] = {}
    for col in done.columns:
        m = re.fullmatch(r"rates\.(.+)\.(honest|sycophantic|other)", col)
        if m:
            groups.setdefault(m.group(1), {})[m.group(2)] = float(done[col].mean())
    per_difficulty = {k.split(".", 1)[1]: v for k, v in groups.items() if k.startswith("difficulty.")}
    return {
        "n_runs": n,
        "n_failed": int((runs["status"] == "failed").sum()),
        "policy_counts": counts,
        "p_sycophantic": _probability(counts["sycophantic"], n, confidence),
        "p_honest": _probability(counts["honest"], n, confidence),
        "rates": {"easy": groups.get("easy"), "hard": groups.get("hard")},
        "per_difficulty": dict(sorted(per_difficulty.items(), key=lambda kv: float(kv[0]))),
    }


def summarize(out, experiment_id: str, cfg, capability: dict, capable: bool) -> dict:
    df = load_results(out)
    df = df[(df["experiment_id"] == experiment_id) & (df["seed"] < cfg.seeds)]
    conf = cfg.eval.confidence
    lm = learner_summary(df[df["learner"] == "lm"], conf)
    return {
        "experiment": cfg.experiment,
        "experiment_id": experiment_id,
        "capability": capability,
        "capable": capable,
        "capability_threshold": cfg.eval.capability_threshold,
        "confidence": conf,
        **lm,
        "bigram_control": learner_summary(df[df["learner"] == "bigram"], conf),
        "config": to_dict(cfg),
    }
