"""The training loop, eager and compiled: both learn, and the compiled one follows the same path."""

import pytest
import torch

from molab.config import ModelConfig
from molab.learners.lm import build_model, encode
from molab.learners.tokenizer import char_tokenizer
from molab.training.loop import train
from molab.training.objectives import sft

TOKENIZER = char_tokenizer("0123456789+=", ())


def train_addition(steps: int, compile: bool) -> list[float]:
    """Losses of a fresh one-layer model (seed 0) trained on every one-digit sum, one fixed batch."""
    batch = encode(TOKENIZER, [(f"{a}+{b}=", str(a + b)[::-1]) for a in range(10) for b in range(10)], 8)
    torch.manual_seed(0)
    model = build_model(ModelConfig(width=32, depth=1, heads=2, compile=compile), TOKENIZER, 8)
    return train(model, iter(lambda: batch, None), sft, steps=steps, lr=1e-2, progress=False, compile=compile)


def test_compiled_training_learns_like_eager_training():
    eager, compiled = train_addition(150, compile=False), train_addition(150, compile=True)
    for run in (eager, compiled):
        assert run[-1] < 0.5 * run[0]
    assert train_addition(150, compile=True) == compiled  # deterministic: the same seed gives the same run
    # same warmup and schedule (the compiled update's learning rate is a tensor the schedule fills in)
    assert all(abs(c - e) < 0.05 * e for c, e in zip(compiled[:20], eager[:20]))


def test_training_goes_on_without_compile_where_it_does_not_work(monkeypatch, capsys):
    from molab.training import loop

    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler found\nmore detail")

    monkeypatch.setattr(torch, "compile", broken)
    loop.compile_unavailable.cache_clear()
    try:
        losses = train_addition(100, compile=True)
    finally:
        loop.compile_unavailable.cache_clear()
    assert losses[-1] < 0.5 * losses[0]
    assert "torch.compile does not work here (RuntimeError: no C++ compiler found); training without it" \
        in capsys.readouterr().err


def test_sequence_logprob_is_the_sft_loss_summed_over_answer_tokens():
    from molab.training.objectives import sequence_logprob

    batch = encode(TOKENIZER, [("1+2=", "3"), ("12+34=", "64"), ("5+5=", "01")])   # right-padded
    torch.manual_seed(0)
    model = build_model(ModelConfig(width=32, depth=1, heads=2), TOKENIZER, 8)
    batch = {k: v.to(model.device) for k, v in batch.items()}
    n_answer_tokens = (batch["labels"] != -100).sum()   # answers and their eos
    assert n_answer_tokens == 2 + 3 + 3
    total = sequence_logprob(model, batch).sum()
    assert torch.allclose(total, -sft(model, batch) * n_answer_tokens, atol=1e-4)


def test_sft_projects_only_the_answer_positions_and_is_the_models_own_loss():
    from molab.training.objectives import sft_every_position

    batch = encode(TOKENIZER, [("1+2=", "3"), ("12+34=", "64"), ("5+5=", "01")])   # right-padded
    torch.manual_seed(0)
    model = build_model(ModelConfig(width=32, depth=1, heads=2), TOKENIZER, 8)
    projected = []
    model.lm_head.register_forward_hook(lambda module, args, out: projected.append(args[0].shape[1]))
    loss = sft(model, batch)
    assert torch.allclose(loss, sft_every_position(model, batch), atol=1e-6)
    first = int((batch["labels"] != -100).any(0).nonzero()[0])  # "1+2=" is 5 tokens with <bos>: the answer at 5
    assert first == 5 and projected == [batch["labels"].shape[1] - first + 1, batch["labels"].shape[1]]
    loss.backward()
    assert model.lm_head.weight.grad.abs().sum() > 0


def test_a_finetuning_batch_drops_only_the_columns_every_row_pads():
    """The trimmed batch is as wide as its longest row, and a causal LM's loss on it is the padded batch's."""
    from molab.training.phase import Learning, epochs, sft_phase

    examples = [(None, f"{a}+{b}=", str(a + b)) for a in range(10) for b in range(3)]
    torch.manual_seed(0)
    model = build_model(ModelConfig(width=32, depth=1, heads=2), TOKENIZER, 12).eval()
    phase = sft_phase("finetune", examples, steps=1, lr=1e-3, batch_size=8)
    batch = next(phase.batches(Learning(model, TOKENIZER, 12, 3, seed=0)))
    longest = int(batch["attention_mask"].sum(1).max())
    assert batch["input_ids"].shape[1] == longest < 12 and (batch["attention_mask"][:, -1] == 1).any()
    padded = encode(TOKENIZER, [examples[i][1:] for i in next(epochs(len(examples), 0, 8))], 12)
    assert torch.equal(padded["input_ids"][:, :longest], batch["input_ids"])
    with torch.no_grad():
        assert torch.allclose(sft(model, batch), sft(model, padded), atol=1e-6)


def test_a_loss_that_stops_being_finite_stops_training_and_names_its_step():
    """The losses are read every few steps, not at each: the first that is not finite is named, in the middle of a
    stretch or in the last, partial one, and for one run of a stack (a loss per run) too."""
    import itertools

    import pytest

    from molab.training.loop import CHECK, TrainingDiverged

    def run(nan_at: int | None, steps: int, runs: int = 1) -> list:
        model = torch.nn.Linear(2, 2)
        calls = itertools.count()

        def objective(model, batch):
            loss = model.weight.pow(2).sum() * torch.ones(runs) if runs > 1 else model.weight.pow(2).sum()
            if next(calls) == nan_at:
                loss = loss * torch.tensor([1.0] * (runs - 1) + [float("nan")]) if runs > 1 else loss * float("nan")
            return loss

        return train(model, iter(dict, None), objective, steps=steps, lr=1e-2, progress=False)

    fine = run(None, 2 * CHECK + 5)
    assert len(fine) == 2 * CHECK + 5 and fine[-1] < fine[0]
    for nan_at, steps, runs in ((CHECK + 3, 2 * CHECK + 5, 1), (2 * CHECK + 2, 2 * CHECK + 5, 1),
                                (CHECK + 3, 2 * CHECK + 5, 3)):
        with pytest.raises(TrainingDiverged, match=rf"nan.* at step {nan_at}$"):
            run(nan_at, steps, runs)


@pytest.mark.parametrize("architecture", ["llama", "gpt_neox"])
def test_a_training_step_reads_no_value_from_the_device(architecture):
    """The loop hands the objective a `DeviceBatch`, and a step (sft's forward, backward, clipping) of stacked runs,
    or of one model with eager attention (transformers' sdpa attention reads the padding mask), reads no value on
    the device, so that the host need not wait for the device at every step: on the meta device, which holds no
    values, any such read fails. The negative case: sft on a batch given only as the device holds it reads where
    its answers start from the device, and fails there."""
    from molab.learners.stacked import Stacked
    from molab.training.loop import DeviceBatch

    drawn = encode(TOKENIZER, [("1+2=", "3"), ("12+34=", "64"), ("5+5=", "01")])
    meta = torch.device("meta")

    def fresh():
        config = ModelConfig(architecture=architecture, width=32, depth=1, heads=2, compile=True)  # eager attention
        return build_model(config, TOKENIZER, 8)

    stacked = {k: torch.stack([v, v]) for k, v in drawn.items()}
    for model, batch in ((fresh(), drawn), (Stacked([fresh(), fresh()]), stacked)):
        model.to(meta)
        with pytest.raises(NotImplementedError, match="nonzero"):
            sft(model, {k: v.to(meta) for k, v in batch.items()})
        loss = sft(model, DeviceBatch(batch, meta))
        assert loss.device == meta and loss.shape == batch["labels"].shape[:-2]
        loss.sum().backward()
        if isinstance(model, Stacked):
            model.clip_grad_norm_(1.0)
        else:
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
