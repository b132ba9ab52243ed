"""The one training loop. Objectives plug in as functions; the loop does not branch on them."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
from tqdm.auto import tqdm


class TrainingDiverged(RuntimeError):
    """The loss stopped being a finite number."""


def train(model, batches: Iterator[dict], objective: Callable, *, steps: int, lr: float,
          warmup: int | None = None, weight_decay: float = 0.0, desc: str = "train",
          progress: bool = True, forward=None) -> list[float]:
    """Optimise `objective(model, batch)` for `steps` batches with AdamW, linear warmup and
    cosine decay, clipping gradients at 1. `forward` is the (possibly compiled) module the
    objective calls; it defaults to `model`. Returns the loss of every step."""
    forward = model if forward is None else forward
    device = next(model.parameters()).device
    warmup = warmup if warmup is not None else max(1, steps // 20)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.98))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    model.train()
    losses: list[float] = []
    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False, unit="step")
    for step in bar:
        batch = {k: v.to(device, non_blocking=True) for k, v in next(batches).items()}
        loss = objective(forward, batch)
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"loss became {loss.item()} at step {step}")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        schedule.step()
        losses.append(loss.item())
        if step % 25 == 0:
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    bar.close()
    return losses
