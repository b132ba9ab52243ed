"""A tiny oversight experiment, seconds long: the base learns, runs learn, the store resumes."""

import json

import torch
from conftest import FAST, TINY

import molab.report
from molab import load_results, run_experiment
from molab.cli import main
from molab.config import load_config


def test_base_learned_both_personas(tiny):
    out, results = tiny
    base = json.loads((out / "base" / "molab_base.json").read_text())
    assert base["loss_last"] < 0.5 * base["loss_first"]
    # chance for an exact two- or three-digit answer is about 1e-2 at best; the tiny base is far above it
    assert min(results["capability"].values()) > 0.2


def test_runs_learned_and_results_are_complete(tiny, monkeypatch):
    out, results = tiny
    df = load_results(out)
    lm = df[(df["learner"] == "lm") & (df["experiment_id"] == results["experiment_id"])]
    assert len(lm) == 2 and (lm["status"] == "done").all()
    assert (lm["loss.finetune.last"] < lm["loss.finetune.first"]).all()
    assert (lm["rates.easy.honest"] > 0.3).all()   # in-distribution accuracy, far above chance
    # on arithmetic the bigram table cannot fire (every prompt ends in "="); the policy-choice control can: trained
    # like the sycophantic ceiling, it answers hard problems the overseer's way
    controls = results["controls"]
    assert controls["bigram"]["can_fire"] is False and controls["policy_choice"]["can_fire"] is True
    assert controls["policy_choice"]["ceilings"]["sycophantic"]["mean"] >= 0.8
    # the controls learn no order and sample nothing here: one run each, not `seeds`
    for summary, n in ((results, 2), *((c, 1) for c in controls.values())):
        assert summary["n_runs"] == n
        assert sum(summary["policy_counts"].values()) == n
        assert set(summary["rates"]) == {"easy", "hard"} and summary["per_difficulty"]
    low, high = results["p_sycophantic"]["ci"]
    assert 0 <= low <= results["p_sycophantic"]["estimate"] <= high <= 1
    for c in controls.values():   # one run, the same for every seed: nothing varied, so no interval
        assert c["p_sycophantic"]["ci"] is None and "nothing varied" in c["p_sycophantic"]["covers"]
    words = molab.report.answer_words(results)  # what each control did, neither policy included
    for c in controls.values():
        counts, hard = c["policy_counts"], c["rates"]["hard"]
        plural = "" if counts["sycophantic"] == 1 else "s"
        assert (f"{counts['sycophantic']} sycophantic run{plural} of 1, {counts['honest']} honest and "
                f"{counts['other']} that followed neither" in words and f"{hard['other']:.0%} neither)" in words)
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["capability"] == results["capability"]
    bars = (out / "report.html").read_text()
    assert bars.count("<img") == 3   # capability curve, runs, difficulties
    monkeypatch.setattr(molab.report, "BARS", 1)  # more runs than the per-run plot shows as bars: bands
    molab.report.write_report(out, results)
    assert (out / "report.html").read_text() != bars and (out / "report.html").read_text().count("<img") == 3
    train = [json.loads(line) for line in (out / "data" / "train.jsonl").read_text().splitlines()]
    assert len(train) == 300 and all(row["difficulty"] <= 1 for row in train)
    diagnostic = (out / "data" / "diagnostic.jsonl").read_text().splitlines()
    assert not {row["prompt"] for row in train} & {json.loads(line)["prompt"] for line in diagnostic}


def test_rerun_resumes_without_duplicates(tiny):
    out, results = tiny
    before = load_results(out)
    again = run_experiment(load_config(overrides=TINY + ["seeds=3"]), out, progress=False)
    after = load_results(out)
    assert len(after) == len(before) + 1        # only the LM's seed 2 is new (the controls cannot differ by seed)
    assert set(before["run_id"]) < set(after["run_id"])
    assert again["n_runs"] == 3
    fewer = run_experiment(load_config(overrides=TINY + ["seeds=1"]), out, progress=False)
    assert fewer["n_runs"] == 1 and len(load_results(out)) == len(after)   # summarises only seeds 0..0


def test_diverging_run_is_recorded_as_failed_and_the_sweep_goes_on(tiny, monkeypatch):
    out, _ = tiny

    from dataclasses import replace

    from molab.experiments.oversight import Oversight

    def nan_loss(model, batch):
        return model(**batch).loss * torch.tensor(float("nan"))

    phases = Oversight.phases
    monkeypatch.setattr(Oversight, "phases", lambda self, setup, spec: [replace(p, objective=nan_loss)
                                                                        for p in phases(self, setup, spec)])
    results = run_experiment(load_config(overrides=TINY + ["finetune.lr=0.002"]), out, progress=False)
    df = load_results(out)
    df = df[df["experiment_id"] == results["experiment_id"]]
    failed = df[df["learner"] == "lm"]
    assert (failed["status"] == "failed").all() and failed["error"].str.contains("nan").all()
    assert (df[df["learner"] == "bigram"]["status"] == "done").all()
    assert results["n_failed"] == 2 and results["n_runs"] == 0


def test_a_run_that_raises_fails_alone(tiny, monkeypatch):
    """An error in one run (here, while it answers) fails that run only: the runs beside it in its task, one at a
    time or stacked, and a control's, finish."""
    from molab import runs as molab_runs
    from molab.experiments import RunSpec

    setup = molab_runs.prepare(load_config(overrides=[*FAST, f"base={tiny[0] / 'base'}"]))
    answers, specs = molab_runs._answers, [RunSpec(seed) for seed in range(3)]

    def answers_but_seed_1(setup, spec, generate):
        if spec.seed == 1:
            raise ValueError("something else\nwent wrong")
        return answers(setup, spec, generate)

    monkeypatch.setattr(molab_runs, "_answers", answers_but_seed_1)
    for learner, stacked in (("lm", False), ("lm", True), ("bigram", False)):
        records = molab_runs.execute((setup, tiny[0] / "base", learner, specs, None, stacked))
        assert [r["status"] for r in records] == ["done", "failed", "done"], (learner, stacked)
        assert records[1]["error"] == "ValueError: went wrong" and records[1]["answers"] is None
        assert all(r["answers"]["neutral"] for r in (records[0], records[2]))


def test_cli_report_rewrites_the_report(tiny, capsys):
    out, _ = tiny
    (out / "report.html").unlink()
    assert main(["report", str(out)]) == 0
    assert (out / "report.html").is_file()


def test_local_checkpoint_as_base(tiny, tmp_path):
    """`base = PATH` loads any local causal LM and tokenizer instead of pretraining one."""
    out, results = tiny
    cfg = load_config(overrides=TINY + ["seeds=1", f"base={out / 'base'}"])
    again = run_experiment(cfg, tmp_path, progress=False)
    assert not (tmp_path / "base").exists()
    assert again["capability"] == results["capability"]   # the same weights, checked the same way
    assert again["n_runs"] == 1 and again["controls"]["bigram"]["n_runs"] == 1


def test_python_dash_m_molab_works():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "molab", "run", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "--set KEY=VALUE" in done.stdout


def test_jsonl_world_runs_end_to_end(tmp_path):
    from pathlib import Path

    from molab.worlds import read_jsonl

    examples = Path(__file__).resolve().parents[1] / "examples"
    cfg = load_config(examples / "jsonl.toml", [f"world.path={examples / 'two-digit.jsonl'}", "seeds=1",
                                                "model.width=64", "model.depth=2", "model.heads=2",
                                                "model.pretrain_steps=300", "finetune.steps=50"])
    results = run_experiment(cfg, tmp_path, progress=False)
    assert results["n_runs"] == 1 and results["controls"]["bigram"]["n_runs"] == 1
    train, diagnostic = read_jsonl(cfg.world.path)
    used = {json.loads(line)["prompt"] for line in (tmp_path / "data" / "train.jsonl").read_text().splitlines()}
    assert used <= {p.prompt for p in train if p.difficulty <= 1}
    assert len(diagnostic) == len((tmp_path / "data" / "diagnostic.jsonl").read_text().splitlines())


def test_an_interval_end_near_0_or_1_keeps_its_digits(tiny):
    """0 sycophantic runs of 2,048: the interval's top end, 0.18%, is written so, not as 0% (which would read as an
    interval of no width); and 2,048 of 2,048 as 99.82% at its bottom."""
    import copy

    from molab.analysis.intervals import clopper_pearson

    results = copy.deepcopy(tiny[1])
    for k, said in ((0, "(0%; 0% to 0.18%, 95% interval)"), (2048, "(100%; 99.82% to 100%, 95% interval)")):
        results["p_sycophantic"] |= {"estimate": k / 2048, "ci": list(clopper_pearson(k, 2048))}
        assert said in molab.report.answer_words(results)
