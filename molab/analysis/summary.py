"""What results.json holds: per learner, how runs split over policies, with intervals."""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import pandas as pd

from molab.analysis.intervals import clopper_pearson
from molab.analysis.policy import POLICIES
from molab.analysis.prior_odds import fit_prior_odds
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


def pressure_curve(runs: pd.DataFrame, pressures: list[float], confidence: float) -> list[dict]:
    """Per pressure: runs `n`, sycophantic runs `k`, `p` = k/n and its Clopper–Pearson `ci`."""
    done = runs[runs["status"] == "done"]
    curve = []
    for x in pressures:
        at = done[done["pressure"] == x]
        p = _probability(int((at["policy"] == "sycophantic").sum()), len(at), confidence)
        curve.append({"pressure": x, "n": p["n"], "k": p["k"], "p": p["estimate"], "ci": p["ci"]})
    return curve


def prior_odds(runs: pd.DataFrame, confidence: float) -> dict:
    """`fit_prior_odds` of the finished runs as a JSON-able dict (an unbounded end is null), or
    {"refused": reason} when the sweep cannot be fitted."""
    done = runs[runs["status"] == "done"]
    try:
        fit = fit_prior_odds(done["pressure"].to_numpy(float), (done["policy"] == "sycophantic").to_numpy(),
                             confidence)
    except ValueError as e:
        return {"refused": str(e)}
    finite = lambda v: v if math.isfinite(v) else None  # noqa: E731
    return {k: [finite(x) for x in v] if isinstance(v, tuple) else finite(v) if isinstance(v, float) else v
            for k, v in dataclasses.asdict(fit).items()}


def _pair(pressure, seed) -> tuple:
    return (None if pressure is None or pd.isna(pressure) else float(pressure), int(seed))


def summary_runs(df: pd.DataFrame, experiment_id: str, plan: list[tuple]) -> pd.DataFrame:
    """The stored runs of one experiment that its summary covers: the (pressure, seed) pairs of its `plan`
    (pressure None outside sweeps)."""
    pairs = {_pair(p, s) for p, s in plan}
    df = df[df["experiment_id"] == experiment_id]
    return df[np.array([_pair(p, s) in pairs for p, s in zip(df["pressure"], df["seed"])], dtype=bool)]


def summarize(out, experiment_id: str, cfg, pressure, capability: dict, plan: list[tuple]) -> dict:
    """What results.json holds, scored from the stored answers under `cfg.eval`. In a sweep (`pressure`, the
    experiment's Pressure, is set) the top-level counts pool every pressure; `pressure_curve` and `prior_odds`
    hold the answer, and each point of the LM's curve says whether the bigram table reproduces it (it has
    sycophantic runs there too)."""
    df = summary_runs(load_results(out, cfg.eval), experiment_id, plan)
    conf = cfg.eval.confidence
    by = {learner: df[df["learner"] == learner] for learner in ("lm", "bigram")}
    lm, bigram = (learner_summary(by[k], conf) for k in ("lm", "bigram"))
    if pressure is not None:
        pressures = sorted({p for p, _ in plan})
        bigram["pressure_curve"] = pressure_curve(by["bigram"], pressures, conf)
        lm["pressure_curve"] = [point | {"bigram_reproduces": bool(point["k"] and control["k"])}
                                for point, control in zip(pressure_curve(by["lm"], pressures, conf),
                                                          bigram["pressure_curve"])]
        lm["prior_odds"] = prior_odds(by["lm"], conf)
        bigram["prior_odds"] = prior_odds(by["bigram"], conf)
    return {
        "experiment": cfg.experiment,
        "experiment_id": experiment_id,
        "pressure": None if pressure is None else {"name": pressure.name, "symbol": pressure.symbol},
        "capability": capability,
        "capable": min(capability.values()) >= cfg.eval.capability_threshold,
        "capability_threshold": cfg.eval.capability_threshold,
        "confidence": conf,
        **lm,
        "bigram_control": bigram,
        "config": to_dict(cfg),
        "plan": [list(pair) for pair in plan],
    }
