"""The bigram-table control: next token from counts of (token, next token) pairs.

If a result is reproduced by this table trained on the same finetuning tokens, the result says
nothing about the inductive biases of language models: the data spoonfed it.
"""

from __future__ import annotations

import numpy as np


class BigramTable:
    """Counts of next token given current token; greedy generation follows the largest count
    (ties to the lowest token id; an unseen token falls back to the most common next token)."""

    def __init__(self, vocab_size: int):
        self.counts = np.zeros((vocab_size, vocab_size), dtype=np.int64)  # (current, next)

    def fit(self, sequences: list[list[int]]) -> BigramTable:
        for seq in sequences:
            np.add.at(self.counts, (seq[:-1], seq[1:]), 1)
        return self

    def next_token(self, token: int) -> int:
        row = self.counts[token]
        return int(row.argmax() if row.any() else self.counts.sum(0).argmax())

    def generate(self, prompt: list[int], max_new_tokens: int, eos_id: int) -> list[int]:
        """Greedy continuation of `prompt`, stopping after `eos_id` (not included)."""
        out, token = [], prompt[-1]
        for _ in range(max_new_tokens):
            token = self.next_token(token)
            if token == eos_id:
                break
            out.append(token)
        return out
