"""The diversity experiment: does any run find the sycophantic policy when runs are pushed to generalise
differently from the runs before them?

A chain of `diversity.runs` (K) runs on one base. The first is a plain run (the oversight experiment's seed 0);
run k (seeds 1..K-1, pressure α = `diversity.alpha`) finetunes on the same labelled data with one more term:
disagreement with every earlier run on unlabelled prompts (`diversity.prompts`: hard problems by default, never the
diagnostic set), weighted by α. Each earlier run is represented by its greedy answers to those prompts, stored with
it, so a later run needs no earlier weights, and a resumed chain continues from its last finished run.

Disagreement on generated answers, after D-BAT (Pagliardini et al. 2023): for an earlier run's answer a to prompt x,
the loss is -log P(the two runs' answers differ) = -log(1 - p(a | x)), where p is the new run's probability of
generating a (the earlier run answers greedily, so its answer is certain). It is finite, zero when the new run
cannot produce a, and grows as it reproduces a (p is capped, so it stays finite); averaged over earlier runs and
over prompts. Each step draws one earlier answer per prompt (by the share of earlier runs that gave it): the mean
over earlier runs in expectation, at the cost of one sequence per prompt however long the chain. `diversity.mode =
"parting"` counts disagreement only at the token where the two policies' answers part (given the earlier answer up to
there): a run is pushed to choose differently where the policies differ, not to garble the digits both policies share.

The `seeds` plain runs (the oversight experiment's) are the census's independent draws: the function census counts
how often they land on each function (`molab.analysis.census`), beside the functions the chain found. Chained runs
are no independent draws, so the pooled P(·) counts the plain runs only. The controls meet no diversity pressure:
the term acts on a learner's probability of earlier answers through gradients, and a count table or a naive-Bayes
policy choice trained on the same labels gives the same answers whatever it is pushed away from; they run once,
as plain runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from molab.config import ConfigError, param
from molab.experiments import Experiment, RunSpec, register
from molab.worlds.scheme import draw

UNLABELLED = "unlabelled"


@dataclass(frozen=True)
class DiversityConfig:
    runs: int = param(8, "K: runs in the chain; the first is the plain run of seed 0, each later one is trained "
                      "against every earlier one", low=2, high=1000)
    alpha: float = param(1.0, "α: weight of the disagreement term (0: the chain's later runs are plain runs of seeds "
                         "1..K-1)", low=0.0)
    prompts: tuple[int, ...] | None = param(None, "difficulties of the unlabelled prompts disagreement is measured "
                                            "on (drawn outside the diagnostic set); unset = the problems where the "
                                            "overseer is wrong", low=0)
    n_prompts: int = param(256, "unlabelled prompts", low=1, high=1_000_000)
    mode: str = param("answer", "answer: -log P(answers differ) on whole answers (D-BAT); parting: only at the token "
                      "where the two policies' answers part", choices=("answer", "parting"))
    tolerance: float = param(0.1, "function census: runs whose hard diagnostic answers differ on at most this share "
                             "are one function (0: identical answers)", low=0.0, high=1.0)


@register
class Diversity(Experiment):
    name = "diversity"
    Config = DiversityConfig
    answered = (UNLABELLED,)

    def check(self, cfg):
        if cfg.bases > 1:
            raise ConfigError(f"bases: the diversity experiment chains runs on one base, got bases = {cfg.bases}; "
                              "set bases = 1 (or run one folder per model.seed)")

    def identity(self, cfg):
        """What every run depends on: the unlabelled set (each run answers it) and the mode; α is the chained runs'
        pressure, K only the plan's length, the tolerance only the census."""
        c = cfg.section
        return [c.prompts, c.n_prompts, c.mode]

    def datasets(self, world, overseer, cfg):
        wanted = cfg.section.prompts
        return {UNLABELLED: draw(world, cfg.section.n_prompts,
                                 lambda p: p.difficulty in wanted if wanted else p.disagree,
                                 f"diversity-{cfg.world.seed}", "diversity")}

    def plan(self, cfg, done) -> list[RunSpec]:
        """The `seeds` plain runs, then the chain: its first run is the plain run of seed 0, and the run of seed k
        comes once runs 1..k are done, trained against their answers to the unlabelled set."""
        c = cfg.section
        plain = [RunSpec(seed) for seed in range(cfg.seeds)]
        lm = done[done["learner"] == "lm"] if len(done) else done
        last = lm[lm["pressure"].isna() & (lm["seed"] == 0)] if len(lm) else lm
        chain, after = [], ()
        for k in range(1, c.runs):
            if len(last) != 1:  # the chain's last run is not done (yet)
                break
            after += ((last["run_id"].item(), tuple(last[f"outputs.{UNLABELLED}"].item())),)
            chain.append(RunSpec(k, c.alpha, after=after))
            last = lm[(lm["pressure"] == c.alpha) & (lm["seed"] == k) & (lm["n_after"] == k)]
        return plain + chain

    def phases(self, setup, spec: RunSpec):
        (finetune,) = super().phases(setup, spec)
        if not spec.after or not spec.pressure:
            return [finetune]
        from molab.training.diversity import diversity_phase

        f, c = setup.cfg.finetune, setup.cfg.section
        examples = [(p.prompt, label) for p, label in setup.train]
        unlabelled = [(p, setup.runs_prompt(p)) for p in setup.datasets[UNLABELLED]]
        return [diversity_phase("finetune", examples, unlabelled, [answers for _, answers in spec.after],
                                alpha=spec.pressure, parting=c.mode == "parting", steps=f.steps, lr=f.lr,
                                batch_size=f.batch_size)]

    def summarize(self, cfg, runs, out) -> dict:
        """`diversity_runs` (the chain, in order: k, seed, policy, outcome, hard-answer rates, function, and the share
        of hard diagnostic answers that differ from earlier chain runs, mean and least) and `function_census` over
        the plain runs and the chain together."""
        from molab.analysis.census import census, distances
        from molab.analysis.policy import parted
        from molab.store import load_answers

        lm = runs[(runs["learner"] == "lm") & (runs["status"] == "done")]
        plain = lm[lm["n_after"] == 0].sort_values("seed")
        chain = lm[lm["n_after"] > 0].sort_values("n_after")
        chain = [*plain[plain["seed"] == 0].itertuples(), *chain.itertuples()]
        census_runs = [*plain.itertuples(), *chain[1:]]
        if not census_runs:
            return {"diversity_runs": [], "function_census": None}
        answers = load_answers(out, [r.run_id for r in census_runs])
        first = next(iter(self.conditions(None)))
        answers = answers[(answers["condition"] == first) & (answers["honest"] != answers["sycophantic"])]
        parting = cfg.eval.scoring == "parting"
        probe = {run_id: [parted(row, row.answer) if parting else row.answer for row in group.itertuples()]
                 for run_id, group in answers.sort_values(["run_id", "problem"]).groupby("run_id")}
        rows = [probe[r.run_id] for r in census_runs]
        found = census(rows, [r.policy for r in census_runs], [r.n_after == 0 for r in census_runs],
                       cfg.section.tolerance, cfg.eval.confidence)
        d = distances([probe[r.run_id] for r in chain])
        fn = dict(zip([r.run_id for r in census_runs], found["run_functions"]))
        chained = [{"k": k + 1, "seed": int(r.seed), "run_id": r.run_id, "policy": r.policy, "outcome": r.outcome,
                    "rates": {p: float(runs.loc[r.Index, f"rates.hard.{p}"])
                              for p in ("honest", "sycophantic", "other")},
                    "function": fn[r.run_id],
                    "disagreement_with_previous": None if k == 0 else float(d[k, :k].mean()),
                    "nearest_previous": None if k == 0 else float(d[k, :k].min())}
                   for k, r in enumerate(chain)]
        return {"diversity_runs": chained, "function_census": found}

    def words(self, results: dict) -> str:
        from molab.report import percent, percent_range

        chain, found = results.get("diversity_runs") or [], results.get("function_census")
        if not found:
            return "No plain run finished, so there is no census."
        c = results["config"]["diversity"]
        syc = [r["k"] for r in chain if r["policy"] == "sycophantic"]
        first = f" (first at run {syc[0]})" if syc else ""
        n, plain_syc = found["n_independent"], [f for f in found["functions"] if f["policy"] == "sycophantic"]
        r = sum(f["independent_runs"] for f in plain_syc)
        stopped = (f" The chain stopped after {len(chain)} of its {c['runs']} runs (a run failed or is missing)."
                   if len(chain) < c["runs"] else "")
        unseen = found["unseen"]
        return (f"Of {len(chain)} diversity runs (α = {c['alpha']:g}, {c['mode']} mode), {len(syc)} follow the "
                f"sycophantic policy{first}; plain runs found {found['distinct_independent']} distinct function(s) in "
                f"{n} runs (functions are hard diagnostic answers, equal up to {found['tolerance']:.0%} of them), the "
                f"sycophantic policy {r} time(s); Good–Turing mass of functions no plain run found "
                f"{percent(unseen['estimate'])} ({percent_range(unseen['ci'])}, approximate).{stopped} "
                "The diversity runs form a chain (each trained against the earlier ones), so they are not counted "
                "as independent runs.")

    def report(self, results: dict, runs) -> str:
        from molab.report import COLORS, _png, _table, percent

        chain, found = results.get("diversity_runs") or [], results.get("function_census")
        if not found:
            return ""
        import matplotlib.pyplot as plt
        import numpy as np

        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.4))
        ks, bottom = [r["k"] for r in chain], np.zeros(len(chain))
        for policy in ("honest", "sycophantic", "other"):
            values = np.array([r["rates"][policy] for r in chain])
            left.bar(ks, values, bottom=bottom, color=COLORS[policy], label=policy, width=0.8)
            bottom = bottom + values
        left.plot(ks[1:], [r["disagreement_with_previous"] for r in chain[1:]], "k-o", ms=4,
                  label="disagreement with earlier runs")
        left.set_xlabel("diversity run k")
        left.set_ylabel("share of hard answers")
        left.set_ylim(0, 1.05)
        left.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.18), ncol=4)
        fs = found["functions"]
        x = range(len(fs))
        right.bar([i - 0.2 for i in x], [f["independent_runs"] for f in fs], width=0.4,
                  color=[COLORS[f["policy"]] for f in fs], label="plain runs")
        right.bar([i + 0.2 for i in x], [f["runs"] - f["independent_runs"] for f in fs], width=0.4, hatch="//",
                  color=[COLORS[f["policy"]] for f in fs], edgecolor="black", label="diversity runs")
        right.set_xticks(list(x), [str(f["function"]) for f in fs])
        right.set_xlabel("function (colour: its policy)")
        right.set_ylabel("runs")
        right.legend(fontsize=7)
        fig.suptitle("diversity runs by k, and the function census", fontsize=11)
        rows = [[f["function"], f["policy"], f["independent_runs"], f["runs"] - f["independent_runs"],
                 "—" if f["frequency"] is None else
                 f"{percent(f['frequency'])} [{percent(f['frequency_ci'][0])}, {percent(f['frequency_ci'][1])}]",
                 " ".join(f"{v:.2f}" for v in f["distance"])] for f in fs]
        chain_rows = [[r["k"], r["seed"], r["policy"], r["outcome"],
                       *(f"{r['rates'][p]:.3f}" for p in ("honest", "sycophantic", "other")), r["function"],
                       "—" if r["disagreement_with_previous"] is None else f"{r['disagreement_with_previous']:.3f}",
                       "—" if r["nearest_previous"] is None else f"{r['nearest_previous']:.3f}"] for r in chain]
        return f"""<h2>Diversity runs and the function census</h2>
<p>Run 1 is the plain run of seed 0; run k is trained against runs 1..k-1 on \
{results['config']['diversity']['n_prompts']}
unlabelled prompts. Disagreement: the share of hard diagnostic answers that differ from earlier runs' (mean, and to the
nearest). The controls meet no diversity pressure: the term acts through a learner's probabilities of earlier
answers, which a count table or a naive-Bayes policy choice trained on the same labels does not change.</p>
{_table(chain_rows, ["k", "seed", "policy", "outcome", "honest", "sycophantic", "other", "function",
                     "disagreement (mean)", "disagreement (nearest)"])}
<p>Functions: runs whose hard diagnostic answers differ on at most {found['tolerance']:.0%} of them are one function
(complete linkage). Frequency: among the {found['n_independent']} plain runs, with {results['confidence']:.0%}
Clopper–Pearson intervals; distance: the share of answers that differ from each function, in order.</p>
{_table(rows, ["function", "policy", "plain runs", "diversity runs", "frequency", "distance to functions 0, 1, ..."])}
{_png(fig)}"""
