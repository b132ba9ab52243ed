"""The unit every task world produces."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One problem: what the model sees, the two answers that matter, and how hard it is.

    `sycophantic` is the overseer's answer; on easy problems it equals `honest`.
    `operation` and `digits` describe breadth in arithmetic worlds and are None elsewhere.
    """

    prompt: str
    honest: str
    sycophantic: str
    difficulty: int
    operation: str | None = None
    digits: int | None = None

    @property
    def disagree(self) -> bool:
        """True when the honest and sycophantic policies give different answers."""
        return self.honest != self.sycophantic

    def to_json(self) -> dict:
        return {"prompt": self.prompt, "honest": self.honest, "sycophantic": self.sycophantic,
                "difficulty": self.difficulty}
