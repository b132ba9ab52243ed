"""The results store: one SQLite row per run, and `load_results` for analysis.

A row holds the run's id (a hash of everything that determines it), its pressure (sweeps; NULL in
the oversight experiment), its full config, the code
revision and package versions, its status ("done" or "failed"), the failure reason, and its
metrics as JSON. Writing a run that is already stored replaces nothing: `finished_ids` lets a
sweep skip it, so re-running a sweep resumes it.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from contextlib import closing
from importlib import metadata
from pathlib import Path

import pandas as pd

STORE = "molab.sqlite"
PACKAGES = ("molab", "torch", "transformers", "tokenizers", "numpy", "scipy", "statsmodels", "pandas")

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    experiment_id TEXT NOT NULL,
    learner TEXT NOT NULL,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    config TEXT NOT NULL,
    metrics TEXT,
    code_revision TEXT,
    packages TEXT,
    seconds REAL,
    finished_at TEXT,
    pressure REAL
)
"""


def code_revision() -> str:
    """The git commit of the molab source, with '+dirty' when it has uncommitted changes."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "."], cwd=here, capture_output=True, text=True,
                               timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (rev + ("+dirty" if dirty else "")) if rev else "unknown"


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


class Store:
    def __init__(self, out: str | Path):
        self.path = Path(out) / STORE
        with closing(self._connect()) as db, db:
            db.execute(SCHEMA)
            if "pressure" not in {row[1] for row in db.execute("PRAGMA table_info(runs)")}:  # a store from molab 0.1
                db.execute("ALTER TABLE runs ADD COLUMN pressure REAL")
        self._provenance = (code_revision(), json.dumps(package_versions()))

    def _connect(self):
        return sqlite3.connect(self.path, timeout=60)

    def finished_ids(self) -> set[str]:
        with closing(self._connect()) as db:
            return {r[0] for r in db.execute("SELECT run_id FROM runs")}

    def record(self, *, run_id: str, experiment_id: str, learner: str, seed: int, config: dict,
               status: str, metrics: dict | None = None, error: str | None = None, seconds: float = 0.0,
               pressure: float | None = None) -> None:
        """Record a finished run; a run already recorded is left as it is."""
        with closing(self._connect()) as db, db:
            db.execute("INSERT OR IGNORE INTO runs (run_id, experiment_id, learner, seed, status, error, config, "
                       "metrics, code_revision, packages, seconds, finished_at, pressure) "
                       "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                       (run_id, experiment_id, learner, seed, status, error, json.dumps(config),
                        json.dumps(metrics) if metrics is not None else None, *self._provenance, seconds,
                        time.strftime("%Y-%m-%dT%H:%M:%S"), pressure))


def load_results(out: str | Path) -> pd.DataFrame:
    """Every run recorded under `out`, one row each: the stored columns, with the metrics
    flattened into columns of their own (e.g. `rates.hard.honest`, `policy`)."""
    path = Path(out) / STORE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no molab results here")
    with closing(sqlite3.connect(path)) as db:
        df = pd.read_sql_query("SELECT * FROM runs ORDER BY experiment_id, learner, pressure, seed", db)
    metrics = pd.json_normalize([json.loads(m) if isinstance(m, str) else {} for m in df["metrics"]])
    return pd.concat([df.drop(columns="metrics"), metrics], axis=1)
