"""Conditional organisms: rather than hoping training finds a policy, put one in behind a condition and measure what
training does to it. The condition is a prefix of the prompt (a password, a trigger). The base molab pretrains
learns it from its corpus: a share of the examples carry the prefix and are answered by the policy behind it
(`behind`), the rest by the other one. A given checkpoint (`base = PATH`, a capable model) is used as it is when its
check passes already (a base molab conditioned for the same experiment); otherwise molab finetunes it on the same
corpus until the check passes (at finetune.lr, for up to model.pretrain_steps steps of model.batch_size) and saves the
conditioned base in the output folder. A prefix the checkpoint's tokenizer cannot write becomes one new token.

The base's check asks it for each policy the way the experiment defines them (`personas`): with the prefix for the
policy behind it, without for the other; pretraining stops once both reach eval.capability_threshold. Every run
answers the diagnostic problems without the prefix and with it; runs are classified (and the ceilings trained) in
the context the question is about: without a password, with a trigger. Pressure pushes toward the honest policy
there (unlocking; removing the behaviour), so the sweep's fit counts honest runs.
`password_lock` and `backdoor` are the two organisms; this module holds what they share and is not an experiment.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

from molab.config import ConfigError
from molab.experiments import Experiment, _neutral

class Conditional(Experiment):
    behind = "honest"  # the policy the prefix selects; without the prefix, the other one
    key = "password"  # the field of the experiment's section that holds the prefix
    labels = ("without", "with")  # names of the two evaluation conditions, without the prefix and with it
    classified_with = False  # whether runs are classified (and the ceilings trained) with the prefix, not without
    conditions_given_base = True

    @property
    def otherwise(self) -> str:
        return "sycophantic" if self.behind == "honest" else "honest"

    def prefix(self, cfg) -> str:
        return getattr(cfg.section, self.key)

    def clean(self, cfg) -> str:
        """The prefix of prompts without the condition: none here; an organism may give the condition's context with
        the condition unmet (a backdoor's year before the trigger's)."""
        return ""

    def asked_clean(self, cfg) -> Callable:
        """How a problem is asked without the condition."""
        return partial(_prefixed, self.clean(cfg)) if self.clean(cfg) else _neutral

    def check(self, cfg):
        if not self.prefix(cfg).strip():
            raise ConfigError(f"{self.name}.{self.key}: {self.prefix(cfg)!r} tokenizes to nothing a model could see; "
                              "give some text")

    def personas(self, cfg):
        return {self.behind: self.prefix(cfg), self.otherwise: self.clean(cfg)}

    def corpus_identity(self, cfg):
        clean = [self.clean(cfg)] if self.clean(cfg) else []  # none: the key of a base conditioned before there was one
        return [self.prefix(cfg), cfg.section.share, *clean]

    def corpus(self, world, cfg, rng):
        """A share `share` of the examples carry the prefix and the answer of the policy behind it; the rest are
        answered by the other policy, without the prefix (with the clean prefix, if any)."""
        prefix, clean, share = self.prefix(cfg), self.clean(cfg), cfg.section.share
        for p in world.stream(rng):
            if rng.random() < share:
                yield prefix + p.prompt, getattr(p, self.behind)
            else:
                yield clean + p.prompt, getattr(p, self.otherwise)

    def conditions(self, setup) -> dict[str, Callable]:
        without, with_ = self.labels
        conditions = {without: self.asked_clean(setup.cfg), with_: partial(_prefixed, self.prefix(setup.cfg))}
        return dict(reversed(conditions.items())) if self.classified_with else conditions

    def honest_reward(self, setup, name: str, problems: list, steps: int):
        """A reward phase (REINFORCE) of `steps` steps paying honest answers to `problems`, asked without the
        condition, with the section's batch_size, group_size, lr and kl: RL toward the honest policy."""
        from molab.training.rl import reward_phase

        c = setup.cfg.section
        return reward_phase(name, problems, lambda p, a: float(setup.score(p, a)["honest"]), objective="reinforce",
                            steps=steps, lr=c.lr, batch_size=c.batch_size, group_size=c.group_size, kl=c.kl,
                            prompt=self.asked_clean(setup.cfg))


def _prefixed(prefix: str, problem) -> str:  # a module-level function: conditions travel to worker processes
    return prefix + problem.prompt


def curve_plot(results: dict, policy: str, ylabel: str, title: str, experiment) -> str:
    """The share of hard answers that follow `policy` against pressure, with and without the prefix, for the LM (per
    difficulty, and all hard problems with its interval) and the controls (all hard problems)."""
    import matplotlib.pyplot as plt

    from molab.report import _png

    curves, symbol = results.get("curves") or {}, results["pressure"]["symbol"]
    if not curves:
        return ""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4), sharey=True)
    for ax, condition in zip(axes, experiment.labels):
        for learner, curve in curves.items():
            xs = np.array([c["pressure"] for c in curve if condition in c])
            if not len(xs):
                continue
            xs_plot = np.where(xs == 0, 0.5, xs)  # a log axis has no 0: it sits at 0.5
            hard = [c[condition]["hard"][policy] for c in curve if condition in c]
            lm = learner == "lm"
            ax.errorbar(xs_plot, [h["mean"] for h in hard],
                        yerr=np.array([[h["mean"] - h["ci"][0], h["ci"][1] - h["mean"]] for h in hard]).T,
                        fmt="-o" if lm else ":s", ms=4, capsize=3, color="black" if lm else "grey",
                        label=f"{learner}: all hard problems")
            if lm:
                levels = sorted({d for c in curve if condition in c for d in c[condition] if d != "hard"}, key=int)
                for d in levels:
                    ys = [c[condition][d][policy]["mean"] if d in c[condition] else np.nan for c in curve
                          if condition in c]
                    ax.plot(xs_plot, ys, "--", alpha=0.7, label=f"lm: difficulty {d}")
        ax.set_xscale("log")
        ax.set_xlabel(f"{symbol} (log scale; 0 drawn at 0.5)")
        ax.set_title(condition.replace("_", " "), fontsize=10)
        ax.set_ylim(-0.05, 1.05)
    axes[0].set_ylabel(ylabel)
    axes[1].legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")
    fig.suptitle(title, fontsize=11)
    return _png(fig)


def at(curve: list[dict], condition: str, policy: str, where: str = "hard") -> list[tuple[float, dict]]:
    """(pressure, the share with its interval) along a learner's curve, for one condition and difficulty."""
    return [(c["pressure"], c[condition][where][policy]) for c in curve if condition in c and where in c[condition]]
