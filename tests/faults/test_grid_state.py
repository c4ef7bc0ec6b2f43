"""Fault table of the grid driver's own record, logs/grid/grid.json (issue 24, item 6), through the real CLI.

A grid.json that is cut, not UTF-8, not an object, from another program, or has a field of the wrong type, an unknown
state or an odd job id is one sentence naming the file and the field, and changes nothing: the driver never re-attaches
to, waits on or stops a job on the strength of a value it did not write.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from src.grid_state import CellJob
from tests.faults.conftest import assert_clean_error, run_cli, snapshot

STATE = "logs/grid/grid.json"
CELL, STAGE = "unet-c16-p64-s1-r0", "train@unet-c16-p64-s1-0"
STATUS = ["grid", "status", CELL]


def _entry(**changes) -> dict:
    """A live local job's entry as the driver writes it, with `changes`."""
    job = CellJob(CELL, STAGE, "python -m src train --cell x", [["data/project", '"abc.dir"']], "local", "4242")
    job.folder, job.started, job.state, job.log = "/tmp/attempt1", 1.7e9, "running", "/tmp/attempt1/4242_0_log.out"
    return dataclasses.asdict(job) | changes


def state(content: object | bytes) -> Callable[[Path], None]:
    def damage(work: Path) -> None:
        path = work / STATE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())

    return damage


def folder(work: Path) -> None:
    (work / STATE).mkdir(parents=True)


FIELD = f"'cells.{STAGE}."
CASES = [  # (id, damage, what the error line names)
    ("not-an-object", state([_entry()]), ("grid.json", "array", "not an object")),
    ("not-utf8", state(b'\xff\xfe{"cells": {}}'), ("grid.json", "not UTF-8")),
    ("cut-short", state(b'{"cells": {"train@'), ("grid.json", "not valid JSON")),
    ("a-folder", folder, ("grid.json", "is a folder")),
    ("foreign-no-cells", state({"jobs": [1, 2]}), ("grid.json", "'cells'")),
    ("cells-a-list", state({"cells": [_entry()]}), ("grid.json", "'cells'", "object")),
    ("entry-a-string", state({"cells": {STAGE: "running"}}), ("grid.json", f"'cells.{STAGE}' is \"running\"")),
    ("unknown-state", state({"cells": {STAGE: _entry(state="zombie")}}), (FIELD + "state'", '"zombie"', '"queued"')),
    ("state-number", state({"cells": {STAGE: _entry(state=3)}}), (FIELD + "state' is 3",)),
    ("attempts-text", state({"cells": {STAGE: _entry(attempts="2")}}), (FIELD + "attempts'", "whole number")),
    ("attempts-negative", state({"cells": {STAGE: _entry(attempts=-1)}}), (FIELD + "attempts' is -1",)),
    ("slot-float", state({"cells": {STAGE: _entry(slot=0.5)}}), (FIELD + "slot'",)),
    ("job-id-odd", state({"cells": {STAGE: _entry(job_id="12; rm -rf ~")}}), (FIELD + "job_id'", "job id")),
    ("job-id-number", state({"cells": {STAGE: _entry(job_id=4242)}}), (FIELD + "job_id' is 4242",)),
    ("started-text", state({"cells": {STAGE: _entry(started="today")}}), (FIELD + "started'", "finite number")),
    ("started-nan", state({"cells": {STAGE: _entry(started=float("nan"))}}), (FIELD + "started' is nan",)),
    ("executor-unknown", state({"cells": {STAGE: _entry(executor="pbs")}}), (FIELD + "executor'", "slurm")),
    ("resume-text", state({"cells": {STAGE: _entry(resume="yes")}}), (FIELD + "resume'", "true or false")),
    ("logs-a-string", state({"cells": {STAGE: _entry(logs="a.log")}}), (FIELD + "logs'", "list")),
    ("fingerprint-flat", state({"cells": {STAGE: _entry(fingerprint=["a", "b"])}}), (FIELD + "fingerprint'",)),
    ("no-stage", state({"cells": {STAGE: {k: v for k, v in _entry().items() if k != "stage"}}}), (FIELD + "stage'",)),
    ("key-of-another-stage", state({"cells": {"rerun@x-0": _entry()}}), ("'cells.rerun@x-0'", STAGE)),
]


@pytest.mark.parametrize(("damage", "names"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_damaged_grid_state_is_one_clean_error(damage, names, workspace: Path):
    damage(workspace)
    before = snapshot(workspace)
    line = assert_clean_error(run_cli(STATUS, workspace), names)
    assert "move it away" in line
    assert snapshot(workspace) == before
