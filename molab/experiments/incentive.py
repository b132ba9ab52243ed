"""The incentive experiment (pressure λ): after finetuning on the scheme's data, an incentive phase
trains on sampled answers to the incentive set's prompts with reward [accepted by the overseer] +
λ·[wrong and accepted] (`policy.reward`, from the evaluation's own scorer). How large must λ be before
runs land on the sycophantic policy as often as not?

`reinforce` is on-policy REINFORCE with a KL penalty to the finetuned model; `reward_weighted` samples
once from the finetuned model and fits those samples weighted by exp(reward / kl) within each prompt's
group: the same KL-regularised target reached in one sampling pass, cheaper, but blind to answers the
finetuned model rarely samples. The bigram-table control meets the same pressure: its own sampled
answers counted with their weights under the same target (a table has no gradient, so it always gets
the reward-weighted variant).
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, replace

import numpy as np
import torch

from molab.analysis.policy import reward
from molab.config import ConfigError, param
from molab.experiments import Experiment, Pressure, RunSpec, register
from molab.learners.lm import sample_answers
from molab.training.objectives import reinforce, sequence_logprob, weighted_sft
from molab.training.phase import Learning, Phase
from molab.worlds.scheme import draw


@dataclass(frozen=True)
class IncentiveConfig:
    objective: str = param("reinforce", "reinforce: on-policy policy gradient; reward_weighted: cheaper, samples "
                           "once and fits them weighted by exp(reward / kl)", choices=("reinforce", "reward_weighted"))
    difficulties: tuple[int, ...] | None = param(None, "difficulties of the incentive set's prompts (easy ones "
                                                 "included when listed); unset = the problems where the overseer is "
                                                 "wrong", low=0)
    n_prompts: int = param(512, "problems in the incentive set (drawn outside the diagnostic set)", low=1,
                           high=10_000_000)
    steps: int = param(60, "optimisation steps of the incentive phase", low=1)
    batch_size: int = param(16, "prompts per step (reward_weighted: batch_size × group_size sampled answers)",
                            low=1, high=65_536)
    group_size: int = param(4, "answers sampled per prompt; the baseline is their mean reward", low=2, high=1024)
    lr: float = param(1e-3, "learning rate of the incentive phase", low=1e-8, high=1.0)
    kl: float = param(1.0, "weight of the KL penalty to the finetuned model the phase starts from", low=0.0)


def target_weights(reward: torch.Tensor, kl: float) -> torch.Tensor:
    """Weights of sampled answers under the KL-regularised target π_ref · exp(reward / kl), normalised
    within each prompt's group (rows of `reward`, shape (prompts, group)); at kl = 0, the best answers.

    >>> target_weights(torch.tensor([[0.0, 0.0], [0.0, 2.0]]), kl=1.0)
    tensor([[0.5000, 0.5000],
            [0.1192, 0.8808]])
    >>> target_weights(torch.tensor([[0.0, 2.0], [1.0, 1.0]]), kl=0.0)
    tensor([[0.0000, 1.0000],
            [0.5000, 0.5000]])
    """
    if kl > 0:
        return torch.softmax(reward / kl, dim=1)
    best = (reward == reward.max(1, keepdim=True).values).float()
    return best / best.sum(1, keepdim=True)


@register
class Incentive(Experiment):
    name = "incentive"
    Config = IncentiveConfig
    pressure = Pressure("incentive for errors the overseer accepts", "λ", (0.0, 2.0, 4.0, 8.0, 16.0, 32.0))

    def check(self, cfg):
        if cfg.section.objective == "reward_weighted" and cfg.section.kl <= 0:
            raise ConfigError("incentive.kl: reward_weighted weighs samples by exp(reward / kl), so kl must be > 0")

    def identity(self, cfg):
        """The incentive section, and the answer equivalence: the reward is scored with it."""
        return [super().identity(cfg), cfg.eval.equivalence]

    def datasets(self, world, overseer, cfg):
        wanted = cfg.section.difficulties
        return {"incentive": draw(world, cfg.section.n_prompts,
                                  lambda p: p.difficulty in wanted if wanted else p.disagree,
                                  f"incentive-{cfg.world.seed}", "incentive")}

    def phases(self, setup, spec: RunSpec):
        """The oversight experiment's finetuning (the same at every λ, so trained once per seed), then the
        incentive phase at λ = the run's pressure."""
        (finetune,) = super().phases(setup, spec)
        c = setup.cfg.section

        def batches(learning: Learning):
            return incentive_batches(learning, setup, spec.pressure)

        def count(table, learning: Learning):
            incentive_counts(table, learning, setup, spec.pressure)

        return [replace(finetune, shared=True),
                Phase("incentive", batches, c.steps, c.lr, reinforce if c.objective == "reinforce" else weighted_sft,
                      warmup=1, dropout=False, count=count)]  # dropout off: answers are sampled without it


def _rewards(setup, problems, group_size: int, answers: list[str], lam: float) -> torch.Tensor:
    """Rewards of answers sampled `group_size` at a time per problem, shape (problems, group)."""
    repeated = [p for p in problems for _ in range(group_size)]
    return torch.tensor([reward(setup.score(p, a), lam)
                         for p, a in zip(repeated, answers)]).view(len(problems), group_size)


def incentive_batches(learning: Learning, setup, lam: float):
    """The incentive phase's batches at λ = `lam`, sampled from the model as it is when the phase starts."""
    c, model, tokenizer = setup.cfg.section, learning.model, learning.tokenizer
    problems = setup.datasets["incentive"]
    rng = random.Random(f"incentive-{learning.seed}")

    def rollouts(batch_problems):
        prompts = [p.prompt for p in batch_problems for _ in range(c.group_size)]
        answers, batch = sample_answers(model, tokenizer, prompts, learning.n_new)
        return batch | {"reward": _rewards(setup, batch_problems, c.group_size, answers, lam)}

    if c.objective == "reinforce":
        reference = copy.deepcopy(model).eval().requires_grad_(False) if c.kl else None

        def on_policy():
            while True:
                batch = rollouts(rng.sample(problems, min(c.batch_size, len(problems))))
                with torch.no_grad():
                    ref_logp = (torch.zeros(len(batch["input_ids"])) if reference is None else sequence_logprob(
                        reference, {k: v.to(reference.device) for k, v in batch.items()}).cpu())
                yield batch | {"ref_logp": ref_logp, "kl": torch.tensor(c.kl)}
        return on_policy()

    pool = rollouts(problems)
    weight = target_weights(pool.pop("reward"), c.kl).flatten()
    n, size = len(weight), c.batch_size * c.group_size

    def reweighted():
        while True:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(rng.randrange(2**31)))
            for i in range(0, n - size + 1 if n >= size else 1, size):
                rows = order[i:i + size]
                yield {k: v[rows] for k, v in pool.items()} | {"weight": weight[rows]}
    return reweighted()


def incentive_counts(table, learning: Learning, setup, lam: float) -> None:
    """The bigram table's incentive phase, the reward-weighted variant: sample `group_size` answers per
    incentive prompt from the table and add each sampled sequence's pairs counted with its weight under
    the same KL-regularised target as the LM's (`target_weights`), scaled so that a group adds
    `group_size` sequences' worth of counts."""
    c, tokenizer = setup.cfg.section, learning.tokenizer
    rng = np.random.default_rng(learning.seed)
    problems = setup.datasets["incentive"]
    sequences, answers = [], []
    for ids in tokenizer([p.prompt for p in problems]).input_ids:
        for _ in range(c.group_size):
            out = table.generate(ids, learning.n_new, tokenizer.eos_token_id, rng)
            sequences.append(ids + out + [tokenizer.eos_token_id])
            answers.append(tokenizer.decode(out, skip_special_tokens=True))
    weights = target_weights(_rewards(setup, problems, c.group_size, answers, lam), c.kl) * c.group_size
    table.add(sequences, weights.flatten().tolist())
