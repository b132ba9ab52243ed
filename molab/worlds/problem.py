"""The unit every task world produces."""

from __future__ import annotations

from dataclasses import dataclass


class WorldError(ValueError):
    """A world, overseer or scheme that cannot give what was asked; the message is one line naming the
    config key (or file and line) at fault."""


@dataclass(frozen=True)
class Problem:
    """One problem: what the model sees, the two answers that matter, and how hard it is.

    `sycophantic` is the overseer's answer; on easy problems it equals `honest`.
    `operation`, `digits` and `operands` describe arithmetic problems and are None elsewhere.
    """

    prompt: str
    honest: str
    sycophantic: str
    difficulty: int
    operation: str | None = None
    digits: int | None = None
    operands: tuple[int, int] | None = None

    @property
    def disagree(self) -> bool:
        """True when the honest and sycophantic policies give different answers."""
        return self.honest != self.sycophantic

    def to_json(self) -> dict:
        return {"prompt": self.prompt, "honest": self.honest, "sycophantic": self.sycophantic,
                "difficulty": self.difficulty}
