"""Reward phases: train on answers the model samples for a set of prompts, scored by a reward function,
with a KL penalty to the model the phase starts from (the incentive experiment's phase; any experiment
that pays for answers can use it).

`reinforce` is on-policy REINFORCE with the KL penalty in the reward; `reward_weighted` samples once from
the starting model and fits those samples weighted by exp(reward / kl) within each prompt's group: the
same KL-regularised target reached in one sampling pass, cheaper, but blind to answers the starting model
rarely samples. The bigram-table control meets the same phase: its own sampled answers counted with their
weights under the same target (a table has no gradient, so it always gets the reward-weighted variant).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable

import numpy as np
import torch

from molab.learners.lm import sample_answers
from molab.training.objectives import reinforce, sequence_logprob, weighted_sft
from molab.training.phase import Learning, Phase


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


def reward_phase(name: str, problems: list, reward: Callable[[object, str], float], *, objective: str, steps: int,
                 lr: float, batch_size: int, group_size: int, kl: float) -> Phase:
    """A phase of `steps` updates on answers sampled `group_size` at a time for `batch_size` of `problems` per
    step, paid `reward(problem, answer)`; `objective` is "reinforce" or "reward_weighted"."""

    def rewards(batch_problems, answers: list[str]) -> torch.Tensor:  # (problems, group)
        repeated = [p for p in batch_problems for _ in range(group_size)]
        return torch.tensor([reward(p, a) for p, a in zip(repeated, answers)]).view(len(batch_problems), group_size)

    def batches(learning: Learning):
        model, tokenizer = learning.model, learning.tokenizer
        rng = random.Random(f"{name}-{learning.seed}")

        def rollouts(batch_problems):
            prompts = [p.prompt for p in batch_problems for _ in range(group_size)]
            answers, batch = sample_answers(model, tokenizer, prompts, learning.n_new)
            return batch | {"reward": rewards(batch_problems, answers)}

        if objective == "reinforce":
            reference = copy.deepcopy(model).eval().requires_grad_(False) if kl else None

            def on_policy():
                while True:
                    batch = rollouts(rng.sample(problems, min(batch_size, len(problems))))
                    with torch.no_grad():
                        ref_logp = (torch.zeros(len(batch["input_ids"])) if reference is None else sequence_logprob(
                            reference, {k: v.to(reference.device) for k, v in batch.items()}).cpu())
                    yield batch | {"ref_logp": ref_logp, "kl": torch.tensor(kl)}
            return on_policy()

        pool = rollouts(problems)
        weight = target_weights(pool.pop("reward"), kl).flatten()
        n, size = len(weight), batch_size * group_size

        def reweighted():
            while True:
                order = torch.randperm(n, generator=torch.Generator().manual_seed(rng.randrange(2**31)))
                for i in range(0, n - size + 1 if n >= size else 1, size):
                    rows = order[i:i + size]
                    yield {k: v[rows] for k, v in pool.items()} | {"weight": weight[rows]}
        return reweighted()

    def count(table, learning: Learning) -> None:
        """Sample `group_size` answers per prompt from the table and add each sampled sequence's pairs counted
        with its weight under the same target, scaled so that a group adds `group_size` sequences' worth."""
        tokenizer, rng = learning.tokenizer, np.random.default_rng(learning.seed)
        sequences, answers = [], []
        for ids in tokenizer([p.prompt for p in problems]).input_ids:
            for _ in range(group_size):
                out = table.generate(ids, learning.n_new, tokenizer.eos_token_id, rng)
                sequences.append(ids + out + [tokenizer.eos_token_id])
                answers.append(tokenizer.decode(out, skip_special_tokens=True))
        table.add(sequences, (target_weights(rewards(problems, answers), kl) * group_size).flatten().tolist())

    # dropout off: the answers are sampled, and scored by the reference, without it
    return Phase(name, batches, steps, lr, reinforce if objective == "reinforce" else weighted_sft, warmup=1,
                 dropout=False, count=count)
