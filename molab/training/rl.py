"""Reward phases: train on answers the model samples for a set of prompts, scored by a reward function,
with a KL penalty to the model the phase starts from (the incentive experiment's phase; any experiment
that pays for answers can use it).

`reinforce` is on-policy REINFORCE with the KL penalty in the reward; `reward_weighted` samples once from
the starting model and fits those samples weighted by exp(reward / kl) within each prompt's group: the
same KL-regularised target reached in one sampling pass, cheaper, but blind to answers the starting model
rarely samples. A control (`molab.learners.controls`) meets the same phase: the answers it proposes, learnt with
their weights under the same target (a control has no gradient, so it always gets the reward-weighted variant).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable

import numpy as np
import torch

from molab.learners.lm import frozen_copy, sample_answers
from molab.training.objectives import reinforce, sequence_logprob, weighted_sft
from molab.training.phase import Learning, Phase


def target_weights(reward: torch.Tensor, kl: float, prior: torch.Tensor | None = None) -> torch.Tensor:
    """Weights of answers under the KL-regularised target π_ref · exp(reward / kl), normalised within each prompt's
    group (rows of `reward`, shape (prompts, group)). `prior`: each answer's probability under π_ref (default: equal,
    as for answers sampled from it); at kl = 0, the best answers, in proportion to their prior.

    >>> target_weights(torch.tensor([[0.0, 0.0], [0.0, 2.0]]), kl=1.0)
    tensor([[0.5000, 0.5000],
            [0.1192, 0.8808]])
    >>> target_weights(torch.tensor([[0.0, 2.0], [1.0, 1.0]]), kl=0.0)
    tensor([[0.0000, 1.0000],
            [0.5000, 0.5000]])
    >>> target_weights(torch.tensor([[0.0, 0.0]]), kl=1.0, prior=torch.tensor([[0.75, 0.25]]))
    tensor([[0.7500, 0.2500]])
    """
    prior = torch.ones_like(reward) if prior is None else prior
    if kl > 0:
        return torch.softmax(prior.log() + reward / kl, dim=1)
    best = (reward == reward.max(1, keepdim=True).values).float() * prior
    return best / best.sum(1, keepdim=True)


def reward_phase(name: str, problems: list, reward: Callable[[object, str], float], *, objective: str, steps: int,
                 lr: float, batch_size: int, group_size: int, kl: float, prompt: Callable | None = None) -> Phase:
    """A phase of `steps` updates on answers sampled `group_size` at a time for `batch_size` of `problems` per
    step, paid `reward(problem, answer)`; `objective` is "reinforce" or "reward_weighted". `prompt(problem)` is how
    each problem is asked (default: its bare prompt)."""

    ask = prompt or (lambda p: p.prompt)

    def rewards(batch_problems, answers: list[str]) -> torch.Tensor:  # (problems, group)
        repeated = [p for p in batch_problems for _ in range(group_size)]
        return torch.tensor([reward(p, a) for p, a in zip(repeated, answers)]).view(len(batch_problems), group_size)

    def batches(learning: Learning):
        model, tokenizer = learning.model, learning.tokenizer
        rng = random.Random(f"{name}-{learning.seed}")

        def rollouts(batch_problems):
            prompts = [ask(p) for p in batch_problems for _ in range(group_size)]
            answers, batch = sample_answers(model, tokenizer, prompts, learning.n_new)
            return batch | {"reward": rewards(batch_problems, answers)}

        if objective == "reinforce":
            def on_policy():
                with frozen_copy(model) if kl else contextlib.nullcontext() as reference:
                    while True:
                        batch = rollouts(rng.sample(problems, min(batch_size, len(problems))))
                        with torch.no_grad():
                            ref_logp = (torch.zeros(len(batch["input_ids"])) if reference is None else reference(
                                lambda ref: sequence_logprob(ref, {k: v.to(ref.device) for k, v in batch.items()})
                            ).cpu())
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

    def control(learner, learning: Learning) -> None:
        """Ask the control for its answers to every prompt (`group_size` samples, or each possible answer with its
        probability) and have it learn them weighted under the same target, a group adding `group_size` examples."""
        rng = np.random.default_rng(learning.seed)
        proposed = learner.proposals(problems, [ask(p) for p in problems], group_size, rng)
        examples, weights = [], []
        for p, answers in zip(problems, proposed):
            r = torch.tensor([[reward(p, a) for a, _ in answers]])
            w = target_weights(r, kl, torch.tensor([[q for _, q in answers]])) * group_size
            examples += [(p, ask(p), a) for a, _ in answers]
            weights += w.flatten().tolist()
        learner.learn(examples, weights)

    # dropout off: the answers are sampled, and scored by the reference, without it
    return Phase(name, batches, steps, lr, reinforce if objective == "reinforce" else weighted_sft, warmup=1,
                 dropout=False, control=control, samples=True)
