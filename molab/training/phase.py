"""Training phases: what an experiment hands to the one `train` loop, one phase at a time.

A phase is batches + objective + steps + learning rate. Its batches are made when the phase starts
(from the model as it is then: an incentive phase samples from it), and it says how a simple-learner control
meets the same phase (`control`), so the LM and the controls see the same data and pressure.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from molab.learners.lm import encode
from molab.training.objectives import sft


@dataclass
class Learning:
    """What a phase's batches are made from: the learner (an LM, or None for a control), its tokenizer,
    the padded training length, the answer budget in tokens, and the run's seed. A phase may write numbers of its
    own in `notes` (e.g. what a red-team search found); they go into the run's metrics. `drawn_tags`: how many embedding
    rows the run drew for the experiment's tags (its seed drew them)."""

    model: object
    tokenizer: object
    max_len: int
    n_new: int
    seed: int
    notes: dict = field(default_factory=dict)
    drawn_tags: int = 0


@dataclass(frozen=True)
class Phase:
    """`steps` optimiser steps of `objective(model, batch)` on `batches(learning)`, at learning rate `lr`.

    `shared`: the phase is the same for every pressure of a seed (it does not read the pressure), so it is
    trained once per seed and each pressure's later phases start from a copy. `control(control, learning)` is the
    same phase for a simple-learner control (`molab.learners.controls`); `samples`: the phase asks the learner for
    its own answers (a control that samples them then differs by seed)."""

    name: str
    batches: Callable[[Learning], Iterator[dict]]
    steps: int
    lr: float
    objective: Callable = sft
    warmup: int | None = None  # None: 5% of the steps
    dropout: bool = True
    shared: bool = False
    control: Callable | None = None
    samples: bool = False


def epochs(n: int, seed: int, batch_size: int) -> Iterator[torch.Tensor]:
    """Batches of the row indices 0..n-1, in a fresh order each epoch drawn from `seed` (numpy's permutation: on a
    2-core CPU a stack of 512 demo runs picks its batches in 1.3 ms a step, against 5.1 with Python's shuffle)."""
    rng = np.random.default_rng(seed)
    while True:
        order = torch.from_numpy(rng.permutation(n))
        for i in range(0, max(1, n - batch_size + 1), batch_size):
            yield order[i:i + batch_size]


class Rows:
    """A supervised phase's batches: rows of encoded examples (`table`, `encode`'s) picked by `order`, one tensor of
    row indices a batch (`epochs`'), each batch cut to its longest row (`trimmed`). Stacked runs pick every run's
    batch from their tables at once (`molab.learners.stacked.stacked_batches`)."""

    def __init__(self, table: dict, order: Iterator[torch.Tensor]):
        self.table, self.order = table, order

    def __iter__(self) -> Rows:
        return self

    def __next__(self) -> dict:
        chosen = next(self.order)
        return trimmed({k: v[chosen] for k, v in self.table.items()})


_ENCODED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # tokenizer -> {(pairs, length): rows}


def _encoded(tokenizer, pairs: tuple, length: int) -> dict:
    """`encode`'s rows (read, never written), once per tokenizer object, examples and length, kept while the
    tokenizer lives: stacked runs share one tokenizer and, where their examples are the same, these rows. The
    tokenizer must not change after it."""
    tables = _ENCODED.setdefault(tokenizer, {})
    if (pairs, length) not in tables:
        tables[pairs, length] = encode(tokenizer, list(pairs), length)
    return tables[pairs, length]


def token_sequences(tokenizer, examples: list[tuple[str, str]]) -> list[list[int]]:
    """Each (prompt, answer) pair as the token ids an LM trains on (special tokens and eos included)."""
    ids = encode(tokenizer, examples)
    return [row[m.bool()].tolist() for row, m in zip(ids["input_ids"], ids["attention_mask"])]


def trimmed(batch: dict) -> dict:
    """A right-padded batch (or a stack of them) without the columns that are padding in every row. A causal LM
    computes the same loss on the rest: no token attends to a later one."""
    if not len(batch["attention_mask"]):
        return batch
    length = int(batch["attention_mask"].sum(-1).max())
    return {k: v[..., :length] for k, v in batch.items()}


def sft_phase(name: str, examples: list[tuple], *, steps: int, lr: float, batch_size: int,
              shared: bool = False) -> Phase:
    """Supervised finetuning on (problem, prompt, answer) examples in a seeded order; a control learns the same
    examples (order cannot matter to it)."""
    pairs = tuple((prompt, answer) for _, prompt, answer in examples)

    def batches(learning: Learning) -> Rows:  # every example encoded once; each batch picks its rows
        return Rows(_encoded(learning.tokenizer, pairs, learning.max_len),
                    epochs(len(pairs), learning.seed, batch_size))

    def control(learner, learning: Learning) -> None:
        learner.learn(examples)

    return Phase(name, batches, steps, lr, shared=shared, control=control)
