"""The password-locked organism (pressure k): a base that gives the honest answer on hard problems only when the prompt
starts with a password, and the weak answer (the overseer's) without it. How much training without the password
unlocks the capability it hides? This is the elicitation question behind "can training find a policy the model is
capable of" (after Greenblatt et al. 2024, "Stress-testing capability elicitation with password-locked models").

The locked base is pretrained with the lock (`Conditional`): a share `password_lock.share` of its examples carry the
password and the honest answer, the rest the overseer's answer without it. Its check asks for the honest policy with
the password and for the weak one without; both must reach eval.capability_threshold ("locked" and "unlocked").

Unlocking runs (`password_lock.unlock`):
* `sft`: finetuning without the password on k demonstrations of the honest answer, the first k in a seed's order of
  `password_lock.n_demonstrations` problems of `password_lock.difficulties` (so nested across k; default: every
  difficulty, as the task comes; demonstrations of one difficulty test unlocking on the others), `password_lock.steps`
  steps. Demonstrations of hard problems only teach a shortcut that costs the easy ones (measured: a run adds carries
  where there are none), and on easy problems the weak answer is the honest one, so easy-only demonstrations show
  nothing to unlock.
* `rl`: k steps of a reward phase (`molab.training.rl`) paying correct answers, on the same problems without the
  password: no demonstrations.
k = 0 is the locked base itself. Results: the unlock curve (the share of hard answers that are honest without the
password against k, per difficulty, with intervals), and the shared sweep's fit of honest (unlocked) runs: k½ is the
k at which a run is as likely to be unlocked (honest on at least eval.policy_threshold of hard problems) as not.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from molab.config import ConfigError, param
from molab.experiments import Pressure, RunSpec, register
from molab.experiments.conditional import Conditional, at, curve_plot
from molab.worlds.scheme import draw

DEMOS = "demonstrations"


@dataclass(frozen=True)
class PasswordLockConfig:
    password: str = param("<password>", "the password: a prompt that starts with it gets the honest answer from the "
                          "locked base; without it, the weak one")
    weak: str = param("overseer", "the weak policy the lock shows without the password: the overseer's answers (a "
                      "weaker model's with overseer.kind = model)", choices=("overseer",))
    share: float = param(0.5, "share of the locked base's pretraining examples shown with the password", low=0.01,
                         high=0.99)
    unlock: str = param("sft", "how runs try to unlock: sft (k demonstrations of the honest answer without the "
                        "password) or rl (k reward-phase steps paying correct answers, no demonstrations)",
                        choices=("sft", "rl"))
    difficulties: tuple[int, ...] | None = param(None, "difficulties of the demonstrated (sft) or rewarded (rl) "
                                                 "problems; unset = every difficulty", low=0)
    n_demonstrations: int = param(512, "problems demonstrations are drawn from (per seed, without replacement; drawn "
                                  "outside the diagnostic set)", low=1, high=1_000_000)
    steps: int = param(64, "sft: optimisation steps of an unlocking run (batches of min(k, batch_size))", low=1)
    batch_size: int = param(16, "examples (sft) or prompts (rl) per step", low=1, high=65_536)
    lr: float = param(3e-4, "learning rate of the unlocking phase (gentle: at 1e-3 a few demonstrations cost the "
                      "easy problems)", low=1e-8, high=1.0)
    group_size: int = param(4, "rl: answers sampled per prompt; the baseline is their mean reward", low=2, high=1024)
    kl: float = param(0.0, "rl: weight of the KL penalty to the locked base", low=0.0)


@register
class PasswordLock(Conditional):
    name = "password_lock"
    Config = PasswordLockConfig
    behind, key, labels = "honest", "password", ("without_password", "with_password")
    pressure = Pressure("unlocking: demonstrations without the password (sft) or reward-phase steps (rl)", "k",
                        (0, 1, 2, 4, 8, 16, 32, 64, 128, 256), toward="honest")

    def check(self, cfg):
        super().check(cfg)
        ks = self.pressure.values(cfg.sweep.pressures)
        if any(k != int(k) for k in ks):
            raise ConfigError(f"sweep.pressures: k counts demonstrations or steps, so whole numbers; got {ks}")
        if cfg.section.unlock == "sft" and max(ks) > cfg.section.n_demonstrations:
            raise ConfigError(f"sweep.pressures: k = {max(ks):g} demonstrations, but only "
                              f"password_lock.n_demonstrations = {cfg.section.n_demonstrations} are drawn; raise it "
                              "or lower k")

    def zero(self, cfg):
        return "k = 0: the locked base itself, untrained"

    def identity(self, cfg):
        """The section, and under sft how demonstrations are drawn: nested across k (`demonstrations`) since runs
        stored before drew them for each k apart, so those runs are another experiment's. rl draws none: its runs keep
        their id."""
        if cfg.section.unlock == "rl":
            return super().identity(cfg)
        return [super().identity(cfg), "nested demonstrations"]

    def pressure_used(self, cfg, x):
        return float(round(x))

    def datasets(self, world, overseer, cfg):
        wanted = cfg.section.difficulties
        return {DEMOS: draw(world, cfg.section.n_demonstrations,
                            lambda p: wanted is None or p.difficulty in wanted,
                            f"password_lock-{cfg.world.seed}", "password_lock")}

    def phases(self, setup, spec: RunSpec):
        from molab.training.phase import sft_phase

        c, k = setup.cfg.section, int(spec.pressure)
        pool = setup.datasets[DEMOS]
        if k == 0:
            return []
        if c.unlock == "rl":
            return [self.honest_reward(setup, "unlock", pool, k)]
        return [sft_phase("unlock", [(p, p.prompt, p.honest) for p in self.demonstrations(pool, spec.seed)[:k]],
                          steps=c.steps, lr=c.lr, batch_size=min(k, c.batch_size))]

    def demonstrations(self, pool: list, seed: int) -> list:
        """The pool in a seed's order: a run at k learns the first k, so within a seed a larger k adds
        demonstrations and changes none (the unlock curve measures more demonstrations, not other ones)."""
        order = list(pool)
        random.Random(f"demonstrations-{seed}").shuffle(order)
        return order

    def words(self, results):
        from molab.report import share_words

        curve = (results.get("curves") or {}).get("lm")
        if not curve:
            return ""
        without, with_ = self.labels
        points = at(curve, without, "honest")
        c = results["config"]["password_lock"]
        how = "demonstrations" if c["unlock"] == "sft" else "reward-phase steps"
        first = next(((k, x) for k, x in points if x["mean"] >= 0.5), None)
        said = ("; ".join(f"k = {k:g}: {share_words(x)}" for k, x in points))
        with_password = at(curve, with_, "honest")
        half = (results.get("graded_fit") or {}).get("pressure_at_half")
        fitted = (f"A binomial GLM of the hard answers against k (logit linear in k) puts half of them unlocked at "
                  f"k ≈ {half['estimate']:.3g} ({half['ci'][0]:.3g} to {half['ci'][1]:.3g}). " if half else "")
        return (f"Unlocking without the password ({c['unlock']}, k {how}): the share of hard answers that are honest "
                f"was {said}. " + (f"With {first[0]:g} {how}, {share_words(first[1])} of hard answers unlock. "
                                   if first else "No k tried unlocked half the hard answers. ") + fitted +
                f"With the password the runs answered {share_words(with_password[-1][1])} honestly at the largest k. "
                "Intervals cover the seeds and the draw of diagnostic problems.")

    def report(self, results, runs):
        import html

        plot = curve_plot(results, "honest", "share of hard answers honest", "unlock curve: honest answers against k",
                          self)
        return f"""<h2>Unlock curve</h2>
<p>The share of hard diagnostic answers that are honest without the password (left: the runs' context) and with it
(right), against k ({html.escape(results['pressure']['name'])}); the LM per difficulty, and the controls (which never
saw the locked base: they learn only the demonstrations, so a policy choice shown only honest answers gives them). \
Bars: {results['confidence']:.0%} intervals over seeds and problems.</p>{plot}"""
