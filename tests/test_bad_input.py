"""Every failure a user can cause: one line on stderr, exit code 2, nothing written.

Each case runs the CLI as a user would; `{tmp}` in an argument is a fresh folder holding the files below, and
`{out}` an output folder inside it. A case passes when molab exits 2 with a single line starting with the
expected message and leaves `{tmp}` exactly as it was.
"""

import json
from pathlib import Path

import pytest

from molab.cli import main

ROW = {"prompt": "57+68=", "honest": "521", "sycophantic": "52", "difficulty": 2}
EASY = {"prompt": "12+30=", "honest": "24", "sycophantic": "24", "difficulty": 0}


def lines(*rows) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()


FILES = {
    "good.jsonl": lines(ROW | {"split": "diagnostic"}, EASY | {"split": "diagnostic"}, EASY | {"prompt": "1+2=",
                                                                                           "split": "train"}),
    "all-hard.jsonl": lines(ROW | {"split": "diagnostic"}, EASY | {"split": "train"}),
    "latin1.jsonl": lines(ROW | {"split": "diagnostic"}) + '{"prompt": "caf\xe9"}\n'.encode("latin-1"),
    "garbled.jsonl": lines(ROW | {"split": "diagnostic"}, "{not json"),
    "missing.jsonl": lines(ROW | {"split": "diagnostic"}, {"prompt": "1+1=", "honest": "2", "difficulty": 0}),
    "nan.jsonl": lines(ROW | {"split": "diagnostic"}, '{"prompt": "1+1=", "honest": "2", "sycophantic": "2", '
                                                      '"difficulty": NaN}'),
    "twice.jsonl": lines(ROW | {"split": "diagnostic"}, EASY, ROW | {"split": "diagnostic"}),
    "conflict.jsonl": lines(ROW | {"split": "diagnostic"}, EASY, ROW | {"honest": "125", "split": "train"}),
    "empty.jsonl": b"",
    "train-only.jsonl": lines(ROW | {"split": "train"}, EASY | {"split": "train"}),
    "split.jsonl": lines(ROW | {"split": "diagnostic"}, EASY | {"split": "test"}),
    "agree.jsonl": lines(EASY | {"split": "diagnostic"}, ROW | {"split": "train"}),
    "empty-answer.jsonl": lines(ROW | {"sycophantic": "", "split": "diagnostic"}, EASY | {"split": "diagnostic"},
                                EASY | {"prompt": "1+2=", "split": "train"}),
    "numeric.jsonl": lines(ROW | {"split": "diagnostic"}, EASY | {"split": "diagnostic"},
                           EASY | {"prompt": "1+2=", "split": "train"},
                           ROW | {"prompt": "6*7=", "honest": "42", "sycophantic": "42.0", "split": "train"}),
    "bad.toml": b"seeds = [",
    "latin1.toml": 'experiment = "caf\xe9"\n'.encode("latin-1"),
    "afile": b"not a folder",
    "checkpoint/readme.txt": b"no config.json here",
    "untokenized/config.json": b"{}",
    "corrupt/molab.sqlite": b"this is not a database",
    "results/results.json": b'{"experiment": "oversight", "config": {',
    "no-store/results.json": json.dumps({"config": {}, "bases": [], "plan": []}).encode(),
}


def sets(*items: str) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


DEMO = ["demo", "--out", "{out}"]
CASES = [
    # config keys and values
    (DEMO + sets("nope=1"), "nope: unknown key"),
    (DEMO + sets("model.nope=1"), "model.nope: unknown key"),
    (DEMO + sets("seeds=many"), "seeds: expected an integer"),
    (DEMO + sets("model.compile=yes"), "model.compile: expected true or false"),
    (DEMO + sets("seeds=0"), "seeds: 0 is below the allowed range"),
    (DEMO + sets("model.lr=nan"), "model.lr: expected a finite number"),
    (DEMO + sets("scheme.labeler=teacher"), "scheme.labeler: 'teacher' is not one of"),
    (DEMO + sets('world.operations=["*"]'), "world.operations[0]: '*' is not one of"),
    (DEMO + sets("scheme.difficulties=[]"), "scheme.difficulties: expected a non-empty list"),
    (DEMO + ["--set", "seeds"], "--set seeds: expected key=value"),
    (DEMO + sets('world.path="abc'), '--set world.path="abc: not a valid TOML value'),
    (DEMO + sets("model.heads=3"), "model.heads: 3 does not divide model.width"),
    (DEMO + sets("experiment=nope"), "experiment: 'nope' is not one of"),
    (DEMO + sets("experiment=incentive", "sweep.pressures=[1]"), "sweep.pressures: a sweep needs at least two"),
    (DEMO + sets("experiment=spoonfeeding", "sweep.pressures=[0, 2]"), "sweep.pressures: ρ"),
    (DEMO + sets("experiment=incentive", "sweep.pressures=[-1, 1]"), "sweep.pressures[0]: -1"),
    (DEMO + sets("experiment=incentive", "incentive.reward=likes"), "incentive.reward: 'likes' is not one of"),
    (DEMO + sets("finetune.method=lora", "finetune.lora.target_modules=['qkv']"),
     "finetune.lora.target_modules: 'qkv' is not a module of the base (llama); its linear modules: down_proj, "),
    (DEMO + sets("model.dtype=half"), "model.dtype: 'half' is not one of"),
    (DEMO + sets("experiment=incentive", "incentive.objective=reward_weighted", "incentive.kl=0"), "incentive.kl:"),
    (DEMO + sets('controls=["trigram"]'), "controls[0]: 'trigram' is not one of"),
    (DEMO + sets("experiment=diversity", "diversity.runs=1"), "diversity.runs: 1 is below the allowed range"),
    (DEMO + sets("experiment=diversity", "diversity.alpha=-1"), "diversity.alpha: -1"),
    (DEMO + sets("experiment=diversity", "bases=2"), "bases: the diversity experiment chains runs on one base"),
    (DEMO + sets("experiment=password_lock", "password_lock.password=' '"), "password_lock.password: ' ' tokenizes"),
    (DEMO + sets("experiment=password_lock", "sweep.pressures=[]"), "sweep.pressures: expected a non-empty list"),
    (DEMO + sets("experiment=password_lock", "password_lock.n_demonstrations=8"), "sweep.pressures: k = 256 demo"),
    (DEMO + sets("experiment=password_lock", "sweep.pressures=[0, 1.5]"), "sweep.pressures: k counts"),
    (DEMO + sets("experiment=backdoor", "backdoor.trigger=' '"), "backdoor.trigger: ' ' tokenizes"),
    (DEMO + sets("experiment=backdoor", "backdoor.trigger=x"), "backdoor.trigger: 'x' is too short"),
    (DEMO + sets("experiment=backdoor", "backdoor.clean='|D| 2023 '"),
     "backdoor.clean: '|D| 2023 ' contains the trigger"),
    (DEMO + sets("experiment=backdoor", "backdoor.probe_layers=[9]"), "backdoor.probe_layers: layer 9 is out of"),
    (DEMO + sets("experiment=backdoor", "backdoor.safety=rl", "backdoor.trigger_share=0.5"), "backdoor.trigger_share:"),
    (DEMO + sets("eval.equivalence=nope:fn"), "eval.equivalence: cannot import nope:fn"),
    (DEMO + sets("overseer.competence=3"), "overseer.competence: the overseer is confident up to difficulty 3"),
    (DEMO + sets("scheme.digits=[4]"), "scheme.digits: 4 is above world.digits"),
    (DEMO + sets('scheme.operations=["-"]'), "scheme.operations: '-' is not in world.operations"),
    # personas
    (DEMO + sets("model.sycophantic_tag=<teacher>"), "model.sycophantic_tag: the same as model.honest_tag"),
    (DEMO + sets('model.honest_tag=""'), "model.honest_tag: empty"),
    # a local checkpoint
    (DEMO + sets("base={tmp}/nowhere"), "base: {tmp}/nowhere does not exist"),
    (DEMO + sets("base={tmp}/checkpoint"), "base: {tmp}/checkpoint is not a transformers checkpoint"),
    (DEMO + sets("base={tmp}/checkpoint", "bases=2"), "bases: 2 bases need pretraining"),
    (DEMO + sets("base={tmp}/untokenized"), "base: {tmp}/untokenized has no tokenizer"),
    (DEMO + sets("overseer.kind=model"), "overseer.path: a model overseer needs a local checkpoint"),
    (DEMO + sets("overseer.path={tmp}/checkpoint"), "overseer.path: only for overseer.kind = model"),
    (DEMO + sets("overseer.kind=model", "overseer.path={tmp}/nowhere"), "overseer.path: {tmp}/nowhere does not exist"),
    (DEMO + sets("overseer.kind=model", "overseer.path={tmp}/untokenized"),
     "overseer.path: {tmp}/untokenized has no tokenizer"),
    (DEMO + sets("overseer.kind=model", "overseer.path={tmp}/checkpoint"),
     "overseer.path: {tmp}/checkpoint is not a transformers checkpoint"),
    # JSONL worlds
    (DEMO + sets("world.kind=jsonl"), "world.path: a jsonl world needs a file"),
    (DEMO + sets("world.kind=jsonl", "world.path={tmp}/nowhere.jsonl"), "{tmp}/nowhere.jsonl:0: no such file"),
    (DEMO + sets("world.kind=jsonl", "world.path={tmp}"), "{tmp}:0: a directory, not a JSONL file"),
    (DEMO + sets("world.kind=jsonl", "world.path={tmp}/latin1.jsonl"), "{tmp}/latin1.jsonl:2: not UTF-8 text"),
    (DEMO + sets("world.kind=jsonl", "world.path={tmp}/garbled.jsonl"), "{tmp}/garbled.jsonl:2: not valid JSON"),
    (DEMO + sets("world.kind=jsonl", "world.path={tmp}/missing.jsonl"),
     "{tmp}/missing.jsonl:2: missing field 'sycophantic'"),
    (DEMO + sets("world.kind=jsonl", "world.path={tmp}/nan.jsonl"),
     "{tmp}/nan.jsonl:2: field 'difficulty' must be a finite number"),
    (DEMO + sets("world.kind=jsonl", "world.path={tmp}/twice.jsonl"), "{tmp}/twice.jsonl:3: prompt '57+68=' is "
                                                                       "already at line 1"),
    (DEMO + sets("world.kind=jsonl", "world.path={tmp}/conflict.jsonl"), "{tmp}/conflict.jsonl:3: prompt '57+68='"),
    (DEMO + sets("world.kind=jsonl", "world.path={tmp}/empty.jsonl"),
     "{tmp}/empty.jsonl:0: needs both train and diagnostic problems (found 0 train, 0 diagnostic)"),
    (DEMO + sets("world.kind=jsonl", "world.path={tmp}/train-only.jsonl"),
     "{tmp}/train-only.jsonl:0: needs both train and diagnostic problems (found 2 train, 0 diagnostic)"),
    (DEMO + sets("world.kind=jsonl", "world.path={tmp}/split.jsonl"), "{tmp}/split.jsonl:2: field 'split'"),
    (DEMO + sets("world.kind=jsonl", "world.path={tmp}/agree.jsonl"),
     "{tmp}/agree.jsonl:0: no diagnostic problem where honest and sycophantic differ"),
    (DEMO + sets("world.kind=jsonl", "world.path={tmp}/all-hard.jsonl"),
     "{tmp}/all-hard.jsonl:0: no diagnostic problem where honest and sycophantic agree"),
    (DEMO + sets("world.kind=jsonl", "world.path={tmp}/good.jsonl", "scheme.digits=[2]"),
     "scheme.digits: only arithmetic worlds"),
    (DEMO + sets("world.kind=jsonl", "world.path={tmp}/empty-answer.jsonl"), "controls: policy_choice"),
    (DEMO + sets("world.kind=jsonl", "world.path={tmp}/numeric.jsonl", "eval.equivalence=numeric"),
     "eval.equivalence: numeric makes the two answers to '6*7=' the same ('42' and '42.0')"),
    # the output folder and the command line
    (["demo", "--out", ""], "--out: empty"),
    (["demo", "--out", "{out}", "--workers", "0"], "--workers: 0"),
    (["demo", "--out", "{out}", "--stack", "0"], "--stack: 0"),
    (["demo", "--out", "{out}", "--threads", "-1"], "--threads: -1"),
    (["demo", "--out", "{out}", "--executor", "spark"], "--executor: 'spark'; one of local, ray"),
    (["demo", "--out", "{out}", "--address", "127.0.0.1:6379"], "--address: only with --executor ray"),
    (["demo", "--out", "{out}", "--gpus-per-task", "1"], "--gpus-per-task: only with --executor ray"),
    (["demo", "--out", "{out}", "--executor", "ray", "--gpus-per-task", "-1"], "--gpus-per-task: -1; a share of one"),
    (["demo", "--out", "{out}", "--executor", "ray", "--gpus-per-task", "1.5"], "--gpus-per-task: 1.5; a share of one"),
    (["demo", "--out", "{out}", "--executor", "ray", "--gpus-per-task", "nan"], "--gpus-per-task: nan; a share of one"),
    (["demo", "--out", "{out}", "--executor", "ray", "--address", "head"], "--address: 'head'; expected HOST:PORT"),
    (["demo", "--out", "{out}", "--executor", "ray", "--address", "127.0.0.1:1"], "--address: nothing answers at "
                                                                                 "127.0.0.1:1"),
    (["demo", "--out", "{tmp}/afile"], "{tmp}/afile: {tmp}/afile is a file, not a folder"),
    (["demo", "--out", "{tmp}/afile/out"], "{tmp}/afile/out: {tmp}/afile is a file, not a folder"),
    (["demo", "--out", "{tmp}/corrupt"], "{tmp}/corrupt/molab.sqlite: not a SQLite database"),
    # config files
    (["run", "{tmp}/nowhere.toml", "--out", "{out}"], "{tmp}/nowhere.toml: no such config file"),
    (["run", "{tmp}", "--out", "{out}"], "{tmp}: a directory, not a config file"),
    (["run", "{tmp}/bad.toml", "--out", "{out}"], "{tmp}/bad.toml: not valid TOML"),
    (["run", "{tmp}/latin1.toml", "--out", "{out}"], "{tmp}/latin1.toml: not UTF-8 text (byte 0xe9"),
    # reports
    (["report", "{tmp}/nowhere"], "{tmp}/nowhere: no such folder"),
    (["report", "{tmp}"], "{tmp}/results.json: no results here"),
    (["report", "{tmp}/results"], "{tmp}/results/results.json: not valid JSON"),
    (["report", "{tmp}/no-store"], "{tmp}/no-store: no molab.sqlite here"),
    (["report", "{tmp}/no-store", "--set", "model.width=8"], "--set model.width: a report only re-scores"),
]


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("argv,message", CASES, ids=[f"{i}" for i in range(len(CASES))])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, argv, message):
    for name, content in FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(content)
    fill = lambda s: s.replace("{tmp}", str(tmp_path)).replace("{out}", str(tmp_path / "out"))  # noqa: E731
    before = snapshot(tmp_path)
    capsys.readouterr()
    assert main([fill(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("molab: error: " + fill(message)), err
    assert snapshot(tmp_path) == before


def test_there_are_forty_cases_at_least():
    assert len(CASES) >= 40


def test_one_world_file_named_three_ways_is_one_world(tmp_path, monkeypatch):
    """A JSONL world is identified by its content, not by the path that names it."""
    from molab.config import load_config
    from molab.runs import prepare

    examples = Path(__file__).resolve().parents[1] / "examples"
    monkeypatch.chdir(examples.parent)
    ids = set()
    for path in ("examples/two-digit.jsonl", str(examples / "two-digit.jsonl"), "examples/../examples/two-digit.jsonl"):
        setup = prepare(load_config(examples / "jsonl.toml", [f"world.path={path}"]))
        ids.add((setup.experiment_id, setup.base_key, setup.ceiling_id("honest")))
    assert len(ids) == 1
