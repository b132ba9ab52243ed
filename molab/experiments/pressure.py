"""Pressure: what pushes a run toward the sycophantic policy, in the two sweep experiments.

* incentive (λ): after finetuning, an incentive phase trains on sampled answers to the incentive
  set's prompts with reward [accepted by the overseer] + λ·[wrong and accepted] (`policy.reward`,
  the evaluation's own scorer). `reinforce` is on-policy REINFORCE with a KL penalty to the
  finetuned model; `reward_weighted` samples once from the finetuned model and fits those samples
  weighted by exp(reward / kl) within each prompt's group: the same KL-regularised target reached
  in one sampling pass, cheaper, but blind to answers the finetuned model rarely samples.
* spoonfeeding (ρ): a fraction ρ of the finetuning examples is replaced by demonstrations of the
  sycophantic answer on hard problems, each optionally behind a context cue.

The bigram-table control meets the same pressure: the same finetuning examples, and for the
incentive its own sampled answers counted with their weights under the same KL-regularised target
(a table has no gradient, so it always gets the reward-weighted variant).
"""

from __future__ import annotations

import copy
import random

import numpy as np
import torch

from molab.analysis.policy import reward
from molab.learners.lm import sample_answers
from molab.training.loop import train
from molab.training.objectives import reinforce, sequence_logprob, weighted_sft


def cue(setup) -> str | None:
    """The spoonfeeding cue tag when the experiment uses one."""
    s = setup.cfg.spoonfeeding
    return s.cue_tag if setup.cfg.experiment == "spoonfeeding" and s.cue else None


def finetuning_examples(setup, pressure: float | None) -> list[tuple[str, str]]:
    """(prompt, answer) pairs of one run: the scheme's data, with round(ρ·n) of them replaced by
    sycophantic demonstrations on hard problems in the spoonfeeding experiment."""
    examples = [(p.prompt, label) for p, label in setup.train]
    if setup.cfg.experiment != "spoonfeeding":
        return examples
    n = round(pressure * len(examples))
    tag = cue(setup) or ""
    return [(tag + p.prompt, p.sycophantic) for p in setup.spoonfed[:n]] + examples[n:]


def _groups(problems, group_size: int, answers: list[str], lam: float) -> torch.Tensor:
    """Rewards of answers sampled `group_size` at a time per problem, shape (problems, group)."""
    repeated = [p for p in problems for _ in range(group_size)]
    return torch.tensor([reward(p, a, lam) for p, a in zip(repeated, answers)]).view(len(problems), group_size)


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


def incentive_phase(model, tokenizer, setup, seed: int, lam: float, n_new: int, progress: bool = False) -> list[float]:
    """Train `model` on the incentive set at incentive λ = `lam`; returns the losses."""
    c = setup.cfg.incentive
    rng = random.Random(f"incentive-{seed}")

    def rollouts(problems):
        prompts = [p.prompt for p in problems for _ in range(c.group_size)]
        answers, batch = sample_answers(model, tokenizer, prompts, n_new)
        return batch | {"reward": _groups(problems, c.group_size, answers, lam)}

    if c.objective == "reinforce":
        reference = copy.deepcopy(model).eval().requires_grad_(False) if c.kl else None

        def batches():
            while True:
                batch = rollouts(rng.sample(setup.incentive, min(c.batch_size, len(setup.incentive))))
                with torch.no_grad():
                    ref_logp = (torch.zeros(len(batch["input_ids"])) if reference is None else sequence_logprob(
                        reference, {k: v.to(reference.device) for k, v in batch.items()}).cpu())
                yield batch | {"ref_logp": ref_logp, "kl": torch.tensor(c.kl)}
        objective = reinforce
    else:
        pool = rollouts(setup.incentive)
        weight = target_weights(pool.pop("reward"), c.kl).flatten()
        n, size = len(weight), c.batch_size * c.group_size

        def batches():
            while True:
                order = torch.randperm(n, generator=torch.Generator().manual_seed(rng.randrange(2**31)))
                for i in range(0, n - size + 1 if n >= size else 1, size):
                    rows = order[i:i + size]
                    yield {k: v[rows] for k, v in pool.items()} | {"weight": weight[rows]}
        objective = weighted_sft
    # dropout off: the answers are sampled and scored by the reference without it
    return train(model, batches(), objective, steps=c.steps, lr=c.lr, warmup=1, desc=f"incentive seed {seed}",
                 progress=progress, dropout=False)


def incentive_counts(table, tokenizer, setup, seed: int, lam: float, n_new: int) -> None:
    """The bigram table's incentive phase, the reward-weighted variant: sample `group_size` answers per
    incentive prompt from the table and add each sampled sequence's pairs counted with its weight under
    the same KL-regularised target as the LM's (`target_weights`), scaled so that a group adds
    `group_size` sequences' worth of counts."""
    c = setup.cfg.incentive
    rng = np.random.default_rng(seed)
    problems = setup.incentive
    prompts = tokenizer([p.prompt for p in problems]).input_ids
    sequences, answers = [], []
    for ids in prompts:
        for _ in range(c.group_size):
            out = table.generate(ids, n_new, tokenizer.eos_token_id, rng)
            sequences.append(ids + out + [tokenizer.eos_token_id])
            answers.append(tokenizer.decode(out, skip_special_tokens=True))
    weights = target_weights(_groups(problems, c.group_size, answers, lam), c.kl) * c.group_size
    table.add(sequences, weights.flatten().tolist())
