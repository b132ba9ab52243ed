"""Runs trained many at a time in one process: their weights stacked into one batched model (torch.func).

`Stacked(models)` holds R models of one architecture as one module. Every weight that trains, or that differs
between the models (a tag's embedding drawn from each run's seed), is stacked along a new first dimension; the rest
is shared, read from the first model. Its forward runs the first model's code once over all R sets of weights
(`torch.func.vmap` of `functional_call`): inputs of shape (R, batch, length) give each run its own batch, inputs of
shape (batch, length) give every run the same one. AdamW on the stacked tensors is each run's own AdamW (its update
is elementwise), and `clip_grad_norm_` clips each run's gradients by their own norm, so R stacked runs train as R
runs one at a time would, up to the order of float sums.

It is built for a GPU, where one small model's step costs kernel launches rather than arithmetic: on an H100, 512
of the demo's runs stacked went 90x as fast as one at a time in float32 (786 runs a minute), and under bfloat16
autocast 983 a minute (113x one float32 run alone); on an H200, once runs that start alike stacked from one model,
1,252 a minute under bfloat16 (263x one run alone under bfloat16). There a stack's step costs the GPU's work,
which grows with the runs stacked. On a CPU the arithmetic is the cost, and stacking gains little: 1.16-1.26x
(bench/stacked.py).
"""

from __future__ import annotations

import copy
import inspect
import types

import torch
from torch.func import functional_call, vmap
from transformers import DynamicCache

from molab.learners.lm import _decode, by_length, prompt_ids, through_eos, unwrapped


class Unstackable(ValueError):
    """Runs whose batches cannot be stacked (different numbers of rows, or padding that is not on the right)."""


def stacked_batches(iterators: list, tokenizer):
    """Every run's next batch at each step, padded on the right to the longest and stacked: input_ids,
    attention_mask and labels of shape (R, batch, length). Runs whose batches are `Rows` (supervised phases) have
    theirs picked from their tables at once, not run by run."""
    from molab.learners.lm import IGNORE
    from molab.training.phase import Rows

    if all(isinstance(it, Rows) for it in iterators):
        yield from _picked(iterators)
        return
    pads = {"input_ids": tokenizer.pad_token_id, "attention_mask": 0, "labels": IGNORE}
    while True:
        batches = [next(it) for it in iterators]
        if len({len(b["input_ids"]) for b in batches}) > 1:
            raise Unstackable("the runs' batches have different numbers of rows")
        n, length = len(batches[0]["input_ids"]), max(b["input_ids"].shape[1] for b in batches)
        stacked = {k: torch.full((len(batches), n, length), pad, dtype=batches[0][k].dtype) for k, pad in pads.items()}
        for r, b in enumerate(batches):
            for k, out in stacked.items():
                out[r, :, :b[k].shape[1]] = b[k]
        if (stacked["attention_mask"][..., 1:] > stacked["attention_mask"][..., :-1]).any():
            raise Unstackable("a batch is not padded on the right")
        yield stacked


def _picked(runs: list):
    """`stacked_batches` of `Rows`: the runs' distinct tables joined (once), each step's batches one index into them."""
    from molab.training.phase import trimmed

    tables = list({id(run.table): run.table for run in runs}.values())
    if len({t["input_ids"].shape[1] for t in tables}) > 1:
        raise Unstackable("the runs' examples are encoded to different lengths")
    starts = {id(t): sum(len(u["input_ids"]) for u in tables[:i]) for i, t in enumerate(tables)}
    table = tables[0] if len(tables) == 1 else {k: torch.cat([t[k] for t in tables]) for k in tables[0]}
    offset = torch.tensor([starts[id(run.table)] for run in runs]).view(-1, 1)
    while True:
        picks = [next(run.order) for run in runs]
        if len({len(p) for p in picks}) > 1:
            raise Unstackable("the runs' batches have different numbers of rows")
        index = torch.stack(picks) + offset  # (R, batch)
        yield trimmed({k: v[index] for k, v in table.items()})


class Stacked(torch.nn.Module):
    """R models of one architecture (the same parameter names and shapes) as one module; see the module's doc.

    The batches it trains on must be right-padded (`molab.learners.lm.encode`'s): it reads the causal mask only, and
    with padding on the right no real token attends to a pad either way."""

    def __init__(self, models: list[torch.nn.Module]):
        super().__init__()
        first = models[0]
        object.__setattr__(self, "skeleton", first)  # not a submodule: only the stacked weights are parameters
        self.attention = first.config._attn_implementation  # what `made` gives each run's own model back
        forward = inspect.signature(unwrapped(first).forward)
        self.cache = "cache" if "cache" in forward.parameters else "past_key_values"
        first.set_attn_implementation("eager")  # torch's fused attention kernels have no batching rule
        self.names: list[str] = []
        self.weights = torch.nn.ParameterList()
        tensors = [dict(m.named_parameters()) | dict(m.named_buffers()) for m in models]
        for name, tensor in tensors[0].items():
            trains = isinstance(tensor, torch.nn.Parameter) and tensor.requires_grad
            if trains or any(t[name] is not tensor and not torch.equal(tensor, t[name]) for t in tensors[1:]):
                self.names.append(name)
                self.weights.append(torch.nn.Parameter(torch.stack([t[name].detach() for t in tensors]),
                                                       requires_grad=trains))

    def __len__(self) -> int:
        return len(self.weights[0])

    def train(self, mode: bool = True):
        self.skeleton.train(mode)  # dropout, where the models have it, follows the skeleton's mode
        return super().train(mode)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, logits_to_keep: int = 0,
                past: tuple | None = None):
        """Each run's logits, (R, batch, kept positions, vocabulary), as `.logits`. `attention_mask` is not read (the
        batches are right-padded): the model gets one of ones, shared by every run, which makes its attention
        causal as no mask would, without the check for packed sequences that a missing mask asks of transformers,
        a read of a value on the device at every forward (the host would wait for the device at every step).

        With `past` (`()` at first), the runs' keys and values too, as `.past` (a (keys, values) pair of each layer,
        each (R, batch, heads, positions, head size)): the next call, given them and the new tokens only, reads the
        tokens before from them, as generating with a cache does."""
        cached = past is not None
        seen = past[0][0].shape[-2] if past else 0
        ones = torch.ones(*input_ids.shape[-2:-1], seen + input_ids.shape[-1], dtype=torch.long,
                          device=input_ids.device)

        def one(weights, ids, past):
            cache = DynamicCache(past) if cached else None  # the model adds the new tokens' keys and values to it
            logits = functional_call(self.skeleton, weights, (ids,), {"attention_mask": ones, "use_cache": cached,
                                                                     "logits_to_keep": logits_to_keep,
                                                                     self.cache: cache}).logits
            return logits, tuple((layer.keys, layer.values) for layer in cache.layers) if cached else ()

        shared = input_ids.dim() == 2
        logits, past = vmap(one, in_dims=(0, None if shared else 0, 0), randomness="different")(
            dict(zip(self.names, self.weights)), input_ids, past or ())
        return types.SimpleNamespace(logits=logits, past=past)

    @torch.no_grad()
    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """Scale each run's gradients so that their norm (over all its weights) is at most `max_norm`, as
        `torch.nn.utils.clip_grad_norm_` does for one model; each run's norm before, shape (R,)."""
        grads = [w.grad for w in self.weights if w.grad is not None]
        norms = torch.stack([g.flatten(1).float().pow(2).sum(1) for g in grads]).sum(0).sqrt()
        scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(scale.view(-1, *[1] * (g.dim() - 1)).to(g.dtype))
        return norms

    @torch.no_grad()
    def write_back(self, models: dict[int, torch.nn.Module]) -> None:
        """Copy each run's stacked weights into its own model (`models`: run -> model, runs numbered in the order they
        were stacked)."""
        for r, model in models.items():
            tensors = dict(model.named_parameters()) | dict(model.named_buffers())
            for name, weight in zip(self.names, self.weights):
                tensors[name].copy_(weight[r])

    def made(self, r: int) -> torch.nn.Module:
        """Run `r`'s own model, made now: a copy of the skeleton holding the run's stacked weights, with the attention
        the models had before stacking. For runs stacked from one model (`Stacked([model] * R)`: runs that start
        alike), which need no model of their own to train or to answer stacked."""
        model = copy.deepcopy(self.skeleton)
        model.set_attn_implementation(self.attention)
        self.write_back({r: model})
        return model


@torch.no_grad()
def stacked_answers(stacked: Stacked, tokenizer, prompts: list[str], max_new_tokens: int,
                    rows: int = 8192) -> list[list[str]]:
    """Each run's greedy answers to `prompts` (run by run), as `molab.learners.lm.generate_answers` gives one model's:
    prompts grouped by token length (no padding), each answer cut after its first eos; each token after the first
    reads those before from the runs' keys and values (a cache). At most `rows` sequences (runs times prompts) go
    through the model at once."""
    was_training = stacked.training
    stacked.eval()
    ids = prompt_ids(tokenizer, prompts)
    answers: list[list[str]] = [[""] * len(prompts) for _ in range(len(stacked))]
    device = stacked.weights[0].device
    chunk_size = max(1, rows // len(stacked))
    for length, members in by_length(ids).items():
        for start in range(0, len(members), chunk_size):
            chunk = members[start:start + chunk_size]
            seq = torch.tensor([ids[i] for i in chunk], device=device).expand(len(stacked), -1, -1)
            new, past = seq, ()
            for _ in range(max_new_tokens):
                out = stacked(new, logits_to_keep=1, past=past)
                new, past = out.logits[:, :, -1:].argmax(-1), out.past  # (R, chunk, 1)
                seq = torch.cat([seq, new], -1)
            for r, run in enumerate(seq[:, :, length:].tolist()):
                for i, row in zip(chunk, run):
                    answers[r][i] = _decode(tokenizer, through_eos(row, tokenizer.eos_token_id))
    stacked.train(was_training)
    return answers
