"""The bigram-table control: next token from counts of (token, next token) pairs.

If a result is reproduced by this table trained on the same finetuning tokens, the result says
nothing about the inductive biases of language models: the data spoonfed it.
"""

from __future__ import annotations

import numpy as np


class BigramTable:
    """Counts of next token given current token; greedy generation follows the largest count
    (ties to the lowest token id; an unseen token falls back to the most common next token).
    Only tokens seen in training get a row and column, so a large vocabulary costs nothing."""

    def __init__(self):
        self.tokens = np.zeros(0, dtype=np.int64)  # seen ids, sorted
        self._index: dict[int, int] = {}
        self.counts = np.zeros((0, 0))  # (current, next)

    def fit(self, sequences: list[list[int]], weights: list[float] | None = None) -> BigramTable:
        """Count the pairs in `sequences` afresh, each counted `weights[i]` times (default once)."""
        self.__init__()
        return self.add(sequences, weights)

    def _grow(self, sequences: list[list[int]]) -> None:
        """Give tokens not seen before a row and a column, keeping the ids sorted."""
        tokens = np.union1d(self.tokens, np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences]))
        if len(tokens) == len(self.tokens):
            return
        counts = np.zeros((len(tokens), len(tokens)))
        old = np.searchsorted(tokens, self.tokens)
        counts[np.ix_(old, old)] = self.counts
        self.tokens, self.counts = tokens, counts
        self._index = {int(t): i for i, t in enumerate(tokens)}

    def add(self, sequences: list[list[int]], weights: list[float] | None = None) -> BigramTable:
        """Add the pairs of more sequences, each counted `weights[i]` times (default once)."""
        if sequences:
            self._grow(sequences)
        for seq, w in zip(sequences, weights if weights is not None else [1.0] * len(sequences)):
            pairs = [(self._index[a], self._index[b]) for a, b in zip(seq, seq[1:])]
            if pairs and w:
                np.add.at(self.counts, tuple(np.array(pairs).T), w)
        return self

    def count(self, token: int, next_token: int) -> float:
        i, j = self._index.get(token), self._index.get(next_token)
        return 0 if i is None or j is None else float(self.counts[i, j])

    def _row(self, token: int) -> np.ndarray:
        i = self._index.get(token)
        row = self.counts[i] if i is not None else np.zeros(len(self.tokens))
        return row if row.any() else self.counts.sum(0)

    def generate(self, prompt: list[int], max_new_tokens: int, eos_id: int,
                 rng: np.random.Generator | None = None) -> list[int]:
        """Continuation of `prompt`, stopping after `eos_id` (not included): greedy, or sampled in
        proportion to the counts when `rng` is given. A table that has seen nothing answers nothing."""
        if not len(self.tokens):
            return []
        out, token = [], prompt[-1]
        for _ in range(max_new_tokens):
            row = self._row(token)
            token = int(self.tokens[row.argmax() if rng is None else rng.choice(len(row), p=row / row.sum())])
            if token == eos_id:
                break
            out.append(token)
        return out
