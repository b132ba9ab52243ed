"""The one training loop. Objectives plug in as functions; the loop does not branch on them."""

from __future__ import annotations

import contextlib
import functools
import math
import sys
from collections.abc import Callable, Iterator

import torch
from tqdm.auto import tqdm


class TrainingDiverged(RuntimeError):
    """The loss stopped being a finite number."""


@functools.cache
def compile_unavailable(device_type: str) -> str | None:
    """Why torch.compile cannot run on this device type here (for instance, no C++ compiler for
    its CPU backend), or None when it can. Tried once per process on a tiny function."""
    try:
        torch.compile(lambda x: x * 2 + 1)(torch.zeros(4, device=device_type))
    except Exception as e:  # noqa: BLE001 (a missing compiler surfaces as one of several backend errors)
        return f"{type(e).__name__}: {str(e).strip().partition(chr(10))[0]}"
    return None


@contextlib.contextmanager
def deterministic():
    """torch's deterministic algorithms, in eager ops and in the kernels torch.compile generates
    (compiled CPU training otherwise differs from run to run), restored afterwards."""
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def train(model, batches: Iterator[dict], objective: Callable, *, steps: int, lr: float,
          warmup: int | None = None, weight_decay: float = 0.0, desc: str = "train",
          progress: bool = True, compile: bool = False, dropout: bool = True,
          stop: Callable[[int], bool] | None = None, every: int = 0) -> list[float]:
    """Optimise `objective(model, batch)` for `steps` batches with AdamW (its fused kernel where torch has
    one), linear warmup and cosine decay, clipping gradients at 1. With `compile`, torch.compile compiles the model
    (forward and backward) and the update (clipping and the AdamW step; the learning rate is a
    tensor so that the schedule does not recompile it). `dropout=False` trains with the model in
    eval mode. Compiled training runs with deterministic algorithms, so a seed fixes the run;
    where torch.compile does not work, it says why and trains without it. With `stop` and `every`,
    `stop(step)` is asked after every `every` steps, and training ends early when it says so. The losses are read
    every `CHECK` steps, not at each, and each batch reaches the objective as a `DeviceBatch` (the host need not
    wait for the device; a model under transformers' sdpa attention still reads its padding mask at each forward):
    a loss that stops being finite raises TrainingDiverged then, naming its step. Stacked runs
    (`molab.learners.stacked`) train here as one model: their objective gives one loss per run, their sum is what
    is minimised, and each run's gradients are clipped by their own norm (the model's `clip_grad_norm_`). Returns the
    loss of every step taken (stacked runs: a list of the runs' losses per step)."""
    params = [p for p in model.parameters() if p.requires_grad]  # with LoRA adapters, only theirs
    device = params[0].device
    if compile and (why := compile_unavailable(device.type)):
        print(f"molab: WARNING torch.compile does not work here ({why}); training without it", file=sys.stderr)
        compile = False
    forward = torch.compile(model) if compile else model
    warmup = warmup if warmup is not None else max(1, steps // 20)
    opt = torch.optim.AdamW(params, lr=torch.tensor(lr) if compile else lr, weight_decay=weight_decay,
                            betas=(0.9, 0.98), capturable=compile and device.type == "cuda",
                            fused=not compile and device.type in ("cpu", "cuda") and params[0].is_floating_point())
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))

    clip = getattr(model, "clip_grad_norm_", None) or functools.partial(torch.nn.utils.clip_grad_norm_, params)

    def update():
        clip(1.0)
        opt.step()

    update = torch.compile(update) if compile else update
    model.train(dropout)
    losses: list[torch.Tensor] = []  # on the device, read every CHECK steps: the host need not wait at each
    checked = 0
    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False, unit="step")
    with deterministic() if compile else contextlib.nullcontext():
        for step in bar:
            batch = DeviceBatch(next(batches), device)
            loss = objective(forward, batch)
            losses.append(loss.detach())
            loss.sum().backward()
            update()
            opt.zero_grad(set_to_none=True)
            schedule.step()
            if (step + 1) % CHECK == 0:
                checked = _check(losses, checked)
                bar.set_postfix(loss=f"{loss.mean():.3f}")
            if stop is not None and every and (step + 1) % every == 0 and step + 1 < steps and stop(step + 1):
                break
    bar.close()
    _check(losses, checked)
    return torch.stack(losses).tolist() if losses else []


CHECK = 25  # steps between reads of the losses


class DeviceBatch(dict):
    """A batch moved to the model's device, and as drawn (`host`, on the CPU where the phase drew it there): an
    objective that reads the batch's shape from its values (`answer_logits`: where the answers start) reads `host`,
    so that the host need not wait for the device at every step."""

    def __init__(self, batch: dict, device: torch.device):
        super().__init__({k: v.to(device, non_blocking=True) for k, v in batch.items()})
        self.host = batch


def _check(losses: list[torch.Tensor], since: int) -> int:
    """Raise TrainingDiverged at the first of `losses` from step `since` on that is not finite; else how many
    losses are checked."""
    if since < len(losses):
        bad = ~torch.isfinite(torch.stack(losses[since:])).reshape(len(losses) - since, -1).all(1)
        if bad.any():
            step = since + int(bad.nonzero()[0])
            raise TrainingDiverged(f"loss became {losses[step].tolist()} at step {step}")
    return len(losses)
