"""The grid driver's record, <grid.log_dir>/grid.json: one entry per DVC stage (train@, replicate@ and rerun@ alike),
naming its current job beyond a pid (submitit's job id and folder, a local job's start time) and how its attempts went.

Written atomically; read without trusting it: a damaged, cut or foreign file is one sentence naming the file and the
field (the readers of src/fields.py), never a traceback or a job re-attached on the strength of a bad value.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from src import fields
from src.atomic import atomic_output
from src.errors import DataError, UserError
from src.fields import ANY_TEXT, NULL, NUMBER, OBJECT, TEXT, Kind, either, list_of, one_of

STATE_FILE = "grid.json"
QUEUED, RUNNING, DETACHED, INTERRUPTED = "queued", "running", "detached", "interrupted"  # a job's states
DONE, GAVE_UP, STALE = "done", "failed", "finished, not committed"  # a cell's end in the driver
LIVE = (QUEUED, RUNNING, DETACHED)  # detached: alive when its driver stopped, watched by none since
STATES = (*LIVE, INTERRUPTED, DONE, GAVE_UP, STALE)


@dataclass
class CellJob:
    """One cell in the driver: its DVC stage (the key: a rerun cell shares its grid cell's run name, not its stage),
    its current job (what names it) and how its attempts went."""

    cell: str  # what messages and log folders call it: the run name, for the rerun block with its threads (-t1)
    stage: str  # train@unet-c16-p64-s1-0, replicate@..., rerun@...
    command: str = ""  # the stage's command, as dvc.yaml gives it
    fingerprint: list = field(default_factory=list)
    executor: str = ""
    job_id: str | None = None
    folder: str | None = None  # submitit's folder of the current job
    started: float | None = None  # local: its process's start time, which a process reusing the pid does not share
    slot: int = 0  # local: slot i sees GPU i % gpus
    attempts: int = 0
    resume: bool = False  # the next attempt continues the cell (an earlier one failed or was stopped)
    state: str = QUEUED
    log: str | None = None
    message: str = ""
    logs: list[str] = field(default_factory=list)  # every attempt's log, oldest first

    @property
    def live(self) -> bool:
        return self.job_id is not None and self.folder is not None and self.state in LIVE


def _pairs(value) -> bool:
    return isinstance(value, list) and all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(s, str) for s in p) for p in value
    )


COUNT = Kind("a whole number >= 0", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0)
JOB_ID = Kind("a job id (digits, as 1234 or 1234_5)", lambda v: isinstance(v, str) and re.fullmatch(r"\d+(_\d+)?", v))
KINDS = {  # what each field of an entry must hold; every field is required
    "cell": TEXT,
    "stage": TEXT,
    "command": ANY_TEXT,
    "fingerprint": Kind("a list of [dependency, hash] pairs of strings", _pairs),
    "executor": one_of("local", "slurm", ""),
    "job_id": either(JOB_ID, NULL),
    "folder": either(TEXT, NULL),
    "started": either(NUMBER, NULL),
    "slot": COUNT,
    "attempts": COUNT,
    "resume": Kind("true or false", lambda v: isinstance(v, bool)),
    "state": one_of(*STATES),
    "log": either(TEXT, NULL),
    "message": ANY_TEXT,
    "logs": list_of(TEXT),
}


def read_state(log_dir: Path) -> dict[str, CellJob]:
    """The entries of <log_dir>/grid.json by stage (none without the file); a DataError naming the file and the field
    for anything this driver did not write. An entry keyed by its run name (before rerun cells) is read by its stage."""
    path = log_dir / STATE_FILE
    if not path.exists() and not path.is_symlink():
        return {}
    jobs: dict[str, CellJob] = {}
    try:
        raw = fields.read_object(path, "a grid state file")
        entries = fields.field(raw, "cells", OBJECT, path)
        for key in entries:
            entry = fields.field(entries, key, OBJECT, path, prefix="cells.")
            names = [f.name for f in dataclasses.fields(CellJob)]
            job = CellJob(**{n: fields.field(entry, n, KINDS[n], path, prefix=f"cells.{key}.") for n in names})
            if key not in (job.stage, job.cell):
                raise DataError(f"{path}: entry 'cells.{key}' holds stage {job.stage!r} under another name")
            if job.stage in jobs:
                raise DataError(f"{path}: entry 'cells.{key}' is a second entry of stage {job.stage!r}")
            jobs[job.stage] = job
    except DataError as err:
        raise DataError(f"{err}; move it away to start afresh") from None
    return jobs


def write_state(log_dir: Path, jobs: dict[str, CellJob]) -> None:
    with atomic_output(log_dir / STATE_FILE) as tmp:
        tmp.write_text(json.dumps({"cells": {s: dataclasses.asdict(j) for s, j in jobs.items()}}, indent=1) + "\n")


@contextlib.contextmanager
def driver_lock(log_dir: Path) -> Iterator[None]:
    """One driver per grid folder: two would submit the same cells twice."""
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / "driver.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"another `grid run` is driving {log_dir}; wait for it, or see `grid status`") from None
        yield
