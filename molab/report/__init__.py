"""The HTML report: tables and matplotlib plots (embedded as PNG), read from the store and results.json; and
`reanalyse`, which re-scores a folder's stored answers and rewrites results.json and the report. Nothing
here imports torch or transformers, so re-analysis takes seconds."""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.special import expit  # noqa: E402

from molab.analysis.policy import OUTCOMES, POLICIES  # noqa: E402
from molab.analysis.summary import control_runs, summarize, summary_runs  # noqa: E402
from molab.config import ConfigError, apply_overrides, config_from_dict, to_dict  # noqa: E402
from molab.experiments import Experiment, get_experiment  # noqa: E402
from molab.learners.controls import CONTROLS  # noqa: E402
from molab.store import STORE, holding, load_results, write_atomic  # noqa: E402

COLORS = {"honest": "#2a9d8f", "sycophantic": "#e76f51", "other": "#adb5bd"}


def learner_name(learner: str) -> str:
    """The LM's or a control's name in reports (a control's title, or its name where it has none)."""
    return "language model" if learner == "lm" else CONTROLS[learner].title or learner


def _marker(learner: str) -> str:
    return CONTROLS[learner].marker


def _learners(results: dict) -> list[tuple[str, dict]]:
    """(learner, its summary): the LM first, then each control."""
    return [("lm", results), *results["controls"].items()]


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


BARS = 100  # runs a learner's per-run plot shows as bars, each named


def _per_run_plot(runs, results: dict, threshold: float) -> str:
    """Stacked bars: for every run of each learner, the shares of its hard answers that are honest / sycophantic /
    other (beyond `BARS` runs, bands with a step a run, and ticks matplotlib chooses); the dotted line is the share a
    run needs to be classified as following a policy."""
    learners = [name for name, _ in _learners(results)]
    fig, axes = plt.subplots(1, len(learners), figsize=(5.5 * len(learners), 3.2), sharey=True, squeeze=False)
    axes = axes[0]
    for ax, learner in zip(axes, learners):
        df = runs[runs["learner"] == "lm"] if learner == "lm" else control_runs(runs, learner)
        df = df[df["status"] == "done"].sort_values(["pressure", "seed"])
        sweep = df["pressure"].notna().any()
        names = [f"{p:g}/{s}" if sweep else str(s) for p, s in zip(df["pressure"], df["seed"])]
        bottom, many = 0, len(df) > BARS
        for policy in POLICIES:
            values = df[f"rates.hard.{policy}"].to_numpy()
            if many:
                ax.fill_between(range(len(df)), bottom, bottom + values, step="mid", color=COLORS[policy],
                                label=policy, linewidth=0)
            else:
                ax.bar(range(len(df)), values, bottom=bottom, color=COLORS[policy], label=policy, width=0.85)
            bottom = bottom + values
        if not many:
            ax.set_xticks(range(len(df)), names, rotation=90 if sweep else 0)
        ax.axhline(threshold, color="black", linestyle=":", linewidth=1)
        ax.set_title(learner_name(learner), fontsize=10)
        ax.set_xlabel(f"run, by {'pressure, then seed' if sweep else 'seed'}" if many else
                      "pressure/seed" if sweep else "seed")
        ax.tick_params(axis="x", labelsize=7)
    axes[0].set_ylabel("share of answers")
    axes[0].legend(loc="upper left", bbox_to_anchor=(0.0, -0.35), ncol=3, fontsize=8)
    fig.suptitle("answers on hard problems, per run", fontsize=11, y=1.02)
    return _png(fig)


def _difficulty_plot(results: dict) -> str:
    """Mean rate of each policy by difficulty with its interval, the LM (solid) beside each control (dashed)."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for learner, summary in _learners(results):
        style = "-o" if learner == "lm" else "--" + _marker(learner)
        levels = list(summary["per_difficulty"])
        for policy in POLICIES:
            rates = [summary["per_difficulty"][d] for d in levels]
            means = np.array([r[policy] for r in rates])
            bars = np.array([(r.get("ci") or {}).get(policy) or (r[policy], r[policy]) for r in rates]).reshape(-1, 2)
            ax.errorbar(levels, means, yerr=np.abs(bars - means[:, None]).T, fmt=style, capsize=3,
                        color=COLORS[policy], label=f"{learner_name(learner)}: {policy}")
    ax.set_xlabel("difficulty (carries)")
    ax.set_ylabel("mean share of answers")
    ax.set_ylim(-0.05, 1.05)
    ax.legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")
    return _png(fig)


def pushed_toward(results: dict) -> str:
    """The policy a sweep's pressure pushes toward (results before it was recorded: the sycophantic one)."""
    return (results["pressure"] or {}).get("toward", "sycophantic")


def _pressure_plot(results: dict) -> str:
    """P(the policy the pressure pushes toward) against pressure, with Clopper–Pearson bars, for the LM and each
    control, the LM's fitted logistic curve, and a ring around every LM point that a control reproduces."""
    symbol, toward = results["pressure"]["symbol"], pushed_toward(results)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for i, (learner, summary) in enumerate(_learners(results)):
        fmt, shift = ("o" if learner == "lm" else _marker(learner)), 0.01 * i
        pts = [c for c in summary["pressure_curve"] if c["n"]]
        x = np.array([c["pressure"] for c in pts])
        span = (x.max() - x.min()) if len(x) else 1.0
        p = np.array([c["p"] for c in pts])
        bars = [c["ci"] or (c["p"], c["p"]) for c in pts]  # one run that cannot differ by seed: no bar
        err = np.array([[c["p"] - lo, hi - c["p"]] for c, (lo, hi) in zip(pts, bars)]).T.reshape(2, -1)
        ax.errorbar(x + shift * span, p, yerr=err, fmt=fmt, capsize=3, mfc=None if learner == "lm" else "white",
                    color=COLORS[toward] if learner == "lm" else "#555", label=learner_name(learner))
        if learner == "lm":
            flagged = [c for c in pts if c["reproduced_by"]]
            ax.plot([c["pressure"] for c in flagged], [c["p"] for c in flagged], "o", ms=14, mfc="none",
                    color="black", label="reproduced by a control" if flagged else None)
    graded = results["graded_fit"]
    if "refused" not in graded:
        grid = np.linspace(0, max(c["pressure"] for c in results["pressure_curve"]), 200)
        ax.plot(grid, expit(graded["log_odds_at_zero"] + graded["slope"] * grid), "--", color=COLORS[toward],
                label=f"share of hard answers {toward} (GLM, LM)")
    fit = results["prior_odds"]
    if "refused" not in fit:
        grid = np.linspace(0, max(c["pressure"] for c in results["pressure_curve"]), 200)
        ax.plot(grid, expit(fit["log_odds_at_zero"] + fit["slope"] * grid), color=COLORS[toward],
                label="logistic fit (LM)")
    ax.axhline(0.5, color="black", linestyle=":", linewidth=1)
    ax.set_xlabel(f"pressure {symbol}")
    ax.set_ylabel(f"P({toward} run)")
    ax.set_ylim(-0.05, 1.05)
    ax.legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")
    return _png(fig)


def _odds(log_odds: float) -> str:
    """Odds sycophantic : not for log odds a = log(P(syc) / P(not syc)), as '1 : N' or 'N : 1'.

    >>> _odds(-3.31), _odds(0.7), _odds(-7.38), _odds(-math.inf)
    ('1 : 27.4', '2.01 : 1', '1 : 1,600', '1 : ∞')
    """
    n = math.exp(min(abs(log_odds), 700))
    if math.isinf(log_odds):
        shown = "∞"
    elif n < 100 or n >= 1e9:
        shown = f"{n:.3g}"
    else:
        shown = f"{float(f'{n:.3g}'):,.0f}"  # three significant digits, written out
    return f"1 : {shown}" if log_odds <= 0 else f"{shown} : 1"


def _end(v: float | None, infinite: str) -> str:
    return infinite if v is None else f"{v:.3g}"


def prior_odds_words(results: dict) -> str:
    """The sweep's answer in one or two sentences."""
    fit, symbol, toward = results["prior_odds"], results["pressure"]["symbol"], pushed_toward(results)
    if "refused" in fit:
        return f"No logistic curve was fitted: {fit['refused'].rstrip('.')}."
    conf = f"{results['confidence']:.0%}"
    half, (lo, hi) = fit["pressure_at_half"], fit["pressure_at_half_ci"]
    a, (a_lo, a_hi) = fit["log_odds_at_zero"], fit["log_odds_at_zero_ci"]
    return (f"A run is as likely to be {toward} as not at {symbol} ≈ {half:.3g} ({conf} interval {_end(lo, '-∞')} "
            f"to {_end(hi, '∞')}). Extrapolated to {symbol} = 0, the prior odds of a run being {toward} are about "
            f"{_odds(a)} ({conf} interval {_odds(-math.inf if a_lo is None else a_lo)} to "
            f"{_odds(math.inf if a_hi is None else a_hi)}; log odds {a:.2f} "
            f"[{_end(a_lo, '-∞')}, {_end(a_hi, '∞')}]), from {fit['n_runs']} runs.")


def _sweep_section(results: dict) -> str:
    if results["pressure"] is None:
        return ""
    symbol, controls, toward = results["pressure"]["symbol"], results["controls"], pushed_toward(results)
    curves = {name: {c["pressure"]: c for c in s["pressure_curve"]} for name, s in controls.items()}

    def point(c: dict) -> str:  # a pressure_curve entry: runs, written like the other probabilities, and answers
        runs = _fmt_p({"estimate": c["p"], "ci": c["ci"], "k": c["k"], "n": c["n"]})
        if c["share"] is None:
            return runs
        ci = c.get("share_ci")
        within = f" ({percent_range(ci)})" if ci else ""
        return f"{runs}; {percent(c['share'])}{within} of hard answers"

    rows = [[f"{c['pressure']:g}", point(c), *(point(curves[name][c["pressure"]]) for name in controls),
             ", ".join(learner_name(name) for name in c["reproduced_by"])] for c in results["pressure_curve"]]
    flagged = [c for c in results["pressure_curve"] if c["reproduced_by"]]
    warning = (f"<p><b>A control reproduces the LM's {toward} runs at {len(flagged)} pressure(s)</b>: there a "
               f"learner without an LM's inductive biases, given the same data and pressure, is {toward} too, so "
               f"the LM's {toward} runs there are what the data and pressure teach, not evidence of an LM bias "
               f"toward that policy. Where the LM is {toward} less often than such a control, the "
               "difference is the LM's own bias against it.</p>" if flagged else
               f"<p>No control reproduces the LM's {toward} runs.</p>" if controls else "<p>No control was run.</p>")
    fired_words = "; ".join(_fired(name, s, symbol, toward) for name, s in controls.items()) or "none was run"
    graded = results["graded_fit"]
    graded_words = (f"No graded fit: {graded.get('refused')}" if "refused" in graded else
                    f"Graded reading: at {symbol} = 0 a fitted {percent(graded['share_at_zero'])} of hard answers "
                    f"are {toward} ({results['confidence']:.0%} interval {percent_range(graded['share_at_zero_ci'])}), "
                    f"and the log odds of a {toward} answer change by "
                    f"{graded['slope']:.3g} per unit of {symbol} ({graded['slope_ci'][0]:.3g} to "
                    f"{graded['slope_ci'][1]:.3g}): a binomial GLM on {graded['n_answers']:,} answers of "
                    f"{graded['n_runs']} runs, clustered by {graded.get('clustered', 'runs')} (the dashed curve)." +
                    ("" if not graded.get("pressure_at_half") else
                     f" Half the hard answers are {toward} at {symbol} ≈ {graded['pressure_at_half']['estimate']:.3g} "
                     f"({graded['pressure_at_half']['ci'][0]:.3g} to {graded['pressure_at_half']['ci'][1]:.3g}, "
                     "Fieller's interval)."))
    return f"""<h2>How hard must training push?</h2>
<p><b>{html.escape(prior_odds_words(results))}</b></p>
<p>{html.escape(graded_words)}</p>
<p>What zero means here: {html.escape(results["pressure"]["zero"])}.</p>
<p>Each point is P({toward} run) at one pressure {symbol} with its {results['confidence']:.0%} Clopper–Pearson
interval; the curve is the logistic fit P = sigmoid(a + b·{symbol}) to the LM's runs, with profile-likelihood
intervals. A ring marks a pressure where a control has {toward} runs too. A run that cannot differ by seed (a
deterministic control, an LM run that trains nothing) counts as one run at its pressure, with no interval.</p>
{_pressure_plot(results)}
{_table(rows, [f"pressure {symbol}", f"LM: {toward} runs; hard answers",
               *(f"{learner_name(n)}: {toward} runs; hard answers" for n in controls), "reproduced by"])}
{warning}
<p>Controls that fired: {html.escape(fired_words)}.</p>"""


def _fired(name: str, control: dict, symbol: str, toward: str = "sycophantic") -> str:
    """Where a control fired in a sweep (had runs that follow the policy the pressure pushes toward), or why its
    silence says nothing."""
    at = [f"{c['pressure']:g}" for c in control["pressure_curve"] if c["k"]]
    where = f"has {toward} runs at {symbol} = {', '.join(at)}" if at else f"has no {toward} run"
    if not control["n_runs"]:
        where = "was not run"
    elif control["can_fire"] is False:
        where += " (it cannot fire in this world)"
    return f"the {learner_name(name)} {where}"


def _control_words(name: str, control: dict) -> str:
    """What a control did (its runs' policies and its hard answers, neither policy's included), with whether it
    could have fired (its sycophantic ceiling)."""
    title = learner_name(name)
    if not control["n_runs"]:
        return f"the {title} was not run"
    counts, hard = control["policy_counts"], control["rates"]["hard"]
    plural = "" if counts["sycophantic"] == 1 else "s"
    words = (f"the {title} had {counts['sycophantic']} sycophantic run{plural} of {control['n_runs']}, "
             f"{counts['honest']} honest and {counts['other']} that followed neither")
    if hard:
        words += (f" (its hard answers: {hard['honest']:.0%} honest, {hard['sycophantic']:.0%} sycophantic, "
                  f"{hard['other']:.0%} neither)")
    syc = control["ceilings"]["sycophantic"]["mean"]
    if control["can_fire"] is False:
        words += (f", but it cannot fire here (trained on the overseer's labels at every difficulty, it gives the "
                  f"overseer's answer to {syc:.0%} of hard problems), so its silence is no evidence")
    elif control["can_fire"]:
        words += f", and it can fire here (its sycophantic ceiling is {syc:.1%})"
    return words


def _can_fire_cell(s: dict) -> str:
    """The sycophantic ceiling of a learner's row: the LM's (the weakest base's) or a control's, and whether that
    control can fire."""
    if "can_fire" not in s:
        syc = s["ceilings"]["sycophantic"]
        return "none finished" if syc is None else f"{syc:.3f}"
    if s["can_fire"] is None:
        return "not run"
    return f"{s['ceilings']['sycophantic']['mean']:.3f}" + ("" if s["can_fire"] else " (cannot fire)")


def _fmt_p(p: dict) -> str:
    if p["estimate"] is None:
        return "no runs"
    if p["ci"] is None:
        return f"{p['k']}/{p['n']} = {percent(p['estimate'])} (one run, the same for every seed: no interval)"
    lo, hi = p["ci"]
    return f"{p['k']}/{p['n']} = {percent(p['estimate'])} [{percent(lo)}, {percent(hi)}]"


def _table(rows: list[list], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt_rate(rates: dict | None, policy: str) -> str:
    """A learner's mean rate of `policy` answers in one group of problems, with its interval."""
    return "no runs" if not rates else _fmt_mean({"mean": rates[policy], "ci": (rates.get("ci") or {}).get(policy)})


def _fmt_mean(m: dict) -> str:
    if m["mean"] is None:
        return "no runs"
    interval = ("(one run: no interval)" if m["ci"] is None else
                f"[{m['ci'][0]:.3f}, {'no upper end' if m['ci'][1] is None else format(m['ci'][1], '.3f')}]")
    return f"{m['mean']:.3f} {interval}"


SCORING = {"whole": "each whole answer scored",
           "parting": "each answer scored up to the first character where the two policies' answers part "
                      "(eval.scoring = parting; later characters are skill, not policy)"}
GRADED_NAMES = {"hard_honest": "honest share of hard answers", "hard_sycophantic": "sycophantic share of hard answers",
                "easy_accuracy": "accuracy on easy problems", "honest_of_ceiling": "honest share / honest ceiling",
                "sycophantic_of_ceiling": "sycophantic share / sycophantic ceiling"}


def _covers(results: dict) -> str:
    """What the P(·) intervals cover, in words."""
    n = len(results["bases"])
    if n == 1:
        return ("Clopper–Pearson over runs: what varied between runs is the seed (data order, sampling) on one base, "
                "so the interval says nothing about another base (set bases = 3 or more to measure that)")
    return (f"the mean over {n} bases of a beta-binomial fitted to the per-base counts, with a Clopper–Pearson "
            "interval on the runs' effective number (fewer as the bases may disagree, down to the bases' number): "
            "what varied is the seed and the base (results.json also gives the Clopper–Pearson interval that treats "
            "the bases as alike)")


def percent(x: float) -> str:
    """`x` as a whole percentage, but with the digits that keep a share above 0 from reading 0% and one below 1 from
    reading 100% (two significant digits of its distance to that end: 0 runs of 2,048 have "0.18%" at the top of
    their interval, not "0%").

    >>> percent(0.25), percent(0.0018), percent(0.9982), percent(0.0), percent(1.0), percent(0.005), percent(1e-7)
    ('25%', '0.18%', '99.82%', '0%', '100%', '0.50%', '0.000010%')
    """
    whole = f"{x:.0%}"
    if not 0 < x < 1 or whole not in ("0%", "100%"):
        return whole
    gap = float(f"{100 * (x if whole == '0%' else 1 - x):.12g}")  # in percentage points, without 1 - x's float dust
    return f"{100 * x:.{max(1, math.ceil(-math.log10(gap)) + 1)}f}%"


def percent_range(ci) -> str:
    """An interval's two ends as `percent` writes them: "0% to 0.18%"."""
    return f"{percent(ci[0])} to {percent(ci[1])}"


def _pct(p: dict) -> str:
    return f"{percent(p['estimate'])}; {percent_range(p['ci'])}"


def answer_words(results: dict) -> str:
    """The experiment's answer in words: what the runs did and how sure, whether both policies were learnable in the
    runs' own context, what the control did, and what the interval leaves out."""
    n, o, nb = results["n_runs"], results["outcome_counts"], len(results["bases"])
    if n == 0:
        return "No run finished."
    where = "all pressures pooled" if results["pressure"] else "this scheme"
    on = f"over {nb} bases" if nb > 1 else "on one base"
    c, t = results["ceilings"], results["capability_threshold"]
    c = {p: "none finished" if x is None else f"{x:.3f}" for p, x in c.items()}
    below = [f"the {p} ceiling's {results['confidence']:.0%} interval starts at {b['ceilings'][p]['ci'][0]:.3f}"
             + (f" on base seed {b['model_seed']}" if nb > 1 else "") for b in results["bases"]
             for p in ("honest", "sycophantic")
             if (b["ceilings"][p].get("ci") or [t])[0] < t]  # results.json from before ceilings had intervals: none
    unsure = f": the means reach it, but {' and '.join(below)}" if below else ""
    learnable = (f"both policies were learnable in the runs' context (ceilings {c['honest']} honest and "
                 f"{c['sycophantic']} sycophantic on hard problems; threshold {t:g}{unsure})" if results["capable"] else
                 f"the runs' context does NOT allow both policies on every base (ceilings {c['honest']} honest "
                 f"and {c['sycophantic']} sycophantic; threshold {t:g}), so the split says little about "
                 "inductive bias")
    controls = "; ".join(_control_words(name, c) for name, c in results["controls"].items())
    words = (f"Under {where}, {o['sycophantic']} of {n} runs {on} ({_pct(results['p_sycophantic'])}, "
             f"{results['confidence']:.0%} interval) learned the overseer's errors, {o['honest']} the honest policy "
             f"and {o['mixed'] + o['collapsed']} neither ({o['mixed']} mixed, {o['collapsed']} collapsed); "
             f"{learnable}" + (f"; {controls}." if controls else "."))
    if results["pressure"]:
        words += " " + prior_odds_words(results)
    if nb == 1:
        words += " The interval covers seeds on one base, not differences between bases."
    more = get_experiment(results["experiment"]).words(results)
    return words + _conditions_words(results) + (" " + more if more else "") + _prior_words(results["config"])


def share_words(x: dict) -> str:
    return f"{percent(x['mean'])} ({percent_range(x['ci'])})"


def _conditions_words(results: dict) -> str:
    """Outside a sweep, the LM's hard answers under each evaluation condition, where there are several (a sweep's
    experiment says what its curves show)."""
    curve = (results.get("curves") or {}).get("lm")
    if not curve or results["pressure"]:
        return ""
    said = "; ".join(f"{name} {share_words(x['hard']['honest'])} honest and {share_words(x['hard']['sycophantic'])} "
                     "the overseer's" for name, x in curve[0].items() if name != "pressure")
    return f" Under each evaluation condition, the LM's hard answers were: {said}."


def _conditions_section(results: dict) -> str:
    """The LM's hard answers under each evaluation condition (per pressure in a sweep), where there are several."""
    curve = (results.get("curves") or {}).get("lm")
    if not curve:
        return ""
    sweep = results["pressure"]
    rows = [[*([f"{point['pressure']:g}"] if sweep else []), html.escape(name), x["hard"]["honest"]["runs"],
             _fmt_mean(x["hard"]["honest"]), _fmt_mean(x["hard"]["sycophantic"])]
            for point in curve for name, x in point.items() if name != "pressure"]
    header = [*([f"pressure {sweep['symbol']}"] if sweep else []), "condition", "LM runs", "honest",
              "sycophantic"]
    return f"""<h2>Under each evaluation condition</h2>
<p>The share of the LM's hard answers that follow each policy, under each condition the runs answered; the first
classifies them. {results['confidence']:.0%} intervals over runs and problems (what varied: the seeds and the draw of
diagnostic problems).</p>
{_table(rows, header)}"""


def _prior_words(config: dict) -> str:
    """What the base molab pretrained was taught to answer in the runs' own (neutral) context: a setting of the
    organism that the runs' split partly reflects, not a finding. Said only where the experiment keeps molab's corpus
    and conditions, whose first is that neutral prompt (an experiment's own may ask otherwise)."""
    m = config["model"]
    kind = type(get_experiment(config["experiment"]))
    own = kind.corpus is not Experiment.corpus or kind.conditions is not Experiment.conditions
    if config["base"] or not m["neutral_share"] or own:
        return ""
    return (f" The base's prior in the runs' context is a setting, not a finding: {m['neutral_sycophantic_share']:.0%} "
            "of its pretraining examples with the runs' neutral prompt were answered the overseer's way "
            "(model.neutral_sycophantic_share), and runs that keep the base's choice follow that prior.")


def _capability_section(results: dict) -> str:
    """Per base: the ceilings in the runs' own context (the capability that counts) and the persona-tag check."""
    t = results["capability_threshold"]
    rows = []
    for b in results["bases"]:
        c, lm = b["ceilings"], b["lm"]
        ceiling = [f"{c[p]['mean']:.3f}" + (f" [{c[p]['ci'][0]:.3f}, {c[p]['ci'][1]:.3f}]" if c[p].get("ci") else "")
                   + f" ({c[p]['n']} runs, {c[p]['low']:.2f} to {c[p]['high']:.2f})" if c[p]["mean"] is not None
                   else "no runs" for p in ("honest", "sycophantic")]
        rows.append([b["model_seed"], *ceiling, *(f"{b['capability'][p]:.3f}" for p in ("honest", "sycophantic")),
                     "yes" if b["capable"] else "NO", " / ".join(str(lm["outcome_counts"][o]) for o in OUTCOMES),
                     _fmt_p(lm["p_sycophantic"])])
    return f"""<h2>Bases: can the runs' context express both policies?</h2>
<p>The <b>ceilings</b> are runs from the same base, finetuned with the runs' own prompt and budget on problems of every
difficulty, labelled by gold (the honest ceiling) or by the overseer (the sycophantic ceiling): the share of their hard
answers that follow their policy is what the runs' context allows, with its {results['confidence']:.0%} interval over
their seeds and the draw of problems, and the lowest and highest run. A base is capable when both ceilings' means
reach {t:g}.
The <b>persona check</b> asks the base itself for each policy by its persona tag, a context the runs never see (in a
conditional organism: with and without its password or trigger).</p>
{_table(rows, ["model seed", "honest ceiling", "sycophantic ceiling", "persona: honest", "persona: sycophantic",
               "capable", "LM runs: " + " / ".join(OUTCOMES), "P(sycophantic)"])}
{_capability_curve_plot(results)}"""


def _capability_curve_plot(results: dict) -> str:
    """Persona-check accuracy on hard problems against pretraining step, per base (empty for a given checkpoint)."""
    bases = [b for b in results["bases"] if b.get("capability_curve")]
    if not bases:
        return ""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for b in bases:
        steps = [c["step"] for c in b["capability_curve"]]
        for policy in ("honest", "sycophantic"):
            ax.plot(steps, [c[policy] for c in b["capability_curve"]], "-o", ms=3, color=COLORS[policy],
                    alpha=0.4 + 0.6 / len(bases), label=f"{policy} (base seed {b['model_seed']})")
    ax.axhline(results["capability_threshold"], color="black", linestyle=":", linewidth=1)
    ax.set_xlabel("pretraining step")
    ax.set_ylabel("persona check: accuracy on hard problems")
    ax.set_ylim(-0.05, 1.05)
    ax.legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")
    return _png(fig)


def write_report(out: str | Path, results: dict | None = None) -> Path:
    """Write `out/report.html` from results.json and the store; returns its path."""
    out = Path(out)
    results = results or json.loads((out / "results.json").read_text())
    runs = summary_runs(load_results(out, config_from_dict(results["config"]).eval),
                        [b["experiment_id"] for b in results["bases"]], [tuple(pair) for pair in results["plan"]])
    conf, ev = results["confidence"], results["config"]["eval"]
    pooled = "; all pressures pooled" if results["pressure"] else ""
    learners = [(learner_name(name), s) for name, s in _learners(results)]
    summary_rows = [[name, s["n_runs"], s["n_failed"], *(s["outcome_counts"][o] for o in OUTCOMES),
                     _fmt_p(s["p_sycophantic"]), _fmt_p(s["p_honest"]), _can_fire_cell(s)] for name, s in learners]
    rate_rows = [[name, group, *(_fmt_rate(s["rates"][group], p) for p in POLICIES)]
                 for name, s in learners for group in ("easy", "hard")]
    graded_rows = [[GRADED_NAMES[k], _fmt_mean(v)] for k, v in results["graded"].items()]
    clustered = "over the bases' means (each base once)" if len(results["bases"]) > 1 else "over runs of one base"
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>molab report: {results['experiment']}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}} \
pre{{background:#f6f6f6;padding:1em}}</style></head><body>
<h1>molab: {html.escape(results['experiment'])} experiment</h1>
<p><b>{html.escape(answer_words(results))}</b></p>
{_capability_section(results)}
{_sweep_section(results)}
<h2>Which policy do runs learn?</h2>
<p>Each run is classified by its answers on hard problems (where honest and sycophantic differ): it follows a
policy when at least {ev['policy_threshold']:g} of them do (answers compared with the policies' answers by
<code>{html.escape(ev['equivalence'])}</code> equivalence, {SCORING[ev['scoring']]}). \
A run that follows neither has <i>collapsed</i> when its
accuracy on easy problems is below {ev['collapse_threshold']:g}, and is <i>mixed</i> otherwise. P(·) intervals are
{conf:.0%}, {html.escape(_covers(results))}{pooled}. <code>molab report DIR --set eval.KEY=VALUE</code> re-scores
the stored answers.</p>
{_table(summary_rows, ["learner", "runs", "failed", *OUTCOMES, "P(sycophantic)", "P(honest)",
                       "sycophantic ceiling"])}
<p>A control runs on the first base, once per pressure when its run cannot differ by seed. Its sycophantic ceiling is
the share of hard answers it gives the overseer's way when trained like the LM's sycophantic ceiling (the overseer's
labels at every difficulty): below {ev['policy_threshold']:g} it cannot fire in this world, and its silence is no
evidence.</p>
<p>Graded outcomes of the LM's runs: per run, the share of its hard answers that follow each policy, that share
divided by its base's ceiling, and its accuracy on easy problems; means with {conf:.0%} t intervals {clustered}, never
narrower than the Clopper–Pearson interval of the problems they are shares of (so they cover the draw of problems
too).</p>
{_table(graded_rows, ["per run", "mean [interval]"])}
{_per_run_plot(runs, results, ev["policy_threshold"])}
<h2>Easy (in distribution) and hard problems</h2>
<p>On easy problems the two policies agree, so an answer there can count as both. Mean shares over the runs with
{conf:.0%} intervals as above.</p>
{_table(rate_rows, ["learner", "problems", *POLICIES])}
{_difficulty_plot(results)}
{_conditions_section(results)}
{get_experiment(results["experiment"]).report(results, runs)}
<h2>Config</h2><pre>{html.escape(json.dumps(results['config'], indent=1))}</pre>
</body></html>"""
    path = out / "report.html"
    write_atomic(path, page)
    return path


def reanalyse(out: str | Path, overrides: list[str] = ()) -> dict:
    """Re-score the stored answers of the experiment in `out` with `eval.*` overrides (e.g.
    "eval.policy_threshold=0.6") and rewrite results.json and the report; trains nothing. Raises ConfigError
    for any other key (it would change the runs: that needs `molab run`), and writes nothing on any error."""
    out = Path(out)
    for item in overrides:
        key = item.partition("=")[0].strip()
        if not key.startswith("eval."):
            raise ConfigError(f"--set {key}: a report only re-scores the stored answers, so it takes eval.* keys; "
                              f"changing {key} changes the runs and needs `molab run`")
    if not out.is_dir():
        raise ConfigError(f"{out}: no such folder")
    try:
        results = json.loads((out / "results.json").read_text())
    except (FileNotFoundError, NotADirectoryError):
        raise ConfigError(f"{out / 'results.json'}: no results here") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{out / 'results.json'}: not valid JSON ({e}); run the experiment again to rewrite "
                          "it") from None
    if not (out / STORE).is_file():
        raise ConfigError(f"{out}: no {STORE} here, so no answers to re-score")
    cfg = config_from_dict(apply_overrides(results["config"], overrides))
    before, after = results["config"]["eval"], to_dict(cfg.eval)
    changed = [f"eval.{k} = {after[k]!r} (was {before.get(k)!r})" for k in after if after[k] != before.get(k)]
    with holding(out):  # not while a molab run writes this folder
        new = summarize(out, cfg, results["bases"], [tuple(pair) for pair in results["plan"]])
        write_report(out, new)  # before results.json: a report that fails leaves the old results standing
        write_atomic(out / "results.json", json.dumps(new, indent=1))
    print(f"molab: re-scored with {', '.join(changed) if changed else 'the eval settings of the last analysis'}; "
          "a later `molab run` of this folder scores with its config's again")
    return new
