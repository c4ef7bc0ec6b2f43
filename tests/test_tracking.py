"""Run exports: a logged run written as git-friendly JSON, read by the report when the store is gone, and imported into
a fresh store with its params, metric steps and tags."""

from __future__ import annotations

import json
import os
import shutil

import mlflow
import pandas as pd
import pytest
from typer.testing import CliRunner

from src import tracking
from src.classes import CZII_CLASSES
from src.errors import UserError
from src.params import load_params
from src.report.runs import load_runs
from src.study import Study
from tests.conftest import REPO

STUDY = Study.from_params(load_params(REPO / "params.yaml"))
CELLS = ["unet-c16-p64-s1", "unet_se-c16-p64-s1"]


def log_finished_cell(name: str, score: float, metrics_dir) -> str:
    """A cell's run logged the way training logs it (params, per-epoch metrics, test results, tags) and its metrics
    file; returns the run id."""
    cell = STUDY.parse(name)
    tags = {"cell": cell.name, "model": cell.model, "channels": cell.channels, "patch": cell.patch}
    params = {"epochs": 3, "lr": 0.001, **tracking.size_params((16, 32, 64, 128), (16, 32, 32))}
    with tracking.cell_run(cell.name, tags | {"sample": cell.sample}, params) as run:
        for epoch in range(1, 4):
            mlflow.log_metric("train_loss", 1.0 / epoch, step=epoch)
            mlflow.log_metric("val_score", score * epoch / 3, step=epoch)
        per_class = {c.name: score + 0.01 * c.label for c in CZII_CLASSES}
        durations = {"train_minutes": 1.5, "seconds_per_epoch": 30.0, "inference_seconds_per_tomogram": 2.0}
        tracking.log_test_result(score, per_class, durations | {"val_best_score": score, "best_epoch": 3})
        run_id = run.info.run_id
    record = {"cell": cell.name, "mlflow_run_id": run_id, "test_score": score, "test_fbeta": per_class}
    tracking.write_cell_metrics(metrics_dir / f"{cell.name}.json", record | {"train_minutes": 1.5})
    return run_id


@pytest.fixture
def logged(tmp_path, monkeypatch):
    """Two logged cells in a temporary store, each exported beside its metrics file; (metrics dir, run ids)."""
    monkeypatch.setenv(tracking.ENV_STORE, str(tmp_path / "mlruns"))
    metrics = tmp_path / "metrics"
    ids = [log_finished_cell(name, 0.5 + 0.1 * i, metrics) for i, name in enumerate(CELLS)]
    for name in CELLS:
        tracking.export_cell_run(metrics / f"{name}.json")
    return metrics, ids


def history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_export_holds_params_metric_steps_and_tags(logged):
    metrics, ids = logged
    export = json.loads((metrics / "mlflow" / f"{CELLS[0]}.json").read_text())
    client = mlflow.MlflowClient(tracking.tracking_uri())
    run = client.get_run(ids[0])
    assert export["run_id"] == ids[0] and export["status"] == "FINISHED"
    assert export["params"] == run.data.params
    assert export["tags"] == run.data.tags
    assert set(export["metrics"]) == set(run.data.metrics)
    for key in run.data.metrics:
        assert [(s, v) for s, _, v in export["metrics"][key]] == history(client, ids[0], key)
    assert sorted(p.name for p in metrics.glob("*.json")) == [f"{c}.json" for c in sorted(CELLS)]  # not in the glob


def test_report_falls_back_to_exports_and_import_restores_the_ui(logged, tmp_path, monkeypatch):
    from src.__main__ import app

    metrics, ids = logged
    from_store = load_runs(metrics, STUDY)
    shutil.rmtree(tmp_path / "mlruns")  # a fresh clone: no store

    from_exports = load_runs(metrics, STUDY)
    pd.testing.assert_frame_equal(from_exports, from_store)

    monkeypatch.chdir(REPO)
    # A new folder: MLflow keeps the deleted database open in this process (a fresh clone's process would not).
    monkeypatch.setenv(tracking.ENV_STORE, str(tmp_path / "fresh-mlruns"))
    result = CliRunner().invoke(app, ["tracking", "import", *map(str, sorted((metrics / "mlflow").glob("*.json")))])
    assert result.exit_code == 0, result.output
    assert "imported 2 runs" in result.output
    client = mlflow.MlflowClient(tracking.tracking_uri())
    experiment = client.get_experiment_by_name(tracking.EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.tags[tracking.SOURCE_TAG] for r in runs) == sorted(ids)
    for run in runs:
        export = tracking.read_run_export(metrics / "mlflow" / f"{run.data.tags['cell']}.json")
        assert run.info.status == "FINISHED" and run.info.run_name == export["run_name"]
        assert run.data.params == export["params"]
        assert history(client, run.info.run_id, "val_score") == [(s, v) for s, _, v in export["metrics"]["val_score"]]
        assert (run.info.start_time, run.info.end_time) == (export["start_time"], export["end_time"])

    pd.testing.assert_frame_equal(load_runs(metrics, STUDY), from_store)  # now read from the imported runs
    again = CliRunner().invoke(app, ["tracking", "import", *map(str, sorted((metrics / "mlflow").glob("*.json")))])
    assert "imported 0 runs" in again.output and len(client.search_runs([experiment.experiment_id])) == 2


def test_a_run_neither_in_the_store_nor_exported_is_a_user_error(logged, tmp_path):
    metrics, ids = logged
    (metrics / "mlflow" / f"{CELLS[1]}.json").unlink()
    shutil.rmtree(tmp_path / "mlruns")
    with pytest.raises(UserError, match=f"no MLflow store answers .*names run {ids[1]} with no export"):
        load_runs(metrics, STUDY)
    (metrics / "mlflow" / f"{CELLS[1]}.json").write_text("{}")
    with pytest.raises(UserError, match="not an MLflow run export"):
        load_runs(metrics, STUDY)


def test_a_metrics_file_naming_a_server_that_is_gone_is_read_from_its_export(logged, tmp_path, monkeypatch):
    """A run logged to an MLflow server says so in its metrics file; the report asks that server, and when it does
    not answer reads the export (quickly: MLflow's client would retry for minutes)."""
    import socket
    import time

    metrics, ids = logged
    expected = load_runs(metrics, STUDY)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        gone = f"http://127.0.0.1:{s.getsockname()[1]}"
    for name in CELLS:
        path = metrics / f"{name}.json"
        path.write_text(json.dumps(json.loads(path.read_text()) | {"mlflow_tracking_uri": gone}))
    started = time.monotonic()
    pd.testing.assert_frame_equal(load_runs(metrics, STUDY), expected)
    assert time.monotonic() - started < 30

    monkeypatch.setenv(tracking.ENV_SERVER, gone)
    assert tracking.tracking_uri() == gone and tracking.store_record() == {"mlflow_tracking_uri": gone}
    monkeypatch.setenv(tracking.ENV_SERVER, "sqlite:///elsewhere.db")  # not a server: the local store stays
    assert tracking.tracking_uri() == tracking.local_uri() and tracking.store_record() == {}


# --- the tracking server: refused before it starts, and a death is an error --------------------------------------


def _listening_socket():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


def test_a_busy_port_is_refused_before_the_server_starts(tmp_path):
    import subprocess
    import sys

    with _listening_socket() as busy:
        port = busy.getsockname()[1]
        with pytest.raises(UserError, match=f"cannot listen on 127.0.0.1:{port} .*another --port"):
            tracking.check_port_free("127.0.0.1", port)
        env = {**os.environ, "PYTHONPATH": str(REPO), tracking.ENV_STORE: str(tmp_path / "mlruns")}
        serve = [sys.executable, "-m", "src", "tracking", "serve", "--port", str(port)]
        result = subprocess.run(serve, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: cannot listen on")
    tracking.check_port_free("127.0.0.1", port)  # free again


def test_an_artifacts_path_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "artifacts").write_text("not a folder")
    with pytest.raises(UserError, match="--artifacts .*artifacts is a file"):
        tracking.server_command(None, tmp_path / "artifacts", "127.0.0.1", 5000)
    assert "--artifacts-destination" in tracking.server_command(None, tmp_path / "new", "127.0.0.1", 5000)


def test_a_server_that_ends_by_itself_is_an_error_and_a_stopped_one_is_not():
    import signal
    import sys
    import threading

    with pytest.raises(UserError, match=r"stopped by itself \(exit code 0\)"):
        tracking.run_server([sys.executable, "-c", "pass"])
    stop = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM))  # as `kill` or SLURM would
    stop.start()
    tracking.run_server([sys.executable, "-c", "import time; time.sleep(60)"])  # returns: stopped on request
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_client_of_a_server_that_is_down_is_one_quick_error(tmp_path, monkeypatch):
    import time

    with _listening_socket() as s:
        port = s.getsockname()[1]  # closed below: nothing listens there afterwards
    monkeypatch.setenv(tracking.ENV_SERVER, f"http://127.0.0.1:{port}")
    started = time.monotonic()
    for call in (tracking.mlflow_client, tracking.ensure_store, lambda: tracking.import_runs([tmp_path / "x.json"])):
        with pytest.raises(UserError, match=f"MLflow server http://127.0.0.1:{port} does not answer at /health"):
            call()
    assert time.monotonic() - started < 10
    assert tracking.fail_run_if_running("0" * 32) is False  # best effort: left alone
