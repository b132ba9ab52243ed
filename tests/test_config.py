from pathlib import Path

import pytest

from molab.cli import main
from molab.config import ConfigError, ExperimentConfig, keys_markdown, load_config

ROOT = Path(__file__).resolve().parents[1]


def test_default_is_the_demo_and_overrides_apply():
    assert load_config() == ExperimentConfig()
    cfg = load_config(overrides=["seeds=3", "scheme.labeler=gold", "scheme.difficulties=[0]", "finetune.lr=0.01"])
    assert (cfg.seeds, cfg.scheme.labeler, cfg.scheme.difficulties, cfg.finetune.lr) == (3, "gold", (0,), 0.01)


@pytest.mark.parametrize("override,message", [
    ("scheme.colour=1", r"^scheme\.colour: unknown key \(allowed here: difficulties, "),
    ("colour=1", r"^colour: unknown key"),
    ("seeds=many", r"^seeds: expected an integer, got 'many'"),
    ("seeds=0", r"^seeds: 0 is below the allowed range \[1, 100000\]"),
    ("eval.policy_threshold=2", r"^eval\.policy_threshold: 2\.0 is above the allowed range \[0\.51, 1\.0\]"),
    ("scheme.labeler=teacher", r"^scheme\.labeler: 'teacher' is not one of 'gold', 'overseer'"),
    ("scheme.confident_only=1", r"^scheme\.confident_only: expected true or false"),
    ("scheme.difficulties=[0, -1]", r"^scheme\.difficulties\[1\]: -1 is below"),
    ("world.operations=['*']", r"^world\.operations\[0\]: '\*' is not one of"),
    ("model.heads=3", r"^model\.heads: 3 does not divide model\.width 128"),
    ("world.kind=jsonl", r"^world\.path: a jsonl world needs a file"),
    ("scheme.digits=[4]", r"^scheme\.digits: 4 is above world\.digits 3"),
    ("world=3", r"^world: expected a \[world\] section"),
])
def test_bad_values_name_the_key_and_what_is_allowed(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[override])


@pytest.mark.parametrize("overrides,message", [
    (["experiment=incentive", "sweep.pressures=[4]"], r"^sweep\.pressures: a sweep needs at least two distinct"),
    (["experiment=incentive", "sweep.pressures=[2, 2.0]"], r"^sweep\.pressures: a sweep needs at least two distinct"),
    (["experiment=incentive", "sweep.pressures=[0, -1]"], r"^sweep\.pressures\[1\]: -1\.0 is below the allowed range"),
    (["experiment=spoonfeeding", "sweep.pressures=[0, 0.5, 1.5]"],
     r"^sweep\.pressures: ρ \(spoonfed fraction .*\) must be in \[0, 1\], got 1\.5"),
    (["experiment=spoonfeeding", "sweep.pressures=[-0.1, 0.5]"], r"^sweep\.pressures\[0\]: -0\.1 is below"),
    (["experiment=incentive", "incentive.objective=reward_weighted", "incentive.kl=0"],
     r"^incentive\.kl: .* must be > 0"),
    (["experiment=sweep"], r"^experiment: 'sweep' is not one of 'oversight', 'incentive', 'spoonfeeding'"),
    (["experiment=incentive", "sweep.pressures=[0, inf]"], r"^sweep\.pressures\[1\]: expected a finite number"),
    (["experiment=incentive", "incentive.kl=nan"], r"^incentive\.kl: expected a finite number"),
])
def test_bad_sweeps_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=overrides)


@pytest.mark.parametrize("example,override", [("incentive.toml", "sweep.pressures=[1]"),
                                              ("incentive.toml", "sweep.pressures=[0, -2]"),
                                              ("spoonfeeding.toml", "sweep.pressures=[0, 2]")])
def test_bad_sweep_exits_2_and_writes_nothing(tmp_path, capsys, example, override):
    out = tmp_path / "out"
    assert main(["run", str(ROOT / "examples" / example), "--out", str(out), "--set", override]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("molab: error: sweep.pressures")
    assert not out.exists()


def test_bad_config_file_exits_2_and_writes_nothing(tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text('seeds = 4\n[scheme]\nlabeler = "teacher"\n')
    out = tmp_path / "out"
    assert main(["run", str(config), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["molab: error: scheme.labeler: 'teacher' is not one of 'gold', 'overseer'"]
    assert not out.exists()
    assert main(["run", str(tmp_path / "missing.toml"), "--out", str(out)]) == 2
    config.write_text("seeds = \n")
    assert main(["run", str(config), "--out", str(out)]) == 2
    assert "not valid TOML" in capsys.readouterr().err
    assert not out.exists()


def test_missing_world_file_exits_2_naming_it(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["run", str(ROOT / "examples" / "jsonl.toml"), "--out", str(out),
                 "--set", f"world.path={tmp_path / 'none.jsonl'}"])
    assert code == 2
    assert "none.jsonl:0: no such file" in capsys.readouterr().err
    assert not out.exists()


def test_examples_load():
    examples = sorted((ROOT / "examples").glob("*.toml"))
    assert examples
    for path in examples:
        load_config(path, ["world.path=world.jsonl"] if path.name == "jsonl.toml" else [])


def test_readme_config_table_is_generated_from_the_fields():
    from molab.experiments import BUILT_IN

    assert keys_markdown(BUILT_IN) in (ROOT / "README.md").read_text()


def test_overrides_given_as_one_string_are_refused_in_one_line():
    with pytest.raises(ConfigError, match=r"^overrides: a list of KEY=VALUE strings, got the string 'seeds=2'$"):
        load_config(None, "seeds=2")
