"""What results.json holds: per learner, how runs split over policies, with intervals."""

from __future__ import annotations

import dataclasses
import math
import re
import warnings

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats as scipy_stats
from scipy.special import expit
from statsmodels.tools.sm_exceptions import PerfectSeparationWarning

from molab.analysis.intervals import clopper_pearson, mean_interval, pooled_probability, two_way_interval
from molab.analysis.policy import OUTCOMES, POLICIES, scorer
from molab.analysis.prior_odds import fit_prior_odds, separation
from molab.config import to_dict
from molab.experiments import get_experiment
from molab.store import load_answers, load_results, several_conditions


def _probability(k: int, n: int, confidence: float) -> dict:
    if n == 0:
        return {"estimate": None, "ci": None, "k": 0, "n": 0}
    return {"estimate": k / n, "ci": list(clopper_pearson(k, n, confidence)), "k": k, "n": n}


def _pooled(done: pd.DataFrame, policy: str, confidence: float) -> dict:
    """P(a run follows `policy`): Clopper–Pearson over runs on one base (what varied: data order and sampling);
    over several bases, the beta-binomial mean over bases with `pooled_probability`'s interval (what varied: the
    base too), with the Clopper–Pearson interval that treats the bases as alike beside it; a deterministic control's
    one run, no interval (nothing varied)."""
    k, n = int((done["policy"] == policy).sum()), len(done)
    alike = _probability(k, n, confidence)
    if _nothing_varied(done):
        return alike | {"ci": None, "covers": "one run, the same for every seed: nothing varied, no interval"}
    if n == 0 or done["base"].nunique() < 2:
        return alike | {"covers": "seeds (data order, sampling) on one base"}
    per_base = done.groupby("base")["policy"].agg(lambda p: [int((p == policy).sum()), len(p)])
    fit = pooled_probability([kn[0] for kn in per_base], [kn[1] for kn in per_base], confidence)
    return fit | {"covers": f"seeds and bases ({len(per_base)} bases, beta-binomial)", "if_bases_alike": alike}


def _nothing_varied(done: pd.DataFrame) -> bool:
    """Whether `done` is one run that cannot differ by seed (on one base): it has no interval."""
    return len(done) == 1 and "deterministic" in done and bool(done["deterministic"].eq(True).all())


def learner_summary(runs: pd.DataFrame, confidence: float) -> dict:
    """Policy and outcome counts, P(sycophantic) and P(honest) with intervals (`_pooled`), the graded shares of
    each run's hard answers (and of the ceilings) as means with t intervals (`mean_interval`: over the bases' means
    where there are several), and the mean rates of honest / sycophantic / other answers on easy, hard and each
    difficulty, each with the same interval (under `ci`)."""
    done = runs[runs["status"] == "done"]
    n = len(done)
    counts = {p: int((done["policy"] == p).sum()) if n else 0 for p in POLICIES}
    groups: dict[str, dict] = {}
    for col in done.columns if n else []:  # no finished run: no rates (None, not NaN)
        m = re.fullmatch(r"rates\.(.+)\.(honest|sycophantic|other)", col)
        if m:
            share = _share(done, col, confidence)
            group = groups.setdefault(m.group(1), {"ci": {}})
            group[m.group(2)], group["ci"][m.group(2)] = share["mean"], share["ci"]
    per_difficulty = {k.split(".", 1)[1]: v for k, v in groups.items() if k.startswith("difficulty.")}
    graded = {name: _share(done, col, confidence, top)
              for name, (col, top) in GRADED.items() if col in done}  # a share of a missing ceiling is missing
    return {
        "n_runs": n,
        "n_failed": int((runs["status"] == "failed").sum()),
        "policy_counts": counts,
        "outcome_counts": {o: int((done["outcome"] == o).sum()) if n else 0 for o in OUTCOMES},
        "p_sycophantic": _pooled(done, "sycophantic", confidence),
        "p_honest": _pooled(done, "honest", confidence),
        "graded": graded,
        "rates": {"easy": groups.get("easy"), "hard": groups.get("hard")},
        "per_difficulty": dict(sorted(per_difficulty.items(), key=lambda kv: float(kv[0]))),
    }


def _share(done: pd.DataFrame, col: str, confidence: float, top: float = 1) -> dict:
    """The runs' mean of the per-run share `col` (the mean of the bases' means where there are several) with
    `mean_interval`'s interval; a share of a ceiling is never narrower than its share's interval divided by the
    ceiling's (low end by the ceiling's high end, high end by its low end: the draw of problems and the ceiling's own
    spread; no high end, None, where a ceiling's interval reaches 0). Simulated at 95% (runs and ceiling runs on the
    same problems; 16 and 4 or 4 and 2 runs, 256 or 64 problems, 7 settings of their means and spreads), this
    covered the ratio of the two means 0.98 to 1.00 of the time; the share's interval over the ceiling's mean alone
    as little as 0.82."""
    if col not in done:  # no finished run has it
        return mean_interval([])
    values = done[col].dropna()
    got = mean_interval(values, done["base"][values.index], confidence, within=(0, top), problems=_problems(done, col))
    policy = col.removeprefix("ceiling_share.")
    if policy == col or not len(values) or f"ceiling_low.{policy}" not in done:
        return got
    rows = done.loc[values.index]
    share = _share(rows, f"rates.hard.{policy}", confidence)
    if share["ci"]:
        with np.errstate(divide="ignore"):
            low = share["ci"][0] * (1 / rows[f"ceiling_high.{policy}"]).mean()
            high = share["ci"][1] * (1 / rows[f"ceiling_low.{policy}"]).mean()
        lo, hi = got["ci"] or (math.inf, -math.inf)  # one run: the share's interval alone
        got["ci"] = [min(lo, low), max(hi, high) if math.isfinite(high) else None]
    return got


def _problems(done: pd.DataFrame, col: str) -> int | None:
    """How many problems each of a `rates.` column's shares is out of (the fewest over runs); None for a share of a
    ceiling, which can pass 1."""
    n = f"{col.rsplit('.', 1)[0]}.n"
    return int(done[n].min()) if col.startswith("rates.") and n in done and done[n].notna().any() else None


# graded per-run shares reported beside the labels: name -> (column of the runs' table, largest possible value;
# a run can beat its ceiling)
GRADED = {"hard_honest": ("rates.hard.honest", 1), "hard_sycophantic": ("rates.hard.sycophantic", 1),
          "easy_accuracy": ("rates.easy.honest", 1), "honest_of_ceiling": ("ceiling_share.honest", math.inf),
          "sycophantic_of_ceiling": ("ceiling_share.sycophantic", math.inf)}


def pressure_curve(runs: pd.DataFrame, pressures: list[float], confidence: float,
                   policy: str = "sycophantic") -> list[dict]:
    """Per pressure: runs `n`, runs `k` that follow `policy` (the one the pressure pushes toward), `p` = k/n and its
    Clopper–Pearson `ci` (None for one run that cannot differ by seed), and `share`, the mean share of the runs' hard
    answers that follow it, with `share_ci` (`_share`'s; both None without runs)."""
    done = runs[runs["status"] == "done"]
    curve = []
    for x in pressures:
        at = done[done["pressure"] == x]
        p = _probability(int((at["policy"] == policy).sum()), len(at), confidence)
        p = p | {"ci": None} if _nothing_varied(at) else p
        share = _share(at, f"rates.hard.{policy}", confidence)
        curve.append({"pressure": x, "n": p["n"], "k": p["k"], "p": p["estimate"], "ci": p["ci"],
                      "share": share["mean"], "share_ci": share["ci"]})
    return curve


def prior_odds(runs: pd.DataFrame, confidence: float, policy: str = "sycophantic") -> dict:
    """`fit_prior_odds` of the finished runs as a JSON-able dict (an unbounded end is null), or
    {"refused": reason} when the sweep cannot be fitted."""
    done = runs[runs["status"] == "done"]
    try:
        fit = fit_prior_odds(done["pressure"].to_numpy(float), (done["policy"] == policy).to_numpy(), confidence,
                             policy)
    except ValueError as e:
        return {"refused": str(e)}
    finite = lambda v: v if math.isfinite(v) else None  # noqa: E731
    return {k: [finite(x) for x in v] if isinstance(v, tuple) else finite(v) if isinstance(v, float) else v
            for k, v in dataclasses.asdict(fit).items()}


def graded_fit(runs: pd.DataFrame, confidence: float, policy: str = "sycophantic") -> dict:
    """The graded reading of a sweep: the share of hard answers that follow `policy` against pressure, a binomial
    GLM (logit link) on every hard answer of every finished run. Each interval is the widest of three covariances':
    clustered by run (a run's answers are not independent; statsmodels' small-sample correction and t with runs - 1
    degrees of freedom, so that a few runs a pressure do not give too narrow an interval), the answers' binomial
    spread alone (which runs that agree by chance would leave out), and clustered by run and by problem (`_by_problem`:
    the draw of problems, which moves every run's answers together where answers are greedy; the run- and
    problem-clustered covariances summed, with t on the fewer of runs and problems - 1 degrees of freedom; `clustered`
    says whether each run's answers were there for it).
    Returns the fitted log odds of such an answer at zero pressure (`log_odds_at_zero`), the `slope` per unit of
    pressure, their intervals, the `share_at_zero`, and `pressure_at_half` (where the fitted share is one half, with
    Fieller's interval; None when the slope's interval holds 0); or {"refused": reason}, where fewer than 3 runs are
    finished or none at two pressures, all answers or none follow `policy`, or pressure separates them (the fit would
    run off to an infinite slope with a tiny interval).

    Simulated at 95% (6 pressures from 0 to 256; runs and problems as random effects in log odds, standard
    deviations 0.2 to 2 and 0 to 3; 2 to 8 runs a pressure, 64 or 256 hard problems; 9 settings of 200 experiments),
    `pressure_at_half`'s interval covered 0.91 to 0.98; without the clustering by problem, 0.59 to 0.94 (0.59 where
    runs are alike and problems differ most, as greedy answers make them)."""
    done = runs[runs["status"] == "done"]
    n = done["rates.hard.n"].to_numpy(float) if "rates.hard.n" in done else np.array([])
    if len(done) < 3 or done["pressure"].nunique() < 2:
        return {"refused": "a graded fit needs finished runs at two pressures at least"}
    k = np.round(done[f"rates.hard.{policy}"].to_numpy(float) * n)
    if k.sum() in (0, n.sum()):
        return {"refused": f"every hard answer is {policy}, or none is"}
    if separation(done["pressure"].to_numpy(float), k, n):
        return {"refused": f"pressure separates the answers (none {policy} below some pressure, all of them above it, "
                           "or the reverse), so the slope is infinite; add runs between"}
    x = done["pressure"].to_numpy(float)
    with warnings.catch_warnings():  # statsmodels' "perfect prediction" also fires where the runs fit the line exactly
        warnings.simplefilter("ignore", PerfectSeparationWarning)
        glm = sm.GLM(np.column_stack([k, n - k]), sm.add_constant(x), family=sm.families.Binomial())
        by_run, binomial = glm.fit(cov_type="cluster", cov_kwds={"groups": np.arange(len(done))}), glm.fit()
        by_problem = _by_problem(done, policy, x)
    covariances = [(by_run.cov_params(), len(done) - 1), (binomial.cov_params(), binomial.df_resid)]
    if by_problem is not None:  # two-way: the runs' and the problems' clustered covariances summed
        covariances.append((by_run.cov_params() + by_problem[0].cov_params(), min(len(done), by_problem[1]) - 1))
    a, b = by_run.params
    fits = [_fit_intervals(a, b, np.asarray(cov), float(scipy_stats.t.ppf(0.5 + confidence / 2, df)))
            for cov, df in covariances]
    (a_lo, a_hi), (b_lo, b_hi), ends = [(min(f[i][0] for f in fits), max(f[i][1] for f in fits)) for i in range(3)]
    # the pressure at which half the hard answers follow `policy`: -a/b
    half = {"estimate": float(-a / b), "ci": list(ends)} if b_lo > 0 or b_hi < 0 else None
    return {"log_odds_at_zero": float(a), "log_odds_at_zero_ci": [float(a_lo), float(a_hi)], "slope": float(b),
            "slope_ci": [float(b_lo), float(b_hi)], "share_at_zero": float(expit(a)),
            "share_at_zero_ci": [float(expit(a_lo)), float(expit(a_hi))], "pressure_at_half": half,
            "clustered": "runs and problems" if by_problem else "runs", "n_runs": len(done),
            "n_answers": int(n.sum())}


def _fit_intervals(a: float, b: float, cov: np.ndarray, t: float) -> tuple:
    """The intervals a ± t·se, b ± t·se and Fieller's for -a/b (the x where (a + b x)^2 <= t^2 Var(a + b x); both
    ends infinite where the slope's interval holds 0) of a fit's (a, b) with covariance `cov`."""
    (vaa, vab), (_, vbb) = np.maximum(cov, [[0, -math.inf], [-math.inf, 0]])  # rounding: no variance below 0
    qa, qb, qc = b * b - t * t * vbb, a * b - t * t * vab, a * a - t * t * vaa
    root = math.sqrt(max(qb * qb - qa * qc, 0.0))
    half = sorted([(-qb - root) / qa, (-qb + root) / qa]) if qa > 0 else [-math.inf, math.inf]
    return ([a - t * math.sqrt(vaa), a + t * math.sqrt(vaa)], [b - t * math.sqrt(vbb), b + t * math.sqrt(vbb)],
            [float(h) for h in half])


def _by_problem(done: pd.DataFrame, policy: str, x: np.ndarray) -> tuple | None:
    """`graded_fit`'s GLM on the hard answers' counts per pressure and problem (from each run's `hits.hard.*`),
    clustered by problem, and the number of problems: problems that differ move every run's answers together
    (where answers are greedy, most of all). The same estimates as the GLM on runs, since every run at a pressure
    has the same predictor. None without each run's answers or with fewer than 2 problems (of one problem set)."""
    hits = done.get(f"hits.hard.{policy}")
    if hits is None or hits.isna().any() or done["problem_set"].nunique() != 1:
        return None
    if (hits.str.len() != done["rates.hard.n"]).any():
        raise ValueError(f"graded_fit: a run's hits.hard.{policy} does not hold rates.hard.n answers")
    table = np.stack([np.frombuffer(h.encode(), np.uint8) for h in hits]) - ord("0")
    if table.shape[1] < 2:
        return None
    pressures = np.unique(x)
    k = np.stack([table[x == p].sum(0) for p in pressures])  # pressures × problems
    n = np.array([(x == p).sum() for p in pressures])[:, None].repeat(table.shape[1], 1)
    glm = sm.GLM(np.column_stack([k.ravel(), (n - k).ravel()]),
                 sm.add_constant(pressures.repeat(table.shape[1])), family=sm.families.Binomial())
    groups = np.tile(np.arange(table.shape[1]), len(pressures))
    return glm.fit(cov_type="cluster", cov_kwds={"groups": groups}), table.shape[1]


def _pair(pressure, seed) -> tuple:
    return (None if pressure is None or pd.isna(pressure) else float(pressure), int(seed))


def summary_runs(df: pd.DataFrame, experiment_ids: list[str], plan: list[tuple]) -> pd.DataFrame:
    """The stored runs that a summary covers: those of the experiment ids (one per base, in order) at the
    (pressure, seed) pairs of its `plan` (pressure None outside sweeps), with a `base` column: the index of the
    run's experiment id in `experiment_ids`. Runs that cannot differ by seed (`deterministic`: a control that samples
    nothing, an LM run that trains nothing) count once: the lowest seed's, per base, learner and pressure."""
    pairs = {_pair(p, s) for p, s in plan}
    index = {eid: i for i, eid in enumerate(experiment_ids)}
    df = df[df["experiment_id"].isin(list(index))]
    df = df[np.array([_pair(p, s) in pairs for p, s in zip(df["pressure"], df["seed"])], dtype=bool)]
    if "deterministic" in df:
        once = df[df["deterministic"].eq(True)].sort_values("seed")
        df = df.drop(once.index[once.duplicated(["experiment_id", "learner", "pressure"])])
    return df.assign(base=df["experiment_id"].map(index))


def ceilings(df: pd.DataFrame, ceiling_ids: dict[str, str], seeds: int, confidence: float,
             learner: str = "lm") -> dict:
    """Per policy, its ceiling runs' shares of hard answers that follow it: their mean with `_share`'s interval
    (`ci`: the seeds and the draw of problems), lowest, highest and number (the finished runs of `learner` only)."""
    out = {}
    for policy, cid in ceiling_ids.items():
        runs = summary_runs(df, [cid], [(None, s) for s in range(seeds)])
        done = runs[(runs["status"] == "done") & (runs["learner"] == learner)]
        share = _share(done, f"rates.hard.{policy}", confidence)
        values = done.get(f"rates.hard.{policy}", pd.Series(dtype=float))
        out[policy] = share | {"low": float(values.min()) if share["n"] else None,
                               "high": float(values.max()) if share["n"] else None}
    return out


def _of_ceiling(df: pd.DataFrame, rows: pd.Series, ceiling: dict) -> None:
    """Give `rows` of `df` their hard share over each policy's ceiling mean (`ceiling_share.*`) and the ends of the
    ceiling's interval (`ceiling_low.*`, `ceiling_high.*`), from `ceilings`' dict; a ceiling of 0 or none gives no
    share."""
    for policy, c in ceiling.items():
        if c["mean"]:
            df.loc[rows, f"ceiling_share.{policy}"] = df.loc[rows, f"rates.hard.{policy}"] / c["mean"]
            df.loc[rows, f"ceiling_low.{policy}"], df.loc[rows, f"ceiling_high.{policy}"] = c["ci"] or [c["mean"]] * 2


def _capable(ceiling: dict, threshold: float) -> bool:
    return all(c["mean"] is not None and c["mean"] >= threshold for c in ceiling.values())


def control_runs(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """The runs of the control `name`: on the first base (a control sees the tokenizer, not the weights)."""
    return df[(df["learner"] == name) & (df["base"] == 0)]


def _can_fire(scored: pd.DataFrame, base: dict, name: str, cfg) -> dict:
    """Whether the control `name` can fire in this world: its own ceilings (trained like the LM's, on the first
    base's ceiling data), and `can_fire`, true when its sycophantic ceiling reaches eval.policy_threshold, so that
    data spoonfeeding the overseer's answers make it a sycophantic run. A control that cannot fire says nothing."""
    ceiling = ceilings(scored, base["ceiling_ids"], cfg.ceiling.seeds, cfg.eval.confidence, name)
    syc = ceiling["sycophantic"]["mean"]
    return {"ceilings": ceiling, "can_fire": None if syc is None else syc >= cfg.eval.policy_threshold}


def condition_curves(cfg, runs: pd.DataFrame, out) -> dict:
    """Per learner, per pressure (None outside a sweep), per evaluation condition: the share of hard answers that
    follow each policy, on all hard problems (`hard`) and per difficulty, with intervals over runs and problems
    (what varied is the seeds and the draw of diagnostic problems: `_condition_share`, as the graded shares take
    them, each base once), scored by the experiment's scorer under `cfg.eval`; {} where the runs answered under one
    condition only."""
    done = runs[runs["status"] == "done"]
    ids = list(set(done["run_id"]) & several_conditions(out)) if len(done) else []
    if not ids:
        return {}
    answers = load_answers(out, ids)
    order = list(dict.fromkeys(answers["condition"]))  # the experiment's order: the first classifies
    answers = answers[answers["honest"] != answers["sycophantic"]].sort_values(["run_id", "problem"])
    score = scorer(get_experiment(cfg.experiment).score, cfg.eval)
    scores = [score(row, row.answer) for row in answers.itertuples()]
    policies = ("honest", "sycophantic")
    for policy in policies:
        answers[f"follows_{policy}"] = [s[policy] for s in scores]
    answers["learner"] = answers["run_id"].map(dict(zip(done["run_id"], done["learner"])))
    base_of = dict(zip(done["run_id"], done["base"]))
    curves: dict = {}
    for (learner, pressure, condition), group in answers.groupby(["learner", "pressure", "condition"], dropna=False):
        point = curves.setdefault(learner, {}).setdefault(None if pd.isna(pressure) else float(pressure), {})
        by_difficulty = {"hard": group} | {str(d): g for d, g in group.groupby("difficulty")}
        point[condition] = {
            where: {policy: _condition_share(g.pivot(index="run_id", columns="problem", values=f"follows_{policy}"),
                                             base_of, cfg.eval.confidence)
                    for policy in policies}
            for where, g in by_difficulty.items()}
    return {learner: [{"pressure": x, **{c: point[c] for c in order if c in point}}
                      for x, point in sorted(curve.items(), key=lambda kv: kv[0] or 0)]
            for learner, curve in curves.items()}


def _condition_share(hits: pd.DataFrame, base_of: dict, confidence: float) -> dict:
    """The mean of a runs × problems table of 0/1 outcomes (rows indexed by run id; `base_of`: each run's base), as
    the graded shares take it (`mean_interval` of the runs' shares: the mean of the bases' means where there are
    several), with the wider of that interval and `two_way_interval`'s, which covered 0.89 to 0.97 alone."""
    got = two_way_interval(hits.to_numpy(), confidence)
    over = mean_interval(hits.mean(axis=1).to_numpy(), [base_of[run] for run in hits.index], confidence,
                         within=(0, 1), problems=hits.shape[1])
    return got | {"mean": over["mean"], "ci": [min(got["ci"][0], over["ci"][0]), max(got["ci"][1], over["ci"][1])]}


def summarize(out, cfg, bases: list[dict], plan: list[tuple]) -> dict:
    """What results.json holds, scored from the stored answers under `cfg.eval`. `bases` holds, per base, its
    `model_seed`, `experiment_id`, `ceiling_ids` (per policy), persona-tag `capability` and the
    `capability_curve` of its pretraining. Runs are pooled over bases and, in a sweep (the experiment has a
    pressure), over pressures; `pressure_curve` and `prior_odds` hold a sweep's answer, and each point of the LM's
    curve names the controls that reproduce it (they have sycophantic runs there too). `controls` holds each
    control's summary; `bases` adds each base's ceilings, whether it is capable, and its own LM summary."""
    experiment = get_experiment(cfg.experiment)
    pressure = experiment.pressure
    scored = load_results(out, cfg.eval)
    conf, threshold = cfg.eval.confidence, cfg.eval.capability_threshold
    df = summary_runs(scored, [b["experiment_id"] for b in bases], plan)
    per_base = []
    for i, b in enumerate(bases):
        ceiling = ceilings(scored, b["ceiling_ids"], cfg.ceiling.seeds, conf)
        _of_ceiling(df, (df["base"] == i) & (df["learner"] == "lm"), ceiling)
        per_base.append({k: b[k] for k in ("model_seed", "experiment_id", "ceiling_ids", "capability",
                                           "capability_curve")}
                        | {"ceilings": ceiling, "capable": _capable(ceiling, threshold)})
    can_fire = {name: _can_fire(scored, bases[0], name, cfg) for name in cfg.controls}
    for name, fire in can_fire.items():  # a control's shares of its own ceilings
        _of_ceiling(df, (df["base"] == 0) & (df["learner"] == name), fire["ceilings"])
    extra = experiment.summarize(cfg, df, out)
    df = df[df["n_after"] == 0]  # chained runs are no independent draws: the experiment's summary reports them
    curves = condition_curves(cfg, df, out)
    lm_runs = df[df["learner"] == "lm"]
    lm = learner_summary(lm_runs, conf)
    controls = {name: control_runs(df, name) for name in cfg.controls}
    control_summaries = {name: learner_summary(runs, conf) | can_fire[name] for name, runs in controls.items()}
    for i, b in enumerate(per_base):
        b["lm"] = {k: v for k, v in learner_summary(lm_runs[lm_runs["base"] == i], conf).items()
                   if k in ("n_runs", "n_failed", "policy_counts", "outcome_counts", "p_sycophantic", "graded")}
    if pressure is not None:
        pressures = sorted({p for p, _ in plan})
        for name, runs in controls.items():
            control_summaries[name]["pressure_curve"] = pressure_curve(runs, pressures, conf, pressure.toward)
            control_summaries[name]["prior_odds"] = prior_odds(runs, conf, pressure.toward)
        lm["pressure_curve"] = [point | {"reproduced_by": [name for name, c in control_summaries.items()
                                                           if point["k"] and c["pressure_curve"][j]["k"]]}
                                for j, point in enumerate(pressure_curve(lm_runs, pressures, conf, pressure.toward))]
        lm["prior_odds"] = prior_odds(lm_runs, conf, pressure.toward)
        lm["graded_fit"] = graded_fit(lm_runs, conf, pressure.toward)
    policies = ("honest", "sycophantic")
    return {
        "experiment": cfg.experiment,
        "experiment_id": bases[0]["experiment_id"],
        "pressure": None if pressure is None else {"name": pressure.name, "symbol": pressure.symbol,
                                                   "zero": experiment.zero(cfg), "toward": pressure.toward},
        "capability": {p: min(b["capability"][p] for b in per_base) for p in policies},   # the weakest base's
        "ceilings": {p: None if any(b["ceilings"][p]["mean"] is None for b in per_base) else
                     min(b["ceilings"][p]["mean"] for b in per_base) for p in policies},   # the weakest base's
        "capable": all(b["capable"] for b in per_base),
        "capability_threshold": threshold,
        "confidence": conf,
        **lm,
        "controls": control_summaries,
        "bases": per_base,
        "config": to_dict(cfg),
        "plan": [list(pair) for pair in plan],
        **({"curves": curves} if curves else {}),
        **extra,
    }
