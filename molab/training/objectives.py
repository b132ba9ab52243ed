"""Objectives: small functions (model, batch) -> scalar loss. The loop knows nothing else."""

from __future__ import annotations

import torch

from molab.learners.lm import IGNORE


def answer_logits(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits that predict each labelled token, (batch, n, vocab) in float32, and those labels, (batch, n) (-100
    where a row has none); with stacked runs (`molab.learners.stacked`), each with a leading run dimension. Only the
    positions from the one before the first labelled column on are projected onto the vocabulary (`logits_to_keep`):
    with answers at the end of short prompts, a real checkpoint's large vocabulary projection is not paid for the
    prompts. That position is read from the batch as drawn (`DeviceBatch.host`), where it is one."""
    labels = batch["labels"]
    labelled = (getattr(batch, "host", batch)["labels"] != IGNORE).flatten(0, -2).any(0).nonzero()  # no device sync
    first = max(1, int(labelled[0])) if len(labelled) else 1
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   logits_to_keep=labels.shape[-1] - first + 1).logits
    return logits[..., :-1, :].float(), labels[..., first:]


def sft(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy on the answer tokens (labels are -100 elsewhere), averaged over them: the model's own loss, with
    logits only where answers are (`answer_logits`). Stacked runs get one loss each, shape (R,)."""
    logits, labels = answer_logits(model, batch)
    nll = torch.nn.functional.cross_entropy(logits.flatten(0, -2), labels.flatten(), ignore_index=IGNORE,
                                            reduction="none").view(labels.shape)
    return nll.sum((-2, -1)) / (labels != IGNORE).sum((-2, -1))


def sft_every_position(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """`sft` with logits at every position (the model's own loss): shapes that do not depend on where the answers
    start, so compiled pretraining compiles once."""
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss


def sequence_logprob(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Log-probability of each sequence's labelled tokens (its answer), shape (batch,)."""
    logits, labels = answer_logits(model, batch)
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
