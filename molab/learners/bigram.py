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

    def fit(self, sequences: list[list[int]]) -> BigramTable:
        self.tokens = np.unique(np.concatenate([np.asarray(s) for s in sequences]))  # seen ids, sorted
        index = {int(t): i for i, t in enumerate(self.tokens)}
        self.counts = np.zeros((len(self.tokens), len(self.tokens)), dtype=np.int64)  # (current, next)
        for seq in sequences:
            rows = [index[int(t)] for t in seq]
            np.add.at(self.counts, (rows[:-1], rows[1:]), 1)
        self._index = index
        return self

    def count(self, token: int, next_token: int) -> int:
        i, j = self._index.get(token), self._index.get(next_token)
        return 0 if i is None or j is None else int(self.counts[i, j])

    def next_token(self, token: int) -> int:
        i = self._index.get(token)
        row = self.counts[i] if i is not None else np.zeros(len(self.tokens), dtype=np.int64)
        return int(self.tokens[row.argmax() if row.any() else self.counts.sum(0).argmax()])

    def generate(self, prompt: list[int], max_new_tokens: int, eos_id: int) -> list[int]:
        """Greedy continuation of `prompt`, stopping after `eos_id` (not included)."""
        out, token = [], prompt[-1]
        for _ in range(max_new_tokens):
            token = self.next_token(token)
            if token == eos_id:
                break
            out.append(token)
        return out
