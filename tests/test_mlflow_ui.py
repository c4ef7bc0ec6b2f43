"""The study's saved run-list view for MLflow's UI (src/mlflow_ui.py): the envelope the UI parses, columns the runs
have, set once on a store, and the two switches still read by the installed MLflow's UI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import mlflow

from src import mlflow_ui
from tests.conftest import REPO

JS = Path(mlflow.__file__).parent / "server" / "js" / "build" / "static" / "js"


def test_the_view_is_an_envelope_the_ui_parses_with_columns_the_runs_have():
    key, value = mlflow_ui.study_view_tag(now_ms=1)
    assert key == "mlflow.sharedViewState.study"
    envelope = json.loads(value)  # what the UI checks: string name, number createdAt, string state
    assert isinstance(envelope["name"], str) and isinstance(envelope["createdAt"], int)
    state = json.loads(envelope["state"])
    assert state["orderByKey"] == "metrics.`test_score`" and state["orderByAsc"] is False
    run = json.loads((REPO / "metrics" / "mlflow" / "unet-c16-p64-s1-r0.json").read_text())
    for column in state["selectedColumns"]:
        kind, name = re.fullmatch(r"(metrics|tags)\.`(.+)`", column).groups()
        assert name in run[kind], column
    assert len(value) < 5000  # an experiment tag's value limit


def test_set_on_a_store_once_and_printed_addresses(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env |= {"CRYOET_MLRUNS": str(tmp_path / "mlruns"), "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "src.mlflow_ui"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "#/experiments/1/runs?viewStateShareKey=study&workflowType=machine_learning" in done.stdout
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    tags = client.get_experiment("1").tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    key, _ = mlflow_ui.study_view_tag()
    client.set_experiment_tag("1", key, "edited in the UI")
    mlflow_ui.set_study_view(client, "1")
    assert client.get_experiment("1").tags[key] == "edited in the UI"  # kept


def test_the_installed_ui_still_reads_the_view_tag_and_the_workflow_parameter():
    """If an MLflow upgrade drops either, the README's addresses stop working: this says so."""
    main = next(JS.glob("main.*.js")).read_text()
    assert '"mlflow.sharedViewState."' in main and '"viewStateShareKey"' in main
    assert 'e.get("workflowType")' in main and 'MACHINE_LEARNING="machine_learning"' in main
    assert mlflow_ui.addresses("http://h:5000/", "3", "r", "m") == [
        "http://h:5000/#/experiments/3/runs?viewStateShareKey=study&workflowType=machine_learning",
        "http://h:5000/#/experiments/3/runs/r?workflowType=machine_learning",
        "http://h:5000/#/experiments/3/models/m?workflowType=machine_learning",
    ]
