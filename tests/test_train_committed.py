"""A one-off `train` at the repository root leaves the committed study alone: a cell whose outputs dvc.lock records is
refused in one sentence, before anything is written (not even the cell lock), unless DVC runs it (DVC_STAGE) or
--force is given. Runs the real CLI in a fresh committed copy of the repository on tiny data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from src.params import load_params
from src.study import Study
from tests.conftest import REPO
from tests.faults._outputs_helpers import snapshot
from tests.test_pipeline import _fresh_copy
from tests.test_tour import _git, _tiny_tour_params

CELL = "unet-c16-p64-s1-r0"
STAGE = "train@unet-c16-p64-s1-0"
RERUN_STAGE = "rerun@unet-c16-p64-s1-0"


def _train(repo: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("DVC_STAGE", "MLFLOW_TRACKING_URI")}
    full = {**base, "CRYOET_MLRUNS": str(repo / "mlruns"), **(env or {})}
    command = [sys.executable, "-m", "src", "train", *args]
    return subprocess.run(command, cwd=repo, env=full, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def committed(tmp_path_factory) -> Path:
    """A fresh clone of the committed study (its dvc.lock and metrics/) with tiny params, data and split."""
    repo = _fresh_copy(tmp_path_factory.mktemp("committed") / "repo")
    raw = _tiny_tour_params(yaml.safe_load((repo / "params.yaml").read_text()))
    (repo / "params.yaml").write_text(yaml.safe_dump(raw))
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "a fresh clone, tiny params")
    env = {**os.environ, "CRYOET_MLRUNS": str(repo / "mlruns")}
    for stage in ("data", "split"):
        done = subprocess.run([sys.executable, "-m", "src", stage], cwd=repo, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    return repo


def _declared_outputs(stage: str, cell, p) -> set[str]:
    """dvc.yaml's outputs (outs and metrics) of `stage`, filled in for `cell`."""
    import yaml

    s = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]["do"]
    fill = {
        "${train.models_dir}": p.train.models_dir,
        "${train.metrics_dir}": p.train.metrics_dir,
        "${item.model}-${item.channels}-${item.patch}-${item.sample}-r${item.seed}": cell.run_name,
    }
    declared = set()
    for out in [*s.get("outs", []), *s.get("metrics", [])]:
        path = out if isinstance(out, str) else next(iter(out))
        for key, value in fill.items():
            path = path.replace(key, value)
        declared.add(path)
    return declared


def test_the_guard_knows_where_a_cell_writes():
    """The guard checks training's own paths (CellPaths), which are what dvc.yaml declares as the cell's outputs,
    for a grid cell and a rerun cell."""
    from src.training.paths import CellPaths

    p = load_params(REPO / "params.yaml")
    study = Study.from_params(p)
    for stage, cell in (("train", study.parse(CELL)), ("rerun", study.rerun_of(study.parse(CELL)))):
        assert {str(path) for path in CellPaths.of(cell, p.train).outputs} == _declared_outputs(stage, cell, p)


def test_a_committed_cell_is_refused_before_anything_is_written(committed):
    before = {name: snapshot(committed / name) for name in ("models", "metrics")}
    for args, stage, out in (
        (["--cell", "unet-c16-p64-s1"], STAGE, f"models/{CELL}"),  # the first seed: -r0
        (["--cell", CELL, "--rerun"], RERUN_STAGE, f"models/reruns/{CELL}"),
    ):
        refused = _train(committed, *args)
        assert refused.returncode == 2, refused.stderr[-2000:]
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        message = refused.stderr
        assert f"records {out} as an output of {stage}" in message, message
        assert f"`dvc repro {stage}`" in message and "`python -m src workspace tour`" in message
        assert "--force" in message
    assert {name: snapshot(committed / name) for name in ("models", "metrics")} == before
    assert not (committed / "models").exists() and not (committed / "mlruns").exists()
    assert _git(committed, "status", "--porcelain", "--untracked-files=all") == ""


def test_dvc_runs_a_committed_cell(committed):
    """Under DVC (its DVC_STAGE, set for every stage command) the cell trains and replaces its committed outputs."""
    metrics = committed / "metrics" / f"{CELL}.json"
    old = json.loads(metrics.read_text())
    done = _train(committed, "--cell", CELL, env={"DVC_STAGE": STAGE})
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(metrics.read_text())["mlflow_run_id"] != old["mlflow_run_id"]
    assert (committed / "models" / CELL / "model.pt").exists()


def test_force_trains_a_committed_cell(committed):
    metrics = committed / "metrics" / "reruns" / f"{CELL}.json"
    old = json.loads(metrics.read_text())
    done = _train(committed, "--cell", CELL, "--rerun", "--force")
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(metrics.read_text())["mlflow_run_id"] != old["mlflow_run_id"]
    assert (committed / "models" / "reruns" / CELL / "model.pt").exists()
