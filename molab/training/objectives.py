"""Objectives: small functions (model, batch) -> scalar loss. The loop knows nothing else."""

from __future__ import annotations

import torch

from molab.learners.lm import IGNORE


def sft(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy on the answer tokens (labels are -100 elsewhere); shift handled by the model."""
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss


def sequence_logprob(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Log-probability of each sequence's labelled tokens (its answer), shape (batch,)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
    labels = batch["labels"][:, 1:]
    logp = torch.log_softmax(logits, -1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (logp * (labels != IGNORE)).sum(-1)


def reinforce(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """REINFORCE on sampled answers with the KL penalty in the reward (Ziegler et al. 2019):
    shaped reward = reward - kl · (log π(answer) - log π_ref(answer)), and as baseline the mean
    shaped reward of the answers sampled for the same prompt.

    The advantage is not divided by its group's standard deviation: on a prompt whose answers are
    either rewarded 1 + λ or not at all, that division would erase λ.

    batch: the sampled sequences (input_ids, attention_mask, labels), `reward` (prompts, group),
    `ref_logp` (prompts · group,) and `kl` (a scalar).
    """
    logp = sequence_logprob(model, batch)
    reward = batch["reward"]
    shaped = reward - batch["kl"] * (logp.detach() - batch["ref_logp"]).view_as(reward)
    advantage = shaped - shaped.mean(1, keepdim=True)
    return -(advantage.flatten() * logp).mean()


def weighted_sft(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Negative log-likelihood of whole answers, weighted by batch["weight"] (reward-weighted SFT)."""
    weight = batch["weight"]
    return -(weight * sequence_logprob(model, batch)).sum() / weight.sum().clamp(min=1e-8)
