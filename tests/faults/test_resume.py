"""Fault table of `train --resume` (issue 15, item 5), through the real CLI in subprocesses.

One tiny workspace (data and split of tiny params, one epoch) is trained until its first `last.pt` exists and then
killed with SIGKILL, so that its MLflow run stays RUNNING. Each case works on a copy of that state: a damaged or
changed `last.pt` is refused in one sentence naming it (or the param that changed), a good one resumes the same run
to FINISHED; a cell started over marks the abandoned run FAILED; `--resume` with nothing to resume says so.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import torch
import yaml

from tests.conftest import REPO
from tests.faults._outputs_helpers import Case, assert_outcome, cli_env, run_cli, run_table
from tests.test_train import tiny_params

CELL = "unet_se-c16-p64-s1-r0"
PARTIAL = Path("models") / f".{CELL}.partial"
LAST = PARTIAL / "last.pt"
TRAIN = ["train", "--cell", CELL]
KILLED: list[Path] = []  # the killed workspace, filled by the `outcomes` fixture


def _runs(ws: Path) -> dict[str, str]:
    """{run id: status} in the workspace's own store."""
    client = mlflow.MlflowClient(f"sqlite:///{ws / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("attention-unet-cryoet")
    return {r.info.run_id: r.info.status for r in client.search_runs([experiment.experiment_id])}


def _train(ws: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "src", *TRAIN, *extra],
        cwd=ws,
        env=cli_env(ws / "mlruns"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(proc: subprocess.Popen, ready, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and not ready():
        time.sleep(0.2)
    assert proc.poll() is None and ready(), proc.communicate()


def _last_ready(ws: Path):
    return lambda: (ws / LAST).exists()


# --- case folders: a copy of the killed workspace, then one fault ------------------------------------------------


def copy_workspace(source: Path, target: Path) -> None:
    """A copy of a workspace whose MLflow store is moved with it: MLflow records the artifact folder as an absolute
    path, and the CLI refuses a store that keeps its artifacts outside itself (a copied one), so the copy's paths are
    rewritten in its database, as `mv` of a whole project would need too."""
    shutil.copytree(source, target, dirs_exist_ok=True, symlinks=True)
    db = target / "mlruns" / "mlflow.db"
    if not db.exists():
        return
    old, new = (source / "mlruns").as_uri(), (target / "mlruns").as_uri()
    with contextlib.closing(sqlite3.connect(db)) as con, con:
        con.execute("UPDATE experiments SET artifact_location = replace(artifact_location, ?, ?)", (old, new))
        con.execute("UPDATE runs SET artifact_uri = replace(artifact_uri, ?, ?)", (old, new))


def killed(*steps):
    def setup(d: Path) -> None:
        copy_workspace(KILLED[0], d)
        for step in steps:
            step(d)

    return setup


def truncate(d: Path) -> None:
    data = (d / LAST).read_bytes()
    (d / LAST).write_bytes(data[: len(data) // 2])


def change_param(section: str, key: str, value):
    def step(d: Path) -> None:
        raw = yaml.safe_load((d / "params.yaml").read_text())
        target = raw
        for part in section.split("."):
            target = target[part]
        target[key] = value
        (d / "params.yaml").write_text(yaml.safe_dump(raw))

    return step


def resave(change):
    def step(d: Path) -> None:
        saved = torch.load(d / LAST, weights_only=True)
        change(saved)
        torch.save(saved, d / LAST)

    return step


def foreign_model_folder(d: Path) -> None:
    (d / "models" / CELL).mkdir(parents=True)
    (d / "models" / CELL / "keep.txt").write_text("not made by the program\n")


def resumed_same_run(d: Path, result) -> None:
    assert (d / "models" / CELL / "model.pt").is_file() and not (d / PARTIAL).exists()
    assert list(_runs(d).values()) == ["FINISHED"]  # the killed run, continued
    torch.load(d / "models" / CELL / "model.pt", weights_only=True)


CASES = [
    Case("resume-truncated-last-pt", [*TRAIN, "--resume"], killed(truncate), names=("last.pt", "truncated")),
    Case("resume-params-changed", [*TRAIN, "--resume"], killed(change_param("train", "lr", 0.002)),
         names=("lr changed from 0.001 to 0.002", "--resume")),
    Case("resume-model-changed", [*TRAIN, "--resume"], killed(change_param("train.network", "dropout", 0.1)),
         names="network.dropout changed from 0.0 to 0.1"),
    Case("resume-data-changed", [*TRAIN, "--resume"], killed(change_param("masks", "label_radius_fraction", 0.4)),
         names="masks.label_radius_fraction changed"),
    Case("resume-not-plain-data", [*TRAIN, "--resume"],
         killed(resave(lambda s: s.update(extra=__import__("collections").OrderedDict(a=slice(1))))),
         names="last.pt"),
    Case("resume-no-fingerprint", [*TRAIN, "--resume"], killed(resave(lambda s: s.pop("fingerprint"))),
         names=("last.pt", "fingerprint")),
    Case("train-model-folder-not-ours", TRAIN, killed(foreign_model_folder), names=f"models/{CELL}"),
    Case("train-metrics-file-is-folder", TRAIN, killed(lambda d: (d / "metrics" / f"{CELL}.json").mkdir(parents=True)),
         names=f"metrics/{CELL}.json"),
    Case("resume-after-kill-9", [*TRAIN, "--resume"], killed(), rc=0, unchanged=False, after=resumed_same_run),
]  # fmt: skip


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    ws = tmp_path_factory.mktemp("resume") / "ws"
    ws.mkdir()
    raw = tiny_params(yaml.safe_load((REPO / "params.yaml").read_text()), epochs=1)
    (ws / "params.yaml").write_text(yaml.safe_dump(raw))
    for stage in ("data", "split"):
        result = run_cli([stage], ws, ws / "mlruns")
        assert result.returncode == 0, result.stderr[-2000:]
    KILLED.append(ws.parent / "killed")
    shutil.copytree(ws, KILLED[0], symlinks=True)
    proc = _train(KILLED[0])
    _wait_for(proc, _last_ready(KILLED[0]))
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert list(_runs(KILLED[0]).values()) == ["RUNNING"]  # nobody was left to say otherwise
    base = tmp_path_factory.mktemp("cases")
    table = run_table(CASES, base, None, workers=2)
    return ws, table


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_resume_faults(case: Case, outcomes):
    out = outcomes[1][case.id]
    assert_outcome(case, out)
    if case.after is not None:
        case.after(out.folder, out.result)


def test_restart_without_resume_marks_the_abandoned_run_failed(outcomes, tmp_path):
    ws = tmp_path / "ws"
    copy_workspace(KILLED[0], ws)
    (old,) = _runs(ws)
    proc = _train(ws)
    _wait_for(proc, lambda: _runs(ws).get(old) == "FAILED")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert f"MLflow run {old}" in err and "Traceback" not in err
    runs = _runs(ws)
    assert runs[old] == "FAILED" and len(runs) <= 2


def test_resume_with_nothing_to_resume_says_so_and_starts_fresh(outcomes, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(outcomes[0], ws, symlinks=True)
    proc = _train(ws, "--resume")
    _wait_for(proc, _last_ready(ws))  # it started: the first resume state is written
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert "notice: nothing to resume" in err and CELL in err and "Traceback" not in err
