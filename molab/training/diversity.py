"""The diversity phase: finetuning on labelled examples plus α times disagreement with earlier runs on unlabelled
prompts (the diversity experiment's; see `molab.experiments.diversity` for the definition and why).

Each earlier run is its greedy answers to the unlabelled prompts. For an earlier answer a to prompt x the term is
-log(1 - p(a | x)), D-BAT's -log P(the answers differ) when the earlier run is certain of a; p is capped at
1 - 1e-4, so the term stays finite (at most about 9.2) while the run still reproduces a. The labelled batches come
in the same seeded order as a plain run's, with the same dropout draws (the term's forward draws from a fork of the
RNG), so at a given seed the disagreement term is the only difference.
"""

from __future__ import annotations

import random
from collections import Counter

import torch

from molab.analysis.policy import parting_index
from molab.learners.lm import IGNORE, encode
from molab.training.objectives import sequence_logprob, sft
from molab.training.phase import Learning, Phase, epochs, trimmed

MOST_LIKELY = 1 - 1e-4  # the largest p(a | x) the term counts


def disagreement(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """SFT on the labelled rows + α · mean over prompts of w · -log(1 - p(a | x)), for one earlier answer a of each
    prompt x (drawn by the share of earlier runs that gave it; w: the share of earlier runs counted, 1 but where
    parting mode drops answers that left both policies early)."""
    if not len(batch["repel_input_ids"]):  # no earlier answer left to disagree with (parting mode)
        return sft(model, batch)
    # dropout in this forward draws from a fork of the RNG: the labelled forward then gets a plain run's draws (the
    # same stream, so the two forwards' masks are alike where their shapes are; harmless, and the price of that)
    cuda = sorted({p.device for p in model.parameters() if p.device.type == "cuda"}, key=str)
    with torch.random.fork_rng(devices=cuda):
        logp = sequence_logprob(model, {"input_ids": batch["repel_input_ids"],
                                        "attention_mask": batch["repel_attention_mask"],
                                        "labels": batch["repel_labels"]})
    differ = -torch.log1p(-logp.exp().clamp(max=MOST_LIKELY))
    return sft(model, batch) + batch["alpha"] * (batch["repel_weight"] * differ).sum() / batch["n_prompts"]


def _parting_only(tokenizer, rows: dict, pairs: list, problems: list) -> list[bool]:
    """Keep, in each row's labels, only the token where the problem's two policies part (the answer's token that
    holds that character, or its end); False for a row whose answer already left both policies before there."""
    keep = []
    for row, (_, answer), problem in zip(rows["labels"], pairs, problems):
        i = parting_index(problem)
        start = int((row != IGNORE).nonzero()[0])
        at = None if i is None or answer[:i] != problem.honest[:i] else (
            start + len(tokenizer(answer[:i], add_special_tokens=False).input_ids))
        kept = at is not None and at < len(row) and bool(row[at] != IGNORE)
        row[torch.arange(len(row)) != (at if kept else -1)] = IGNORE
        keep.append(kept)
    return keep


def diversity_phase(name: str, examples: list[tuple[str, str]], unlabelled: list[tuple], earlier: list[list[str]],
                    *, alpha: float, parting: bool, steps: int, lr: float, batch_size: int) -> Phase:
    """`steps` updates, each on `batch_size` labelled (prompt, answer) `examples` and `batch_size` of the
    `unlabelled` (problem, prompt) pairs, each with one of the answers the `earlier` runs gave it (each run's answers
    in the order of `unlabelled`); `parting`: disagreement only at the token where the policies part."""

    def batches(learning: Learning):
        tokenizer = learning.tokenizer
        labelled = encode(tokenizer, examples, learning.max_len)
        pairs, problems, weights, prompt_of = [], [], [], []
        for i, (problem, prompt) in enumerate(unlabelled):
            for answer, count in Counter(run[i] for run in earlier).items():
                pairs.append((prompt, answer))
                problems.append(problem)
                weights.append(count / len(earlier))
                prompt_of.append(i)
        repel = encode(tokenizer, pairs)
        keep = _parting_only(tokenizer, repel, pairs, problems) if parting else [True] * len(pairs)
        rows_of: dict[int, list[int]] = {}
        for j, i in enumerate(prompt_of):
            if keep[j]:
                rows_of.setdefault(i, []).append(j)
        prompts = list(rows_of)
        rng = random.Random(f"{name}-diversity-{learning.seed}")
        for chosen in epochs(len(examples), learning.seed, batch_size):
            picked = rng.sample(prompts, min(batch_size, len(prompts)))
            # one earlier answer per prompt, drawn by its share of earlier runs, weighted by the share kept: the
            # mean over earlier runs in expectation, at the cost of one sequence per prompt however long the chain
            rows = [rng.choices(rows_of[i], [weights[j] for j in rows_of[i]])[0] for i in picked]
            kept = [sum(weights[j] for j in rows_of[i]) for i in picked]
            yield (trimmed({k: v[chosen] for k, v in labelled.items()})  # as a plain run's batches are
                   | {f"repel_{k}": v for k, v in trimmed({k: v[rows] for k, v in repel.items()}).items()}
                   | {"repel_weight": torch.tensor(kept), "n_prompts": torch.tensor(max(1, len(picked))),
                      "alpha": torch.tensor(alpha)})

    return Phase(name, batches, steps, lr, objective=disagreement)
