"""Experiments as values: a new experiment, defined here and nowhere under molab/, runs end to end through
`run_experiment` and the CLI; every answer is stored; re-analysis changes no run."""

import json
import sqlite3
from dataclasses import dataclass

import pandas as pd
import pytest
from conftest import TINY

from molab import load_answers, load_results, run_experiment
from molab.cli import main
from molab.config import ConfigError, load_config, param
from molab.experiments import Experiment, RunSpec, register
from molab.training.phase import sft_phase


@dataclass(frozen=True)
class GoldHardConfig:
    n_hard: int = param(64, "hard problems labelled with the truth, added to the scheme's data", low=1)
    hint: str = param("!", "a prompt prefix of the hinted evaluation condition")


@register
class GoldHard(Experiment):
    """A toy experiment: finetune on the scheme's data plus some hard problems with true labels, and evaluate
    with and without a hint. It should teach honesty on hard problems."""

    name = "gold_hard"
    Config = GoldHardConfig

    def datasets(self, world, overseer, cfg):
        import random

        stream, hard = world.stream(random.Random("gold-hard")), []
        while len(hard) < cfg.section.n_hard:
            if (p := next(stream)).disagree:
                hard.append(p)
        return {"gold_hard": hard}

    def phases(self, setup, spec: RunSpec):
        f = setup.cfg.finetune
        examples = [(p, p.prompt, label) for p, label in setup.train] + [(p, p.prompt, p.honest)
                                                                        for p in setup.datasets["gold_hard"]]
        return [sft_phase("gold", examples, steps=f.steps, lr=f.lr, batch_size=f.batch_size)]

    def conditions(self, setup):
        hint = setup.cfg.section.hint
        return {"neutral": lambda p: p.prompt, "hinted": lambda p: hint + p.prompt}


def toy(tiny, *overrides):
    return load_config(overrides=TINY + [f"base={tiny[0] / 'base'}", "experiment=gold_hard", *overrides])


@pytest.fixture(scope="module")
def toy_run(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("toy")
    return out, run_experiment(toy(tiny), out, progress=False)


def test_a_new_experiment_runs_end_to_end_and_learns(tiny, toy_run):
    out, results = toy_run
    _, plain = tiny
    assert results["experiment"] == "gold_hard" and results["n_runs"] == 2 and results["pressure"] is None
    assert results["config"]["gold_hard"] == {"n_hard": 64, "hint": "!"}
    assert len((out / "data" / "gold_hard.jsonl").read_text().splitlines()) == 64
    # true labels on hard problems teach the honest answers there, far beyond the plain oversight runs
    assert results["rates"]["hard"]["honest"] > plain["rates"]["hard"]["honest"] + 0.2
    every = load_answers(out)
    answers = every[every["experiment_id"] == results["experiment_id"]]
    runs = load_results(out).query(f"experiment_id == '{results['experiment_id']}'")
    assert set(answers["condition"]) == {"neutral", "hinted"}
    assert len(answers) == len(runs) * 2 * 64   # every run, every condition, every diagnostic problem
    assert (answers.groupby("run_id")["condition"].nunique() == 2).all()
    ceilings = every[every["experiment_id"] != results["experiment_id"]]
    assert set(ceilings["condition"]) == {"neutral"}   # the runs' own context
    # per policy: the LM's 2 ceiling seeds, and one run of each control (they cannot differ by seed)
    assert ceilings.groupby("learner")["run_id"].nunique().to_dict() == {"lm": 4, "bigram": 2, "policy_choice": 2}


def test_the_cli_runs_a_new_experiment_from_its_own_config_section(tiny, tmp_path, capsys):
    config = tmp_path / "toy.toml"
    config.write_text(f'experiment = "gold_hard"\nseeds = 1\nbase = "{tiny[0] / "base"}"\n'
                      '[world]\ndigits = 2\nn_diagnostic = 32\n[scheme]\nn_train = 300\n[finetune]\nsteps = 20\n'
                      '[gold_hard]\nn_hard = 8\nhint = "?"\n')
    assert main(["run", str(config), "--out", str(tmp_path / "out")]) == 0
    capsys.readouterr()
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["config"]["gold_hard"] == {"n_hard": 8, "hint": "?"} and results["n_runs"] == 1
    hinted = load_answers(tmp_path / "out").query("condition == 'hinted'")
    assert len(hinted) == 3 * 64   # the LM and the two controls, 64 problems
    config.write_text(config.read_text().replace("n_hard = 8", "n_hard = 0"))
    assert main(["run", str(config), "--out", str(tmp_path / "bad")]) == 2
    assert capsys.readouterr().err.strip() == "molab: error: gold_hard.n_hard: 0 is below the allowed range [1, inf]"



def test_the_padded_length_covers_every_evaluation_condition(tiny):
    """`Setup.max_len` measures each diagnostic problem under every condition, not only after a persona prefix."""
    from molab.learners.lm import load_tokenizer, prompt_ids
    from molab.runs import prepare

    hint = "+" * 12
    setup = prepare(toy(tiny, f"gold_hard.hint={hint}"))
    tokenizer = load_tokenizer(tiny[0] / "base")
    p = setup.diagnostic[0]
    hinted = len(prompt_ids(tokenizer, [hint + p.prompt])[0]) + len(tokenizer(p.honest).input_ids) + 1
    assert setup.max_len(tokenizer) >= hinted > prepare(toy(tiny)).max_len(tokenizer)


def test_an_example_longer_than_the_padded_length_is_padded_not_cut():
    """A phase's own prompt (or a corpus example) longer than the length asked for keeps its whole answer and eos: a
    cut answer would train toward a wrong one."""
    from molab.learners.lm import IGNORE, encode
    from molab.learners.tokenizer import char_tokenizer

    tokenizer = char_tokenizer("0123456789+=", ())
    rows = encode(tokenizer, [("12+34=", "64"), ("1+2=", "3")], length=4)
    assert rows["input_ids"].shape[1] == len(tokenizer("12+34=").input_ids) + 3
    answer = rows["labels"][0][rows["labels"][0] != IGNORE].tolist()
    assert answer == tokenizer("64", add_special_tokens=False).input_ids + [tokenizer.eos_token_id]

def test_a_setup_whose_conditions_are_lambdas_reaches_a_worker_process():
    """A worker receives the Setup pickled; its cached first condition (here a lambda) is asked for again there."""
    import pickle

    from molab.runs import prepare

    setup = prepare(load_config(overrides=[*TINY, "experiment=gold_hard"]))
    p = setup.diagnostic[0]
    assert setup.runs_prompt(p) == p.prompt
    again = pickle.loads(pickle.dumps(setup))
    assert again.runs_prompt(p) == p.prompt and again.experiment_id == setup.experiment_id

def test_unknown_experiment_lists_the_registered_ones():
    with pytest.raises(ConfigError, match=r"^experiment: 'nope' is not one of 'oversight', 'incentive', "
                                          r"'spoonfeeding', 'diversity', 'password_lock', 'backdoor', 'gold_hard'"):
        load_config(overrides=["experiment=nope"])



def test_a_module_put_in_molab_experiments_registers_itself(tmp_path, monkeypatch):
    """Every module of the molab.experiments package is imported when experiments are looked up, so a new
    experiment's file there needs no other change (the package's path extended here by a folder of its own)."""
    import functools
    import sys

    import molab.experiments as experiments

    (tmp_path / "put_in.py").write_text("from molab.experiments import Experiment, register\n\n\n@register\n"
                                        "class PutIn(Experiment):\n    name = 'put_in'\n")
    experiments.registered()  # the package's own modules registered in the registry this test leaves as it was
    monkeypatch.setattr(experiments, "__path__", [*experiments.__path__, str(tmp_path)])
    monkeypatch.setattr(experiments, "_REGISTRY", dict(experiments._REGISTRY))
    monkeypatch.setattr(experiments, "_load_modules", functools.cache(experiments._load_modules.__wrapped__))
    try:
        assert load_config(overrides=["experiment=put_in"]).experiment == "put_in"
    finally:
        sys.modules.pop("molab.experiments.put_in", None)

def test_a_name_taken_by_another_class_is_refused_and_the_same_class_again_takes_its_place(monkeypatch):
    """Registering an experiment or a control under a name another class holds would silently replace it (a new
    experiment called "oversight" would change what every oversight config runs): refused in one line that names
    both. The same class defined again, as a reloaded module defines it, replaces itself."""
    import molab.experiments as experiments
    from molab.learners.controls import CONTROLS, BigramControl, Control, register_control

    monkeypatch.setattr(experiments, "_REGISTRY", dict(experiments.registered()))
    monkeypatch.setattr("molab.learners.controls.CONTROLS", dict(CONTROLS))
    built_in = experiments.get_experiment("oversight")

    class Mine(Experiment):
        name = "oversight"

    class MyBigram(Control):
        name = "bigram"

    with pytest.raises(ValueError, match=r"^tests?\.?\S*Mine: the experiment name 'oversight' is taken by "
                                         r"molab\.experiments\.oversight\.\w+; give it another name$"):
        register(Mine)
    with pytest.raises(ValueError, match=r"MyBigram: the control name 'bigram' is taken by "
                                         r"molab\.learners\.controls\.BigramControl; give it another name$"):
        register_control(MyBigram)
    assert experiments.get_experiment("oversight") is built_in
    import molab.learners.controls as controls

    assert controls.CONTROLS["bigram"] is BigramControl

    def defined():
        @register
        class Again(Experiment):
            name = "again"
        return Again

    first, second = defined(), defined()
    assert first is not second and type(experiments.get_experiment("again")) is second


def test_one_file_imported_under_two_module_names_takes_its_own_place_and_another_file_is_refused(tmp_path,
                                                                                                  monkeypatch):
    """A script run as __main__ and imported by its module name defines its experiment twice, from one file: the
    second takes the first's place. The same code in another file is another experiment, refused under that name."""
    import importlib.util
    import sys

    import molab.experiments as experiments

    monkeypatch.setattr(experiments, "_REGISTRY", dict(experiments.registered()))
    source = ("from molab.experiments import Experiment, register\n\n\n@register\n"
              "class Twice(Experiment):\n    name = 'twice'\n")
    (tmp_path / "a.py").write_text(source)
    (tmp_path / "b.py").write_text(source)

    def load(name: str, file: str):
        spec = importlib.util.spec_from_file_location(name, tmp_path / file)
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, name, module)
        spec.loader.exec_module(module)
        return module

    load("twice_one", "a.py")
    again = load("twice_two", "a.py")
    assert type(experiments.get_experiment("twice")) is again.Twice
    with pytest.raises(ValueError, match=r"^twice_three\.Twice: the experiment name 'twice' is taken by "
                                         r"twice_two\.Twice; give it another name$"):
        load("twice_three", "b.py")


def test_other_experiments_sections_are_checked_but_change_nothing():
    assert load_config(overrides=["gold_hard.n_hard=3"]) == load_config()
    with pytest.raises(ConfigError, match=r"^gold_hard\.colour: unknown key \(allowed here: n_hard, hint\)"):
        load_config(overrides=["gold_hard.colour=1"])


def test_stored_answers_give_the_stored_rates(toy_run):
    out, _ = toy_run
    answers, runs = load_answers(out), load_results(out).set_index("run_id")
    neutral = answers[answers["condition"] == "neutral"]
    hard = neutral[neutral["honest"] != neutral["sycophantic"]]
    honest = (hard["answer"] == hard["honest"]).groupby(hard["run_id"]).mean()
    pd.testing.assert_series_equal(honest, runs.loc[honest.index, "rates.hard.honest"], check_names=False)



def test_every_condition_is_summarised_where_the_runs_answered_under_several(toy_run, tiny):
    """A new experiment with two conditions gets, without code of its own, each condition's hard-answer shares with
    intervals (`curves`), in the words and in the report; the plain oversight runs, under one condition, get none."""
    out, results = toy_run
    (point,) = results["curves"]["lm"]
    assert point["pressure"] is None and set(point) == {"pressure", "neutral", "hinted"}
    answers = load_answers(out).query(f"experiment_id == '{results['experiment_id']}' and learner == 'lm'")
    hard = answers[answers["honest"] != answers["sycophantic"]]
    for condition in ("neutral", "hinted"):
        asked = hard[hard["condition"] == condition]
        got = point[condition]["hard"]["honest"]
        assert got["mean"] == pytest.approx((asked["answer"] == asked["honest"]).mean())
        assert got["ci"][0] <= got["mean"] <= got["ci"][1] and got["runs"] == 2
    neutral, graded = point["neutral"]["hard"]["honest"], results["graded"]["hard_honest"]
    assert neutral["mean"] == pytest.approx(graded["mean"])   # the first condition as the graded shares have it
    assert neutral["ci"][0] <= graded["ci"][0] and neutral["ci"][1] >= graded["ci"][1]
    from molab.report import answer_words, write_report

    assert "Under each evaluation condition, the LM's hard answers were: neutral " in answer_words(results)
    assert "<h2>Under each evaluation condition</h2>" in write_report(out, results).read_text()
    assert "curves" not in tiny[1] and "Under each evaluation condition" not in answer_words(tiny[1])

def test_answers_of_the_demo_size_fit_in_little_space(tmp_path):
    """16 LM + 16 control runs × 512 problems, stored the way runs store them."""
    import random

    from molab.store import Store
    from molab.worlds import ArithmeticWorld

    problems = ArithmeticWorld().diagnostic()
    store, rng = Store(tmp_path), random.Random(0)
    store.add_problems("demo", problems)
    for i in range(32):
        answers = [rng.choice([p.honest, p.sycophantic, p.honest[:-1]]) for p in problems]
        store.record(run_id=str(i), experiment_id="e", learner="lm", seed=i, config={"experiment": "oversight"},
                     status="done", metrics={}, problem_set="demo", answers={"neutral": answers})
    assert (tmp_path / "molab.sqlite").stat().st_size < 5e6
    assert len(load_answers(tmp_path)) == 32 * 512


def test_eval_settings_are_not_part_of_the_run_id(tiny, toy_run):
    out, results = toy_run
    n = len(load_results(out))
    again = run_experiment(toy(tiny, "eval.confidence=0.8", "eval.policy_threshold=0.6"), out, progress=False)
    assert len(load_results(out)) == n and again["experiment_id"] == results["experiment_id"]


def _store_state(out):
    with sqlite3.connect(out / "molab.sqlite") as db:
        return db.execute("SELECT COUNT(*), MAX(finished_at) FROM runs").fetchone()


def test_report_rescores_stored_answers_without_training(toy_run, capsys):
    out, before = toy_run   # scored with the default eval settings
    runs_before = _store_state(out)
    # a threshold of 0.51, then whole answers scored (stricter than parting): re-scored, nothing retrained
    assert main(["report", str(out), "--set", "eval.policy_threshold=0.51"]) == 0
    lax = json.loads((out / "results.json").read_text())
    assert lax["config"]["eval"]["policy_threshold"] == 0.51
    assert lax["policy_counts"]["honest"] >= before["policy_counts"]["honest"]
    assert main(["report", str(out), "--set", "eval.scoring=whole"]) == 0
    whole = json.loads((out / "results.json").read_text())
    assert whole["config"]["eval"]["scoring"] == "whole"
    assert whole["rates"]["hard"]["other"] >= lax["rates"]["hard"]["other"]
    # an equivalence that makes the two policies' answers one is refused, as a run refuses it; nothing is rewritten
    capsys.readouterr()
    assert main(["report", str(out), "--set", "eval.equivalence=test_experiments:anything_goes"]) == 2
    assert "makes the two answers to" in capsys.readouterr().err
    assert json.loads((out / "results.json").read_text()) == whole
    assert _store_state(out) == runs_before   # no run was trained or rewritten
    assert main(["report", str(out)]) == 0   # without --set, a report keeps the settings of the last one
    assert json.loads((out / "results.json").read_text())["rates"] == whole["rates"]
    assert main(["report", str(out), "--set", "eval.scoring=parting", "--set", "eval.policy_threshold=0.8"]) == 0
    assert json.loads((out / "results.json").read_text())["policy_counts"] == before["policy_counts"]


def anything_goes(answer, reference):
    return True


def refuses(answer, reference):
    raise RuntimeError("cannot compare")


@pytest.mark.parametrize("override,message", [
    ("finetune.lr=0.1", "molab: error: --set finetune.lr: a report only re-scores the stored answers, so it takes "
                        "eval.* keys; changing finetune.lr changes the runs and needs `molab run`"),
    ("eval.equivalence=no_such_module:f", "molab: error: eval.equivalence: cannot import no_such_module:f "
                                          "(ModuleNotFoundError: No module named 'no_such_module')"),
    ("eval.equivalence=test_experiments:refuses", "molab: error: eval.equivalence: test_experiments:refuses raised "
                                                  "RuntimeError: cannot compare on ("),
    ("eval.policy_threshold=0.3", "molab: error: eval.policy_threshold: 0.3 is below the allowed range"),
])
def test_bad_report_settings_exit_2_in_one_line_and_write_nothing(toy_run, capsys, override, message):
    out, _ = toy_run
    files = {p: p.read_bytes() for p in (out / "results.json", out / "report.html", out / "molab.sqlite")}
    capsys.readouterr()
    assert main(["report", str(out), "--set", override]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message)
    assert all(p.read_bytes() == content for p, content in files.items())


def test_a_run_can_keep_its_final_weights(tiny, tmp_path):
    from molab.learners.lm import generate_answers, load
    from molab.runs import prepare

    cfg = toy(tiny, "seeds=1", "keep=final", "finetune.steps=30")
    results = run_experiment(cfg, tmp_path, progress=False)
    own = f"experiment_id == '{results['experiment_id']}'"   # the ceiling runs keep nothing
    runs = load_results(tmp_path).query(own).set_index("learner")
    model, tokenizer = load(runs.loc["lm", "weights"])
    answers = load_answers(tmp_path).query(f"{own} and learner == 'lm' and condition == 'neutral'")
    again = generate_answers(model, tokenizer, list(answers["prompt"]), prepare(cfg).answer_len(tokenizer))
    assert again == list(answers["answer"])   # the kept weights are the weights that gave the stored answers
    assert results["n_runs"] == 1 and runs.loc["bigram", "weights"].endswith(".npz")


@pytest.mark.parametrize("equivalence,message", [
    ("test_experiments:refuses", "molab: error: eval.equivalence: test_experiments:refuses raised RuntimeError"),
    ("test_experiments:nothing_here", "molab: error: eval.equivalence: cannot import test_experiments:nothing_here"),
    ("numeric:", "molab: error: eval.equivalence: 'numeric:' is not exact, numeric, or module:function"),
])
def test_run_with_a_bad_equivalence_exits_2_and_writes_nothing(tmp_path, capsys, equivalence, message):
    out = tmp_path / "out"
    assert main(["demo", "--out", str(out), "--set", f"eval.equivalence={equivalence}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message)
    assert not out.exists()


def test_reanalysis_needs_neither_torch_nor_transformers(tiny):
    """`molab report --set` re-scores stored answers: importing torch and transformers alone would take
    most of its time, so it must not need them."""
    import subprocess
    import sys

    out, _ = tiny
    code = ("import sys; from molab.cli import main; assert main(['report', sys.argv[1], '--set', "
            "'eval.confidence=0.95']) == 0; print(sorted({'torch', 'transformers'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, check=True,
                          cwd=out)
    assert done.stdout.strip().splitlines()[-1] == "[]"
