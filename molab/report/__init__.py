"""The HTML report: tables and matplotlib plots (embedded as PNG), read from the store and results.json."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from molab.analysis.policy import POLICIES  # noqa: E402
from molab.store import load_results  # noqa: E402

COLORS = {"honest": "#2a9d8f", "sycophantic": "#e76f51", "other": "#adb5bd"}
LEARNER_NAMES = {"lm": "language model", "bigram": "bigram-table control"}


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _per_run_plot(runs, threshold: float) -> str:
    """Stacked bars: for every run, the shares of its hard answers that are honest / sycophantic / other;
    the dotted line is the share a run needs to be classified as following a policy."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.2), sharey=True)
    for ax, learner in zip(axes, ("lm", "bigram")):
        df = runs[(runs["learner"] == learner) & (runs["status"] == "done")].sort_values("seed")
        bottom = 0
        for policy in POLICIES:
            values = df[f"rates.hard.{policy}"].to_numpy()
            ax.bar(df["seed"].astype(str), values, bottom=bottom, color=COLORS[policy], label=policy)
            bottom = bottom + values
        ax.axhline(threshold, color="black", linestyle=":", linewidth=1)
        ax.set_title(f"{LEARNER_NAMES[learner]}: answers on hard problems, per run")
        ax.set_xlabel("seed")
        ax.tick_params(axis="x", labelsize=7)
    axes[0].set_ylabel("share of answers")
    axes[0].legend(loc="upper center", bbox_to_anchor=(1.0, -0.2), ncol=3, fontsize=8)
    return _png(fig)


def _difficulty_plot(results: dict) -> str:
    """Mean rate of each policy by difficulty, LM (solid) beside the bigram control (dashed)."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for learner, summary, style in (("lm", results, "-o"), ("bigram", results["bigram_control"], "--s")):
        levels = list(summary["per_difficulty"])
        for policy in POLICIES:
            ax.plot(levels, [summary["per_difficulty"][d][policy] for d in levels], style, color=COLORS[policy],
                    label=f"{LEARNER_NAMES[learner]}: {policy}")
    ax.set_xlabel("difficulty (carries)")
    ax.set_ylabel("mean share of answers")
    ax.set_ylim(-0.05, 1.05)
    ax.legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")
    return _png(fig)


def _fmt_p(p: dict) -> str:
    if p["estimate"] is None:
        return "no runs"
    lo, hi = p["ci"]
    return f"{p['k']}/{p['n']} = {p['estimate']:.2f} [{lo:.3f}, {hi:.3f}]"


def _table(rows: list[list], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_report(out: str | Path, results: dict | None = None) -> Path:
    """Write `out/report.html` from results.json and the store; returns its path."""
    out = Path(out)
    results = results or json.loads((out / "results.json").read_text())
    runs = load_results(out)
    runs = runs[(runs["experiment_id"] == results["experiment_id"]) & (runs["seed"] < results["config"]["seeds"])]
    cap, conf = results["capability"], results["confidence"]
    verdict = ("capable of both policies" if results["capable"] else
               "NOT capable of both policies: the inductive-bias result below is not meaningful")
    learners = [("language model", results), ("bigram-table control", results["bigram_control"])]
    summary_rows = [[name, s["n_runs"], s["n_failed"], *(s["policy_counts"][p] for p in POLICIES),
                     _fmt_p(s["p_sycophantic"]), _fmt_p(s["p_honest"])] for name, s in learners]
    rate_rows = [[name, group, *(f"{(s['rates'][group] or {}).get(p, float('nan')):.3f}" for p in POLICIES)]
                 for name, s in learners for group in ("easy", "hard")]
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>molab report: {results['experiment']}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}} pre{{background:#f6f6f6;padding:1em}}</style></head><body>
<h1>molab: {html.escape(results['experiment'])} experiment</h1>
<h2>Capability check</h2>
<p>Accuracy of each policy on hard diagnostic problems when the base is asked for it by its persona tag
(threshold {results['capability_threshold']}): the base is <b>{verdict}</b>.</p>
{_table([[p, f"{a:.3f}"] for p, a in cap.items()], ["policy asked for", "accuracy"])}
<h2>Which policy do runs learn?</h2>
<p>Each run is classified by its answers on hard problems (where honest and sycophantic differ);
intervals are {conf:.0%} Clopper–Pearson over runs.</p>
{_table(summary_rows, ["learner", "runs", "failed", *POLICIES, "P(sycophantic)", "P(honest)"])}
{_per_run_plot(runs, results["config"]["eval"]["policy_threshold"])}
<h2>Easy (in distribution) and hard problems</h2>
<p>On easy problems the two policies agree, so an answer there can count as both.</p>
{_table(rate_rows, ["learner", "problems", *POLICIES])}
{_difficulty_plot(results)}
<h2>Config</h2><pre>{html.escape(json.dumps(results['config'], indent=1))}</pre>
</body></html>"""
    path = out / "report.html"
    path.write_text(page)
    return path
