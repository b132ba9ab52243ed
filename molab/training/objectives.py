"""Objectives: small functions (model, batch) -> scalar loss. The loop knows nothing else."""

from __future__ import annotations

import torch


def sft(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy on the answer tokens (labels are -100 elsewhere); shift handled by the model."""
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
