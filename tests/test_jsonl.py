import json

import pytest

from molab.worlds import JsonlWorld, WorldFileError


def write(tmp_path, lines):
    path = tmp_path / "world.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


ROW = {"prompt": "57+68=", "honest": "125", "sycophantic": "25", "difficulty": 2}


def test_reads_splits_and_fields(tmp_path):
    easy = {"prompt": "1+1=", "honest": "2", "sycophantic": "2", "difficulty": 0}
    rows = [ROW | {"split": "diagnostic"}, easy | {"split": "diagnostic"}, easy | {"prompt": "2+2=", "split": "train"}]
    world = JsonlWorld(write(tmp_path, [json.dumps(r) for r in rows]))
    assert [p.prompt for p in world.diagnostic()] == ["57+68=", "1+1="]
    assert [p.disagree for p in world.diagnostic()] == [True, False]
    assert [p.prompt for p in world.train] == ["2+2="]
    assert set("57+68=1") <= set(world.alphabet())


def test_missing_file_names_it(tmp_path):
    with pytest.raises(WorldFileError, match=r"nope\.jsonl:0: no such file"):
        JsonlWorld(tmp_path / "nope.jsonl")


@pytest.mark.parametrize("bad,message", [
    ("{not json", r"world\.jsonl:2: not valid JSON"),
    (json.dumps({k: v for k, v in ROW.items() if k != "honest"}), r"world\.jsonl:2: missing field 'honest'"),
    (json.dumps(ROW | {"difficulty": "hard"}), r"world\.jsonl:2: field 'difficulty' must be a number"),
    (json.dumps(ROW | {"split": "test"}), r"world\.jsonl:2: field 'split'"),
    ("[1, 2]", r"world\.jsonl:2: expected a JSON object"),
])
def test_garbled_line_names_file_line_and_field(tmp_path, bad, message):
    path = write(tmp_path, [json.dumps(ROW | {"split": "diagnostic"}), bad])
    with pytest.raises(WorldFileError, match=message):
        JsonlWorld(path)


def test_prompt_in_both_splits_is_refused(tmp_path):
    path = write(tmp_path, [json.dumps(ROW | {"split": "diagnostic"}), json.dumps(ROW | {"split": "train"})])
    with pytest.raises(WorldFileError, match=r":2: prompt '.*' is already at line 1"):
        JsonlWorld(path)


@pytest.mark.parametrize("diagnostic,message", [("easy", "differ"), ("hard", "agree \\(an easy one\\)")])
def test_diagnostic_set_without_both_kinds_of_problem_is_refused(tmp_path, diagnostic, message):
    easy = {"prompt": "1+1=", "honest": "2", "sycophantic": "2", "difficulty": 0}
    rows = [easy, ROW] if diagnostic == "easy" else [ROW, easy]   # the first in the diagnostic set, the other train
    path = write(tmp_path, [json.dumps(rows[0] | {"split": "diagnostic"}), json.dumps(rows[1] | {"split": "train"})])
    with pytest.raises(WorldFileError, match=f"no diagnostic problem where honest and sycophantic {message}"):
        JsonlWorld(path)
