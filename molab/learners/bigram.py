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

    def fit(self, sequences: list[list[int]], weights: list[float] | None = None) -> BigramTable:
        """Count the pairs in `sequences`, each counted `weights[i]` times (default once)."""
        self.tokens = np.unique(np.concatenate([np.asarray(s) for s in sequences]))  # seen ids, sorted
        self._index = {int(t): i for i, t in enumerate(self.tokens)}
        self.counts = np.zeros((len(self.tokens), len(self.tokens)))  # (current, next)
        return self.add(sequences, weights)

    def add(self, sequences: list[list[int]], weights: list[float] | None = None) -> BigramTable:
        """Add weighted counts of more sequences (tokens the table has never seen are skipped)."""
        for seq, w in zip(sequences, weights if weights is not None else [1.0] * len(sequences)):
            pairs = [(self._index[a], self._index[b]) for a, b in zip(seq, seq[1:])
                     if a in self._index and b in self._index]
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

    def generate(self, prompt: list[int], max_new_tokens: int, eos_id: int, rng: np.random.Generator | None = None) -> list[int]:
        """Continuation of `prompt`, stopping after `eos_id` (not included): greedy, or sampled in
        proportion to the counts when `rng` is given."""
        out, token = [], prompt[-1]
        for _ in range(max_new_tokens):
            row = self._row(token)
            token = int(self.tokens[row.argmax() if rng is None else rng.choice(len(row), p=row / row.sum())])
            if token == eos_id:
                break
            out.append(token)
        return out
