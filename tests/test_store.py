import sqlite3

from molab import load_results
from molab.store import Store


def record(store, run_id, seed, status="done"):
    store.record(run_id=run_id, experiment_id="e1", learner="lm", seed=seed, config={"seed": seed},
                 status=status, metrics={"policy": "honest", "rates": {"hard": {"honest": 0.9}}} if status == "done"
                 else None, error=None if status == "done" else "loss became nan at step 3")


def test_records_once_and_loads_as_dataframe(tmp_path):
    store = Store(tmp_path)
    record(store, "a", 0)
    record(store, "b", 1, status="failed")
    record(Store(tmp_path), "a", 0)   # a second sweep over the same run changes nothing
    assert Store(tmp_path).finished_ids() == {"a", "b"}
    with sqlite3.connect(tmp_path / "molab.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 2
    df = load_results(tmp_path)
    assert list(df["run_id"]) == ["a", "b"]
    assert df.loc[0, "rates.hard.honest"] == 0.9 and df.loc[0, "policy"] == "honest"
    assert df.loc[1, "status"] == "failed" and "nan" in df.loc[1, "error"]
    assert df.loc[0, "code_revision"] and "torch" in df.loc[0, "packages"]
