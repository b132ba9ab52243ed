"""The results store (SQLite): one row per run, every answer of every run, and the functions analysis reads.

A run's row holds its id (a hash of everything that determines it), its pressure (sweeps; NULL in the
oversight experiment), its full config, the code revision and package versions, its status ("done" or
"failed"), the failure reason, its training metrics (losses) as JSON, and where its kept weights are.
Its answers to every diagnostic problem under every evaluation condition are in `answers` (zlib-
compressed JSON, one row per run and condition), beside its answers to any set an experiment has every run
answer unscored (`outputs`: condition "set:NAME", negative positions); the problems themselves are stored once per
problem set in `problem_sets`. A run and its answers are written in one transaction. Writing a run that is
already stored replaces nothing: `finished_ids` lets a sweep skip it, so re-running a sweep resumes it.

Nothing derived is stored: `load_results` scores the answers when it is called, so a new policy
threshold or answer equivalence needs no retraining.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import socket
import sqlite3
import subprocess
import time
import zlib
from collections.abc import Iterator
from contextlib import closing, contextmanager
from importlib import metadata
from pathlib import Path

import pandas as pd

STORE = "molab.sqlite"
LOCK = "molab.lock"
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
    pressure REAL,
    weights TEXT,
    problem_set TEXT
);
CREATE TABLE IF NOT EXISTS answers (
    run_id TEXT NOT NULL,
    condition TEXT NOT NULL,
    position INTEGER NOT NULL,  -- the condition's place in the experiment's list; 0 is where runs are classified;
                                -- negative: an unscored set (`outputs`), answered in the order of data/NAME.jsonl
    answers BLOB NOT NULL,      -- zlib-compressed JSON list, in the order of the run's problem set
    PRIMARY KEY (run_id, condition)
);
CREATE TABLE IF NOT EXISTS problem_sets (
    problem_set TEXT PRIMARY KEY,
    problems BLOB NOT NULL      -- zlib-compressed JSON list of problems
);
"""
ADDED_COLUMNS = {"pressure": "REAL", "weights": "TEXT", "problem_set": "TEXT"}  # absent from older stores


def check_folder(out: str | Path) -> None:
    """Refuse (ConfigError, one line) an output folder molab cannot use, before anything is written: a path that is
    or lies under a file, a folder it may not write in, or a molab.sqlite there that is not a molab store."""
    from molab.config import ConfigError

    out = Path(out)
    existing = next(p for p in [out, *out.parents] if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"{out}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{out}: cannot write in {existing} (permission denied)")
    store = out / STORE
    if store.exists():
        try:
            with closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db:
                tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as e:
            raise ConfigError(f"{store}: not a SQLite database ({e}); move it away or use another --out") from None
        if tables and "runs" not in tables:
            raise ConfigError(f"{store}: a SQLite database but not molab's store (no runs table); move it away or "
                              "use another --out")


class FolderInUse(RuntimeError):
    """Another molab process holds the output folder; the message is one line naming it and the holder."""


@contextmanager
def holding(out: str | Path) -> Iterator[None]:
    """Hold the output folder `out` (created if missing) for the duration: a second molab process on the same
    folder raises FolderInUse instead of interleaving with this one. The hold is an OS lock on out/molab.lock,
    which the OS releases when its holder dies, even by kill -9, so a lock left behind never blocks; the file
    names the holder (pid, host, start time) for the refusal's message."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    f = open(out / LOCK, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "a process that has not yet written its pid"
        f.close()
        raise FolderInUse(f"{out}: in use by another molab process ({holder}); wait for it to finish, or use "
                          "another --out") from None
    try:
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
        f.flush()
        yield
    finally:
        f.truncate(0)
        f.close()


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file, so a reader never sees half of it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _pack(value) -> bytes:
    return zlib.compress(json.dumps(value).encode(), 9)


def _unpack(blob: bytes):
    return json.loads(zlib.decompress(blob))


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
            db.executescript(SCHEMA)
            have = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
            for column, kind in ADDED_COLUMNS.items():
                if column not in have:
                    db.execute(f"ALTER TABLE runs ADD COLUMN {column} {kind}")
        self._provenance = (code_revision(), json.dumps(package_versions()))

    def _connect(self):
        return sqlite3.connect(self.path, timeout=60)

    def finished_ids(self) -> set[str]:
        with closing(self._connect()) as db:
            return {r[0] for r in db.execute("SELECT run_id FROM runs")}

    def add_problems(self, problem_set: str, problems: list) -> None:
        """Store a problem set (Problem objects) once under its id."""
        with closing(self._connect()) as db, db:
            db.execute("INSERT OR IGNORE INTO problem_sets VALUES (?, ?)",
                       (problem_set, _pack([p.to_json() for p in problems])))

    def record(self, *, run_id: str, experiment_id: str, learner: str, seed: int, config: dict,
               status: str, metrics: dict | None = None, error: str | None = None, seconds: float = 0.0,
               pressure: float | None = None, weights: str | None = None, problem_set: str | None = None,
               answers: dict[str, list[str]] | None = None, outputs: dict[str, list[str]] | None = None) -> None:
        """Record a finished run, its answers (by condition, in order) and its outputs (answers to unscored sets, by
        set name) in one transaction; a run already recorded is left as it is."""
        with closing(self._connect()) as db, db:
            new = db.execute(
                "INSERT OR IGNORE INTO runs (run_id, experiment_id, learner, seed, status, error, config, metrics, "
                "code_revision, packages, seconds, finished_at, pressure, weights, problem_set) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (run_id, experiment_id, learner, seed, status, error, json.dumps(config),
                 json.dumps(metrics) if metrics is not None else None, *self._provenance, seconds,
                 time.strftime("%Y-%m-%dT%H:%M:%S"), pressure, weights, problem_set)).rowcount
            if new:
                db.executemany("INSERT INTO answers VALUES (?,?,?,?)",
                               [(run_id, c, i, _pack(a)) for i, (c, a) in enumerate((answers or {}).items())]
                               + [(run_id, f"set:{name}", -1 - i, _pack(a))
                                  for i, (name, a) in enumerate((outputs or {}).items())])


def _read(out: str | Path, query: str) -> pd.DataFrame:
    path = Path(out) / STORE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no molab results here")
    with closing(sqlite3.connect(path)) as db:
        return pd.read_sql_query(query, db)


def several_conditions(out: str | Path) -> set[str]:
    """The runs that answered under more than one evaluation condition (without reading their answers)."""
    return set(_read(out, "SELECT DISTINCT run_id FROM answers WHERE position > 0")["run_id"])


def _problems(out) -> dict[str, list]:
    from molab.worlds.problem import Problem

    df = _read(out, "SELECT * FROM problem_sets")
    return {row.problem_set: [Problem(**p) for p in _unpack(row.problems)] for row in df.itertuples()}


def load_answers(out: str | Path, run_ids: list[str] | None = None) -> pd.DataFrame:
    """Every stored answer under `out` (of the runs `run_ids` only, when given): one row per run × diagnostic
    problem × evaluation condition, with the run's id, experiment, learner, seed and pressure, the condition, and
    the problem (prompt, difficulty, the honest and the sycophantic answer) beside the run's answer."""
    runs = _read(out, "SELECT run_id, experiment_id, learner, seed, pressure, problem_set FROM runs")
    answers = _read(out, "SELECT * FROM answers WHERE position >= 0 ORDER BY run_id, position")
    if run_ids is not None:
        answers = answers[answers["run_id"].isin(run_ids)]
    problems, rows = _problems(out), []
    by_run = runs.set_index("run_id")
    for a in answers.itertuples():
        run = by_run.loc[a.run_id]
        for i, (p, answer) in enumerate(zip(problems[run.problem_set], _unpack(a.answers), strict=True)):
            rows.append((a.run_id, run.experiment_id, run.learner, run.seed, run.pressure, a.condition, i, p.prompt,
                         p.difficulty, p.honest, p.sycophantic, answer))
    return pd.DataFrame(rows, columns=["run_id", "experiment_id", "learner", "seed", "pressure", "condition",
                                       "problem", "prompt", "difficulty", "honest", "sycophantic", "answer"])


def load_outputs(out: str | Path, name: str) -> dict[str, list[str]]:
    """Each run's stored answers to the unscored set `name` (an experiment's `answered` set), by run id."""
    rows = _read(out, f"SELECT run_id, answers FROM answers WHERE condition = 'set:{name}'")
    return {r.run_id: _unpack(r.answers) for r in rows.itertuples()}


def _flat(prefix: str, d: dict) -> dict:
    return {k: v for name, value in d.items()
            for k, v in (_flat(f"{prefix}{name}.", value) if isinstance(value, dict)
                         else {prefix + name: value}).items()}


def load_results(out: str | Path, eval=None) -> pd.DataFrame:
    """Every run recorded under `out`, one row each: the stored columns, the training metrics as columns of their
    own (e.g. `loss.finetune.last`), and what its answers under the first evaluation condition score under
    `eval` (an EvalConfig; by default the one `out`'s results.json was scored under, molab's defaults where there is
    none yet): the rates of honest / sycophantic / other answers
    (`rates.hard.honest`, `rates.easy.other`, `rates.difficulty.2.sycophantic`, ...), which hard problems' answers
    follow each policy (`hits.hard.honest`, `hits.hard.sycophantic`: a string of 0s and 1s in the problem set's
    order), the run's `policy` and its graded `outcome` (missing for a failed run); `ceiling` is the policy of a
    ceiling run, None for others; `n_after` the number of earlier runs a chained run trains against (0 for
    others). Scoring happens here, from the stored answers: nothing derived is stored. Runs are only ever added to a
    store, so a store is scored again only when it holds new runs (an experiment's summary and its report read one
    scoring; each caller gets a copy)."""
    n, last = _read(out, "SELECT count(*), coalesce(max(rowid), 0) FROM runs").iloc[0]
    path = (Path(out) / STORE).resolve()
    if eval is None:
        eval = _folder_eval(Path(out) / "results.json")
    return _scored(str(path), path.stat().st_ino, int(n), int(last), eval).copy()


def _folder_eval(results: Path):
    """The eval settings `results` (a results.json) was scored under; molab's defaults where there is none yet."""
    from molab.config import ConfigError, EvalConfig, _build

    if not results.is_file():
        return EvalConfig()
    try:
        return _build(EvalConfig, json.loads(results.read_text())["config"]["eval"], "eval.")
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ConfigError) as e:
        raise ConfigError(f"{results}: no eval settings molab can read ({type(e).__name__}: {e}); pass "
                          "load_results(DIR, eval=EvalConfig(...))") from None


@functools.lru_cache(maxsize=4)
def _scored(path: str, inode: int, n: int, last: int, eval) -> pd.DataFrame:
    """`load_results` of the store at `path` (its file `inode`, holding `n` runs, the last at rowid `last`)."""
    from molab.analysis.policy import check_equivalence, classify, outcome, rates_of, scorer
    from molab.experiments import get_experiment

    out = Path(path).parent
    df = _read(out, "SELECT * FROM runs ORDER BY experiment_id, learner, pressure, seed")
    first = _read(out, "SELECT run_id, answers FROM answers WHERE position = 0")
    answers = dict(zip(first["run_id"], first["answers"]))
    problems = _problems(out)
    for stored in problems.values():  # an equivalence given at analysis is checked as one given to a run
        check_equivalence(eval.equivalence, stored)
    configs = [json.loads(c) for c in df["config"]]
    scorers = {name: scorer(get_experiment(name).score, eval)  # looked up once
               for name in {c["experiment"] for c in configs}}
    scored = []
    for run, config in zip(df.itertuples(), configs):
        metrics = _flat("", json.loads(run.metrics)) if isinstance(run.metrics, str) else {}
        metrics["ceiling"] = config.get("ceiling_policy")
        metrics["n_after"] = len(config.get("after") or [])  # a chained run: how many earlier runs it trains against
        if run.run_id in answers:
            score, asked = scorers[config["experiment"]], problems[run.problem_set]
            scores = [score(p, a) for p, a in zip(asked, _unpack(answers[run.run_id]), strict=True)]
            r = rates_of(asked, scores)
            policy = classify(r["hard"], eval.policy_threshold)
            metrics |= _flat("rates.", r) | {"policy": policy, "outcome": outcome(policy, r, eval.collapse_threshold)}
            metrics |= {f"hits.hard.{k}": "".join("1" if s[k] else "0" for p, s in zip(asked, scores) if p.disagree)
                        for k in ("honest", "sycophantic")}
        scored.append(metrics)
    out_df = pd.concat([df.drop(columns="metrics"), pd.DataFrame(scored, index=df.index)], axis=1)
    out_df = out_df if "policy" in out_df else out_df.assign(policy=None, outcome=None)
    return out_df if "n_after" in out_df else out_df.assign(n_after=0)
