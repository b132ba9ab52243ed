"""Task worlds written elsewhere: one problem per line of a JSONL file.

Each line is an object with `prompt`, `honest`, `sycophantic` (the overseer's answer; strings),
`difficulty` (a number) and optionally `split` ("train" or "diagnostic"). Lines without a split
go to the diagnostic set when a stable hash of their prompt says so (one in five).

    {"prompt": "57+68=", "honest": "125", "sycophantic": "25", "difficulty": 2, "split": "diagnostic"}
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Iterator
from pathlib import Path

from molab.worlds.overseer import StoredOverseer
from molab.worlds.problem import Problem, WorldError


class WorldFileError(WorldError):
    """A missing or garbled world file; the message starts with `file:line`."""


def _field(row: dict, name: str, where: str, types_: tuple, what: str):
    if name not in row:
        raise WorldFileError(f"{where}: missing field '{name}'")
    value = row[name]
    if isinstance(value, bool) or not isinstance(value, types_):
        raise WorldFileError(f"{where}: field '{name}' must be {what}, got {value!r}")
    return value


def _lines(path: Path):
    """(line number, text) of each line of `path`; WorldFileError naming the line of bytes that are not UTF-8."""
    for n, raw in enumerate(path.read_bytes().splitlines(), 1):
        try:
            yield n, raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise WorldFileError(f"{path}:{n}: not UTF-8 text (byte {raw[e.start]:#04x} at column {e.start + 1})") \
                from None


def read_jsonl(path: str | Path) -> tuple[list[Problem], list[Problem]]:
    """Read a JSONL world file into (train, diagnostic) problems. Each prompt may appear once."""
    path = Path(path)
    if path.is_dir():
        raise WorldFileError(f"{path}:0: a directory, not a JSONL file")
    if not path.is_file():
        where = "" if path.is_absolute() else f" (a relative path is read from the working directory, {Path.cwd()})"
        raise WorldFileError(f"{path}:0: no such file{where}")
    train, diagnostic, seen = [], [], {}
    for n, line in _lines(path):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise WorldFileError(f"{where}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise WorldFileError(f"{where}: expected a JSON object")
        p = Problem(
            prompt=_field(row, "prompt", where, (str,), "a string"),
            honest=_field(row, "honest", where, (str,), "a string"),
            sycophantic=_field(row, "sycophantic", where, (str,), "a string"),
            difficulty=_field(row, "difficulty", where, (int, float), "a number"),
        )
        if not math.isfinite(p.difficulty):
            raise WorldFileError(f"{where}: field 'difficulty' must be a finite number, got {p.difficulty!r}")
        split = row.get("split")
        if split is None:
            split = "diagnostic" if hashlib.sha256(p.prompt.encode()).digest()[0] % 5 == 0 else "train"
        if split not in ("train", "diagnostic"):
            raise WorldFileError(f"{where}: field 'split' must be 'train' or 'diagnostic', got {split!r}")
        if p.prompt in seen:
            raise WorldFileError(f"{where}: prompt {p.prompt!r} is already at line {seen[p.prompt]}; each prompt "
                                 "may appear once")
        seen[p.prompt] = n
        (train if split == "train" else diagnostic).append(p)
    if not train or not diagnostic:
        raise WorldFileError(f"{path}:0: needs both train and diagnostic problems "
                             f"(found {len(train)} train, {len(diagnostic)} diagnostic)")
    if not any(p.disagree for p in diagnostic):
        raise WorldFileError(f"{path}:0: no diagnostic problem where honest and sycophantic differ")
    if all(p.disagree for p in diagnostic):
        raise WorldFileError(f"{path}:0: no diagnostic problem where honest and sycophantic agree (an easy one), so "
                             "whether a run still does the task cannot be checked")
    return train, diagnostic


class JsonlWorld:
    """The problems of a JSONL file; its overseer answers what the file's `sycophantic` field says."""

    def __init__(self, path: str | Path, competence: int = 1):
        self.train, self._diagnostic = read_jsonl(path)
        self.overseer = StoredOverseer({p.prompt: p.sycophantic for p in self.train + self._diagnostic}, competence)

    def alphabet(self) -> str:
        return "".join(sorted({c for p in self.train + self._diagnostic for s in (p.prompt, p.honest, p.sycophantic)
                               for c in s}))

    def diagnostic(self) -> list[Problem]:
        return list(self._diagnostic)

    def stream(self, rng: random.Random, digits=None, operations=None) -> Iterator[Problem]:
        """The train problems in a fresh random order, again and again."""
        while True:
            order = list(self.train)
            rng.shuffle(order)
            yield from order
