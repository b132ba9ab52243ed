"""Runs trained many at a time in one process (`--stack`): stacked runs learn, clip and answer as the same runs
trained one at a time do, and a sweep with them gives the runs alone give."""

import itertools
import json

import pytest
import torch

from conftest import FAST
from molab.config import ModelConfig
from molab.learners.lm import IGNORE, build_model, device, encode, generate_answers
from molab.learners.stacked import Stacked, Unstackable, stacked_answers, stacked_batches
from molab.learners.tokenizer import char_tokenizer
from molab.training.loop import train
from molab.training.objectives import sft

TOKENIZER = char_tokenizer("0123456789+=", ())
SUMS = [(f"{a}+{b}=", str(a + b)[::-1]) for a in range(10) for b in range(10)]


def fresh(seed: int, architecture: str = "llama"):
    torch.manual_seed(seed)
    return build_model(ModelConfig(width=32, depth=1, heads=2, compile=False, architecture=architecture), TOKENIZER, 8)


def batches(seed: int):
    """Batches of 32 sums in a seeded order, of the lengths their rows need (right-padded)."""
    rows = encode(TOKENIZER, SUMS, 8)
    g = torch.Generator().manual_seed(seed)
    while True:
        chosen = torch.randperm(len(SUMS), generator=g)[:32]
        batch = {k: v[chosen] for k, v in rows.items()}
        length = int(batch["attention_mask"].sum(1).max())
        yield {k: v[:, :length] for k, v in batch.items()}


def test_stacked_runs_learn_as_the_same_runs_alone_do():
    """Three runs from different weights on different batch orders, their gradients clipped (their norms start at
    about 2): each stacked run's losses follow its own run alone, step by step, and fall. (At a learning rate of
    1e-2, a run's loss spikes midway and float-sum differences of 1e-5 grow to a few percent.)"""
    alone = [train(fresh(s), batches(s), sft, steps=60, lr=3e-3, progress=False) for s in range(3)]
    models = [fresh(s) for s in range(3)]
    stacked = Stacked(models)
    together = train(stacked, stacked_batches([batches(s) for s in range(3)], TOKENIZER), sft, steps=60, lr=3e-3,
                     progress=False)
    for r, losses in enumerate(alone):
        mine = [step[r] for step in together]
        assert mine[-1] < 0.7 * mine[0]
        assert max(abs(a - b) / a for a, b in zip(losses, mine)) < 1e-4, r
    stacked.write_back(dict(enumerate(models)))  # each model now holds its own run's weights
    x = encode(TOKENIZER, SUMS[:8], 8)["input_ids"].to(models[1].device)
    with torch.no_grad():
        assert torch.allclose(models[1](x).logits, stacked(x).logits[1], atol=1e-4)
        assert not torch.allclose(models[0](x).logits, models[1](x).logits, atol=1e-2)


def test_stacked_lora_runs_learn_as_alone_and_share_the_frozen_base():
    """LoRA runs of one base, sharing its frozen weights (as `molab.runs` starts them): only their adapters are
    stacked, and they learn as each run alone does, up to float sums in another order (they grow from 1e-7 to at
    most 4.5e-4 of the loss in 60 steps)."""
    import copy

    from molab.config import LoraOptions
    from molab.learners.lm import with_lora

    base = fresh(0)
    options = LoraOptions(r=8, target_modules=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                               "down_proj"))

    def run(seed):
        torch.manual_seed(seed)
        return with_lora(copy.deepcopy(base, {id(w): w for w in base.parameters()}), options)

    alone = [train(run(s), batches(s), sft, steps=60, lr=1e-2, progress=False) for s in range(2)]
    stacked = Stacked([run(s) for s in range(2)])
    assert stacked.names and all("lora_" in name for name in stacked.names)
    together = train(stacked, stacked_batches([batches(s) for s in range(2)], TOKENIZER), sft, steps=60, lr=1e-2,
                     progress=False)
    for r, losses in enumerate(alone):
        mine = [step[r] for step in together]
        assert mine[-1] < 0.95 * mine[0]  # adapters on a random tiny model learn slowly: 10% in 60 steps
        assert max(abs(a - b) / a for a, b in zip(losses, mine)) < 5e-3, r
    assert all(not w.requires_grad for w in base.parameters())  # frozen, never written: still the base's
    assert torch.equal(base.get_input_embeddings().weight, fresh(0).get_input_embeddings().weight)


def test_each_stacked_run_is_clipped_by_its_own_norm():
    stacked = Stacked([fresh(0), fresh(1)])
    torch.manual_seed(2)
    for w, scale in zip(stacked.weights, torch.linspace(0.01, 1.0, len(stacked.weights))):
        runs = torch.tensor([0.001, 10.0], device=w.device).view(2, *[1] * (w.dim() - 1))
        w.grad = torch.randn_like(w) * scale * runs
    alone = [[w.grad[r].clone() for w in stacked.weights] for r in range(2)]
    norms = []
    for grads in alone:
        params = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
        for p, g in zip(params, grads):
            p.grad = g
        norms.append(float(torch.nn.utils.clip_grad_norm_(params, 1.0)))
    assert norms[0] < 1 < norms[1]  # one run is clipped, the other is not
    got = stacked.clip_grad_norm_(1.0)
    assert torch.allclose(got.cpu(), torch.tensor(norms), rtol=1e-5)
    for r in range(2):
        for w, g in zip(stacked.weights, alone[r]):
            assert torch.allclose(w.grad[r], g, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("architecture", ["llama", "gpt_neox"])
def test_stacked_answers_are_each_runs_greedy_answers(architecture):
    """Two different models answering at once give what each gives alone (HF generate, with its cache), in each
    architecture molab builds, and a checkpoint's saved decoding settings change neither: here suppressing the token
    the first answer starts with, which generate left to itself would honour."""
    models = [fresh(0, architecture), fresh(1, architecture)]
    for seed, model in enumerate(models):
        train(model, batches(seed), sft, steps=40, lr=1e-2, progress=False)
    prompts = [p for p, _ in SUMS] + ["1+1="]  # one prompt of a length of its own (no padding anywhere)
    alone = [generate_answers(m, TOKENIZER, prompts, 3) for m in models]
    assert alone[0] != alone[1]
    assert stacked_answers(Stacked(models), TOKENIZER, prompts, 3, rows=64) == alone
    first, model = TOKENIZER.convert_tokens_to_ids(alone[0][0][0]), models[0]
    model.generation_config.suppress_tokens = [first]
    ids = torch.tensor([TOKENIZER(prompts[0]).input_ids])
    honoured = model.generate(ids, max_new_tokens=1, do_sample=False, pad_token_id=TOKENIZER.pad_token_id)
    assert honoured[0, -1] != first  # HF generate itself suppresses it
    assert generate_answers(model, TOKENIZER, prompts, 3) == alone[0]
    assert model.generation_config.suppress_tokens == [first]  # left as it was


def test_batches_that_cannot_be_stacked_are_refused():
    rows = encode(TOKENIZER, SUMS[:4], 8)
    left = {k: v.flip(1) for k, v in rows.items()}  # padding on the left
    with pytest.raises(Unstackable, match="right"):
        next(stacked_batches([iter([rows]), iter([left])], TOKENIZER))
    with pytest.raises(Unstackable, match="rows"):
        next(stacked_batches([iter([rows]), iter([{k: v[:3] for k, v in rows.items()}])], TOKENIZER))
    got = next(stacked_batches([iter([rows]), iter([{k: v[:, :6] for k, v in rows.items()}])], TOKENIZER))
    assert got["input_ids"].shape == (2, 4, 8) and (got["labels"][1, :, 6:] == IGNORE).all()


def test_supervised_batches_are_picked_for_every_run_at_once_as_run_by_run():
    """`Rows` (a supervised phase's batches) of three runs, two sharing their examples, are picked from the joined
    tables in one index a step; the batches equal each run's own, padded and stacked run by run."""
    from molab.training.phase import Rows, epochs

    examples = [SUMS[:10], SUMS[::-1]]  # sums of one digit; all sums
    tables = [encode(TOKENIZER, e, 8) for e in examples]

    def runs():
        return [Rows(tables[t], epochs(len(examples[t]), seed, 2))
                for seed, t in ((0, 0), (1, 0), (2, 1))]

    at_once = stacked_batches(runs(), TOKENIZER)
    run_by_run = stacked_batches([iter(list(itertools.islice(run, 30))) for run in runs()], TOKENIZER)
    widths = set()
    for _ in range(30):
        a, b = next(at_once), next(run_by_run)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        widths.add(a["input_ids"].shape[-1])
    assert len(widths) > 1  # batches were cut to their longest row
    with pytest.raises(Unstackable, match="lengths"):
        next(stacked_batches([Rows(tables[0], iter([[0]])), Rows(encode(TOKENIZER, SUMS, 9), iter([[0]]))], TOKENIZER))


def test_only_supervised_phases_stack():
    from molab.runs import stackable
    from molab.training.objectives import reinforce
    from molab.training.phase import Phase, sft_phase

    supervised = sft_phase("finetune", [(None, "1+1=", "2")], steps=1, lr=1e-3, batch_size=1)
    assert stackable([supervised, supervised])
    assert not stackable([supervised, Phase("rl", lambda learning: iter(()), 1, 1e-3, reinforce, samples=True)])


def runs(out):
    from molab import load_answers, load_results

    df = load_results(out).set_index("run_id").sort_index()
    answers = load_answers(out).sort_values(["run_id", "condition", "prompt"])
    return df, answers["answer"].tolist()


def test_a_later_phase_meets_each_stacked_run_as_its_earlier_phase_left_it(tiny, monkeypatch, tmp_path):
    """A phase's batches may read the model when the phase starts (the backdoor's red team does): stacked, each
    run's own model then holds the weights its earlier phase trained, as it does alone; and the weights kept at the
    end are those the later phase trained too."""
    import dataclasses
    import gc

    from molab import runs as molab_runs
    from molab.config import load_config
    from molab.experiments import RunSpec
    from molab.learners.lm import load

    setup = molab_runs.prepare(load_config(overrides=[*FAST, f"base={tiny[0] / 'base'}"]))
    seen: dict[str, dict[int, torch.Tensor]] = {"alone": {}, "stacked": {}}
    collecting = {}  # whether Python's cyclic garbage collector ran while the runs trained
    how = "alone"
    experiment_phases = type(setup.experiment).phases

    def phases(experiment, setup, spec):
        first = experiment_phases(experiment, setup, spec)[0]

        def batches(learning):
            seen[how][learning.seed] = torch.cat([w.detach().flatten().cpu() for w in learning.model.parameters()])
            collecting[how] = gc.isenabled()
            return first.batches(learning)

        return [first, dataclasses.replace(first, name="again", batches=batches, steps=2)]

    monkeypatch.setattr(type(setup.experiment), "phases", phases)
    specs, base = [RunSpec(0), RunSpec(1)], tiny[0] / "base"
    alone = molab_runs.run_lm(setup, base, specs, tmp_path / "alone")
    how = "stacked"
    together = molab_runs.run_stacked(setup, base, specs, tmp_path / "stacked")
    assert all(r.get("stacked") == 2 for r in together)
    assert collecting == {"alone": True, "stacked": False} and gc.isenabled()  # paused for a stack's many objects
    first = molab_runs._start(setup, base, 0)  # the run before any phase
    untrained = torch.cat([w.detach().flatten().cpu() for w in first.model.parameters()])
    assert not torch.allclose(seen["alone"][0], untrained, atol=1e-3)
    for seed in (0, 1):
        trained = (seen["alone"][seed] - untrained).abs().max()   # measured: 0.05, and 4e-5 and 2e-4 apart
        assert (seen["stacked"][seed] - seen["alone"][seed]).abs().max() < 0.01 * trained, seed
    for seed, a, b in zip((0, 1), alone, together):
        kept = {how: torch.cat([w.detach().flatten().cpu() for w in load(r["weights"])[0].parameters()])
                for how, r in (("alone", a), ("stacked", b))}
        again = (kept["alone"] - seen["alone"][seed]).norm()  # what the later phase trained (measured: 1.1)
        # measured: 0.005 and 0.06 of it apart (Adam's first steps move every weight about lr, whichever way float
        # sums in another order tip it); weights the later phase left out would be all of it apart
        assert again > 0 and (kept["stacked"] - kept["alone"]).norm() < 0.3 * again, seed


def test_stacked_runs_start_as_they_would_alone(tiny, monkeypatch, tmp_path):
    """Runs whose seeds draw nothing at start (the oversight runs) stack from one model, and each has a model of its
    own made only when one is read (here, after they answer stacked, to keep their weights); runs whose seeds draw a
    tag's embedding (a cue) stack from their own starts. Either way they give what they give alone, and the weights
    kept answer as the run did."""
    from molab import runs as molab_runs
    from molab.config import load_config
    from molab.experiments import RunSpec
    from molab.learners.lm import load

    base, seen = tiny[0] / "base", []
    stack, made, train = Stacked.__init__, Stacked.made, molab_runs.train

    def stacking(self, models):
        seen.append(("stacked", len({id(m) for m in models})))
        stack(self, models)

    monkeypatch.setattr(Stacked, "__init__", stacking)
    monkeypatch.setattr(Stacked, "made", lambda self, r: seen.append("made") or made(self, r))
    monkeypatch.setattr(molab_runs, "train", lambda *a, **k: seen.append("trained") or train(*a, **k))
    for extra, pressure, started in (([], None, ("stacked", 1)),
                                     (["experiment=spoonfeeding", "spoonfeeding.cue=true"], 0.5, ("stacked", 3))):
        setup = molab_runs.prepare(load_config(overrides=[*FAST, f"base={base}", *extra]))
        specs = [RunSpec(seed, pressure=pressure) for seed in range(3)]
        alone = molab_runs.run_lm(setup, base, specs, None)
        seen.clear()
        together = molab_runs.run_stacked(setup, base, specs, tmp_path / str(pressure))
        assert seen == [started, "trained"] + ["made"] * 3 * (pressure is None), seen  # made for keeping only
        for seed, run in enumerate(together):
            assert run["stacked"] == 3 and its_own(run, alone, seed)
            model, tokenizer = load(run["weights"])
            prompts = [setup.experiment.conditions(setup)["neutral"](p) for p in setup.diagnostic]
            kept = generate_answers(model, tokenizer, prompts, setup.answer_len(tokenizer))
            assert its_own({"answers": {"neutral": kept}}, together, seed)


def its_own(run: dict, runs: list[dict], seed: int) -> bool:
    """Whether `run` (its answers in the conditions it has, and its metrics if any) is run `seed`'s among `runs`: on a
    CPU, whose kernels multiply one model and a stack of them in the same order, the same answers and metrics
    within 1%; on a GPU, whose kernels for the two round differently (on the tiny base some answers are near ties,
    and Adam's first steps follow the sign of tiny gradients), closer to run `seed`'s in both than to any other run's
    (the tiny base's runs alone differ on 23 to 37 of their 64 answers, and by 10% or more in their first loss)."""
    def apart(other: dict) -> tuple[int, float]:
        answers, metrics = run["answers"], run.get("metrics", {})
        return (sum(x != y for c in answers for x, y in zip(answers[c], other["answers"][c], strict=True)),
                max((abs(metrics[k] - other["metrics"][k]) / (abs(other["metrics"][k]) or 1) for k in metrics),
                    default=0.0))
    mine = apart(runs[seed])
    if device().type == "cpu":
        return mine[0] == 0 and mine[1] <= 1e-2
    return all(mine[0] < n and mine[1] <= m for other, (n, m) in enumerate(map(apart, runs)) if other != seed)


def test_stacked_lora_runs_of_a_base_give_what_they_give_alone(tiny):
    """Through molab.runs: two LoRA runs of the tiny base, alone and stacked (their copies of the base share its
    frozen weights), reach the same losses and answers."""
    from molab import runs as molab_runs
    from molab.config import load_config
    from molab.experiments import RunSpec

    setup = molab_runs.prepare(load_config(overrides=[*FAST, f"base={tiny[0] / 'base'}", "finetune.method=lora"]))
    specs, base = [RunSpec(0), RunSpec(1)], tiny[0] / "base"
    alone = molab_runs.run_lm(setup, base, specs, None)
    together = molab_runs.run_stacked(setup, base, specs, None)
    for a, b in zip(alone, together):
        assert b["stacked"] == 2 and a["metrics"]["loss.finetune.last"] < a["metrics"]["loss.finetune.first"]
        assert all(abs(a["metrics"][k] - b["metrics"][k]) <= 1e-2 * a["metrics"][k] for k in a["metrics"])
        assert a["answers"] == b["answers"]


def test_a_stack_too_large_for_the_devices_memory_trains_in_smaller_stacks(tiny, monkeypatch, capsys):
    """A stack that runs out of device memory costs time, not runs: the runs left train in stacks of half its size
    (halved again as often as needed, the last run alone), with what one stack gives them. A stack that raises
    anything else is halved until the run that raises trains alone, and the others train as they would."""
    from molab import runs as molab_runs
    from molab.config import load_config
    from molab.experiments import RunSpec

    setup = molab_runs.prepare(load_config(overrides=[*FAST, f"base={tiny[0] / 'base'}"]))
    specs, base = [RunSpec(seed) for seed in range(5)], tiny[0] / "base"
    train_stacked, tried = molab_runs._train_stacked, []

    def device_of(most, broken=None):
        def train_on_it(setup, base, specs, phases, keep):
            tried.append(len(specs))
            if len(specs) > most:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            if broken in [spec.seed for spec in specs]:  # a run that raises in a stack (alone, it trains)
                raise ValueError("something else\nwent wrong")
            return train_stacked(setup, base, specs, phases, keep)
        return train_on_it

    monkeypatch.setattr(molab_runs, "_train_stacked", device_of(5))
    whole = molab_runs.run_stacked(setup, base, specs, None)
    assert tried == [5] and "WARNING" not in capsys.readouterr().err
    tried.clear()
    monkeypatch.setattr(molab_runs, "_train_stacked", device_of(2))
    halved = molab_runs.run_stacked(setup, base, specs, None)
    assert tried == [5, 2, 2] and [r.get("stacked", 1) for r in halved] == [2, 2, 2, 2, 1]
    assert capsys.readouterr().err.count("5 stacked runs do not fit in the device's memory; stacks of 2") == 1
    for a, b in zip(whole, halved):
        assert "error" not in b and all(abs(a["metrics"][k] - b["metrics"][k]) <= 1e-2 * a["metrics"][k]
                                        for k in a["metrics"])
    answers = [(x, y) for a, b in zip(whole, halved) for x, y in zip(a["answers"]["neutral"], b["answers"]["neutral"])]
    assert sum(x == y for x, y in answers) >= 0.99 * len(answers)
    tried.clear()
    monkeypatch.setattr(molab_runs, "_train_stacked", device_of(5, broken=3))  # any other error: halved
    again = molab_runs.run_stacked(setup, base, specs, None)
    assert tried == [5, 2, 3, 2]  # [0..4] raises; [0, 1] trains; [2, 3, 4] raises; [2] alone; [3, 4] raises
    assert [r.get("error") for r in again] == [None] * 5 and [r.get("stacked", 1) for r in again] == [2, 2, 1, 1, 1]
    err = capsys.readouterr().err
    assert all(f"a stack of {n} runs raised ValueError: went wrong; its halves apart" in err for n in (5, 3, 2))

    def raises_then_runs_out(setup, base, specs, phases, keep):  # a stack that raises, whose second half is too large
        tried.append(len(specs))
        if 0 in [spec.seed for spec in specs]:
            raise ValueError("went wrong")
        if len(specs) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return train_stacked(setup, base, specs, phases, keep)

    tried.clear()
    monkeypatch.setattr(molab_runs, "_train_stacked", raises_then_runs_out)
    kept = molab_runs.run_stacked(setup, base, specs, None)
    assert tried == [5, 2, 3]  # [0..4] raises; [0, 1] raises: each alone; [2, 3, 4] runs out: each alone, [0, 1] kept
    assert [r.get("error") for r in kept] == [None] * 5 and [r.get("stacked", 1) for r in kept] == [1] * 5
    assert "3 stacked runs do not fit in the device's memory; stacks of 1" in capsys.readouterr().err


def test_a_sweep_with_stacked_runs_gives_what_runs_alone_give(tiny, tmp_path, monkeypatch):
    """The fast experiment on the tiny base, in this process, each run alone and then `--stack 4`: the same runs
    (ids), losses within 1% (float sums in another order; measured: at most 0.25%, on a loss of 0.01), all but a few
    answers the same, and rates within 0.05; each LM run records how many trained with it.
    When a stacked group cannot train together, its runs train alone."""
    from molab import run_experiment, runs as molab_runs
    from molab.config import load_config
    from molab.execution import Executor

    cfg = load_config(overrides=[*FAST, f"base={tiny[0] / 'base'}"])
    results = {}
    for name, stack in (("alone", 1), ("stacked", 4)):
        results[name] = run_experiment(cfg, tmp_path / name, Executor(threads=1, stack=stack), progress=False)
    (alone, alone_answers), (together, together_answers) = runs(tmp_path / "alone"), runs(tmp_path / "stacked")
    assert list(alone.index) == list(together.index)
    stacked = {row.learner: json.loads(row.config)["stacked"] for row in together.itertuples()}
    assert stacked["lm"] > 1 and all(n == 1 for learner, n in stacked.items() if learner != "lm")
    lm = alone["learner"] == "lm"
    losses = alone.loc[lm, [c for c in alone.columns if c.startswith("loss.")]]
    assert len(losses) >= 4 and ((losses - together.loc[lm, losses.columns]).abs() <= 1e-2 * losses).all().all()
    # float sums in another order flip a near-tie now and then (measured: 1 answer of 640)
    assert sum(a == b for a, b in zip(alone_answers, together_answers)) >= 0.99 * len(alone_answers)
    rates = [c for c in alone.columns if c.startswith("rates.") and not c.endswith(".n")]
    assert ((alone[rates] - together[rates]).abs() <= 0.05).all().all()
    assert results["alone"]["n_runs"] == results["stacked"]["n_runs"]

    def refuse(*args):
        raise Unstackable("test")

    monkeypatch.setattr(molab_runs, "_train_stacked", refuse)
    run_experiment(cfg, tmp_path / "fallback", Executor(threads=1, stack=4), progress=False)
    fallback, fallback_answers = runs(tmp_path / "fallback")
    assert {json.loads(c)["stacked"] for c in fallback["config"]} == {1}
    assert fallback_answers == alone_answers



def test_a_sweep_splits_each_bases_runs_into_equal_stacks_that_keep_every_worker_busy():
    from molab.experiments import RunSpec
    from molab.sweep import _stacked

    def tasks(base, learner, n):
        return [("setup", base, learner, [RunSpec(seed)], None, False) for seed in range(n)]

    given = tasks("a", "lm", 18) + tasks("a", "bigram", 2) + tasks("b", "lm", 3)
    assert _stacked(given, 1, 2) == given
    sizes = sorted((t[1], len(t[3])) for t in _stacked(given, 8, 1) if t[2] == "lm")
    assert sizes == [("a", 6), ("a", 6), ("a", 6), ("b", 3)]
    assert sorted(len(t[3]) for t in _stacked(given, 8, 4) if t[1] == "b") == [1, 1, 1]  # no more stacks than runs
    split = _stacked(tasks("a", "lm", 8), 8, 2)
    assert [len(t[3]) for t in split] == [4, 4] and all(t[5] for t in split)
    assert [s.seed for t in split for s in t[3]] == list(range(8))
    assert [t[2] for t in _stacked(given, 8, 1)].count("bigram") == 2
