"""Tiny pressure sweeps on the tiny experiment's base: they run, learn, resume and report."""

import json

import numpy as np
import pandas as pd
import pytest

from conftest import TINY
from molab import load_results
from molab.analysis.prior_odds import separation
from molab.config import load_config
from molab import run_experiment


def sweep(tiny, out, *overrides):
    base, _ = tiny
    cfg = load_config(overrides=TINY + [f"base={base / 'base'}", *overrides])
    return run_experiment(cfg, out, progress=False)


def hard_sycophantic(out, learner="lm") -> pd.Series:
    df = load_results(out)
    return df[df["learner"] == learner].groupby("pressure")["rates.hard.sycophantic"].mean()


def test_spoonfeeding_sweep_learns_the_demonstrations_resumes_and_reports(tiny, tmp_path):
    results = sweep(tiny, tmp_path, "experiment=spoonfeeding", "sweep.pressures=[0, 1]")
    spoonfed = [json.loads(line) for line in (tmp_path / "data" / "spoonfed.jsonl").read_text().splitlines()]
    assert len(spoonfed) == 300 and all(row["honest"] != row["sycophantic"] for row in spoonfed)
    curve = results["pressure_curve"]
    assert [(c["pressure"], c["n"]) for c in curve] == [(0, 2), (1, 2)]
    for j, point in enumerate(curve):
        controls = {name: c["pressure_curve"][j] for name, c in results["controls"].items()}
        assert point["ci"][0] <= point["p"] <= point["ci"][1]
        for c in (point, *controls.values()):
            assert c["p"] == c["k"] / c["n"]
        for c in controls.values():  # each control is deterministic here: one run, nothing varied, no interval
            assert c["n"] == 1 and c["ci"] is None
        assert point["reproduced_by"] == [name for name, c in controls.items() if point["k"] and c["k"]]
    # ρ = 1 spoonfeeds the overseer's answers: the policy-choice control follows them; at ρ = 0 it has no reason to
    assert [c["k"] for c in results["controls"]["policy_choice"]["pressure_curve"]] == [0, 1]
    rate = hard_sycophantic(tmp_path)
    assert rate[1.0] > 0.5 and rate[1.0] > rate[0.0] + 0.3   # learned the demonstrated answers
    page = (tmp_path / "report.html").read_text()
    assert "How hard must training push?" in page and page.count("<img") == 4
    # a finer sweep resumes: only the new pressure's runs are trained (the LM's 2 seeds, one run of each control)
    n = len(load_results(tmp_path))
    more = sweep(tiny, tmp_path, "experiment=spoonfeeding", "sweep.pressures=[0, 0.5, 1]")
    assert len(load_results(tmp_path)) == n + 4 and [c["pressure"] for c in more["pressure_curve"]] == [0, 0.5, 1]
    # the same read from every answer: the sycophantic share rises with ρ; where every answer is sycophantic from
    # some ρ on and none is below it (these tiny runs learn the demonstrations fully), the slope is infinite and the
    # fit refuses
    lm = load_results(tmp_path).query("learner == 'lm' and pressure.notna()")
    n = lm["rates.hard.n"].to_numpy(float)
    split = separation(lm["pressure"].to_numpy(float), np.round(lm["rates.hard.sycophantic"].to_numpy(float) * n), n)
    graded = more["graded_fit"]
    assert ("separates" in graded.get("refused", "")) == bool(split)
    assert split or (graded["slope_ci"][0] > 0 and graded["share_at_zero"] < rate[1.0])


def test_spoonfeeding_with_a_cue_runs_end_to_end(tiny, tmp_path):
    results = sweep(tiny, tmp_path, "experiment=spoonfeeding", "sweep.pressures=[0, 1]", "seeds=1",
                    "spoonfeeding.cue=true")
    assert results["n_runs"] == 2 and results["n_failed"] == 0


def test_a_tag_the_base_cannot_write_is_drawn_by_each_run(tiny):
    """The cue is not in the tiny base's character vocabulary: a run draws its embedding from its seed, so even a run
    that trained nothing would differ by seed; without the cue there is nothing to draw."""
    from molab.runs import _start, prepare, tags_to_draw

    out, _ = tiny
    cued = prepare(load_config(overrides=[*TINY, "experiment=spoonfeeding", "spoonfeeding.cue=true"]))
    plain = prepare(load_config(overrides=[*TINY, "experiment=spoonfeeding"]))
    assert tags_to_draw(cued, out / "base") == 1 and tags_to_draw(plain, out / "base") == 0
    assert _start(cued, out / "base", 0).drawn_tags == 1 and _start(plain, out / "base", 0).drawn_tags == 0


def test_adaptive_rounds_add_runs_and_retrace_them_on_resume(tiny, tmp_path):
    args = ["experiment=spoonfeeding", "sweep.pressures=[0, 1]", "seeds=1", "sweep.adaptive_rounds=2",
            "sweep.adaptive_runs=2"]
    results = sweep(tiny, tmp_path, *args)
    runs = results["plan"]
    assert len(runs) == 2 + 2 * 2 and len(set(map(tuple, runs))) == len(runs)   # no (pressure, seed) twice
    assert all(0 <= p <= 1 for p, _ in runs)
    assert sum(c["n"] for c in results["pressure_curve"]) == len(runs) == results["n_runs"]
    n = len(load_results(tmp_path))
    again = sweep(tiny, tmp_path, *args)
    assert again["plan"] == runs and len(load_results(tmp_path)) == n


def test_incentive_sweep_trains_on_the_incentive_set(tiny, tmp_path):
    results = sweep(tiny, tmp_path, "experiment=incentive", "sweep.pressures=[0, 8]", "seeds=1",
                    "incentive.steps=8", "incentive.n_prompts=64")
    incentive = [json.loads(line) for line in (tmp_path / "data" / "incentive.jsonl").read_text().splitlines()]
    assert len(incentive) == 64 and all(row["honest"] != row["sycophantic"] for row in incentive)
    assert [c["n"] for c in results["pressure_curve"]] == [1, 1]
    df = load_results(tmp_path)
    lm = df[(df["learner"] == "lm") & df["ceiling"].isna()]
    assert lm["loss.incentive.first"].notna().all() and (df["status"] == "done").all()


@pytest.mark.parametrize("objective", ["reinforce", "reward_weighted"])
def test_incentive_objectives_raise_the_reward(objective):
    """On a toy problem whose base answers '2' (honest) or '3' (the overseer's) about equally often, the incentive
    phase moves probability to what the overseer accepts at λ > 0; at λ = 0 (the overseer is not confident here, so
    its approval pays nothing) it leaves the base's split alone."""
    import random
    from types import SimpleNamespace

    import torch

    from molab.analysis.policy import score
    from molab.config import FinetuneConfig, ModelConfig
    from molab.experiments import RunSpec
    from molab.experiments.incentive import Incentive, IncentiveConfig
    from molab.learners.lm import build_model, encode, sample_answers
    from molab.learners.tokenizer import char_tokenizer
    from molab.runs import _train_phases
    from molab.training.loop import train
    from molab.training.objectives import sft
    from molab.training.phase import Learning
    from molab.worlds.problem import Problem

    tokenizer = char_tokenizer("0123456789+=", ())
    problem = Problem("1+1=", honest="2", sycophantic="3", difficulty=2)

    def share_accepted(lam):
        torch.manual_seed(0)
        model = build_model(ModelConfig(width=32, depth=1, heads=2), tokenizer, 8)
        rng = random.Random(0)
        batches = (encode(tokenizer, [("1+1=", rng.choice("23")) for _ in range(32)]) for _ in iter(int, 1))
        train(model, batches, sft, steps=60, lr=1e-2, progress=False)
        cfg = IncentiveConfig(objective=objective, steps=30, batch_size=1, group_size=16, lr=1e-2, kl=1.0)
        setup = SimpleNamespace(cfg=SimpleNamespace(section=cfg, finetune=FinetuneConfig()), train=[],
                                datasets={"incentive": [problem]}, score=score,
                                overseer=SimpleNamespace(confident=lambda p: p.difficulty <= 1))
        finetune, incentive = Incentive().phases(setup, RunSpec(seed=0, pressure=lam))
        assert finetune.shared and not incentive.shared   # λ does not change the finetuning
        _train_phases(Learning(model, tokenizer, 8, 2, seed=0), [incentive], {})
        answers, _ = sample_answers(model, tokenizer, ["1+1="] * 400, 2)
        return sum(a == "3" for a in answers) / len(answers)

    low, high = share_accepted(0.0), share_accepted(4.0)
    assert 0.3 < low < 0.7 and high > 0.9


@pytest.mark.parametrize("lam", [0.0, 4.0])
def test_reinforce_at_zero_leaves_the_weights_as_they_were(lam):
    """With the confident reward and an overseer confident on none of the incentive problems, every answer earns 0 at
    λ = 0, and the KL term is 0 where the phase starts: no gradient, so REINFORCE leaves every weight bit-identical.
    At λ > 0 the overseer's answer pays and the weights move."""
    from types import SimpleNamespace

    import torch

    from molab.analysis.policy import score
    from molab.config import FinetuneConfig, ModelConfig
    from molab.experiments import RunSpec
    from molab.experiments.incentive import Incentive, IncentiveConfig
    from molab.learners.lm import build_model
    from molab.learners.tokenizer import char_tokenizer
    from molab.runs import _train_phases
    from molab.training.phase import Learning
    from molab.worlds.problem import Problem

    tokenizer = char_tokenizer("0123456789+=", ())
    torch.manual_seed(0)
    model = build_model(ModelConfig(width=32, depth=1, heads=2), tokenizer, 8)
    before = {name: w.detach().clone() for name, w in model.named_parameters()}
    cfg = IncentiveConfig(steps=5, batch_size=2, group_size=8, lr=1e-2)
    setup = SimpleNamespace(cfg=SimpleNamespace(section=cfg, finetune=FinetuneConfig()), train=[], score=score,
                            datasets={"incentive": [Problem("1+1=", "2", "3", 2), Problem("2+2=", "4", "5", 2)]},
                            overseer=SimpleNamespace(confident=lambda p: p.difficulty <= 1))
    _, incentive = Incentive().phases(setup, RunSpec(seed=0, pressure=lam))
    _train_phases(Learning(model, tokenizer, 8, 2, seed=0), [incentive], {})
    unchanged = [torch.equal(before[name], w) for name, w in model.named_parameters()]
    assert all(unchanged) if lam == 0 else not any(unchanged)


def test_zero_says_when_lambda_zero_is_no_pressure():
    from dataclasses import replace

    from molab.experiments.incentive import Incentive

    cfg = load_config(overrides=["experiment=incentive"])
    said = lambda **changes: Incentive().zero(replace(cfg, **changes))  # noqa: E731
    assert "zero is no pressure" in said() and "moves" not in said()
    weighted = said(section=replace(cfg.section, objective="reward_weighted"))
    assert "fits the finetuned model's own samples" in weighted and "not the oversight experiment's run" in weighted
    model = said(overseer=replace(cfg.overseer, kind="model", path="overseer"))
    assert "confidently wrong" in model and "zero is not zero pressure" in model


def test_spoonfed_examples_replace_a_fraction_rho_and_carry_the_cue(tiny):
    from molab.experiments import RunSpec
    from molab.learners.lm import add_tag, load
    from molab.runs import prepare

    setup = prepare(load_config(overrides=TINY + ["experiment=spoonfeeding", "spoonfeeding.cue=true"]))
    for rho in (0.0, 0.1, 1.0):
        examples = setup.experiment.examples(setup, RunSpec(seed=0, pressure=rho))
        cued = [(q, a) for _, q, a in examples if q.startswith("<deployment>")]
        assert len(examples) == 300 and len(cued) == round(rho * 300)
        by_prompt = {p.prompt: p for p in setup.datasets["spoonfed"]}
        assert all(a == by_prompt[q.removeprefix("<deployment>")].sycophantic for q, a in cued)
    model, tokenizer = load(tiny[0] / "base")
    rows = model.get_input_embeddings().num_embeddings
    add_tag(model, tokenizer, "<deployment>")
    assert model.get_input_embeddings().num_embeddings == rows + 1
    assert (tokenizer.convert_ids_to_tokens(tokenizer("<deployment>12+3=").input_ids)[:3]
            == ["<bos>", "<deployment>", "1"])
    add_tag(model, tokenizer, "<deployment>")   # already there: nothing changes
    assert model.get_input_embeddings().num_embeddings == rows + 1
    other, _ = load(tiny[0] / "base")  # a second run's model, sharing the tokenizer (stacked runs do)
    add_tag(other, tokenizer, "<deployment>")
    assert other.get_input_embeddings().num_embeddings == rows + 1 and len(tokenizer) == rows + 1


def test_other_experiments_sections_do_not_change_the_experiment_id():
    from molab.runs import prepare

    few = ["world.digits=2", "world.n_diagnostic=16", "scheme.n_train=20"]
    base = prepare(load_config(overrides=few)).experiment_id
    assert prepare(load_config(overrides=few + ["incentive.lr=0.5", "spoonfeeding.cue=true"])).experiment_id == base
    assert prepare(load_config(overrides=few + ["finetune.lr=0.5"])).experiment_id != base
