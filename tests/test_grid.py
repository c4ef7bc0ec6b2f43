"""`python -m src grid`: tiny cells run as local processes and as real SLURM jobs logging to an MLflow server on
PostgreSQL; one job is killed mid-run and must be resumed, not restarted; finished cells land in dvc.lock.

The SLURM test needs a SLURM controller and node and a PostgreSQL server on this machine (`.ci/start-slurm` and
`.ci/start-postgres`, which `.ci/run` runs); where they do not answer it skips and says which."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import mlflow
import psutil
import pytest
import torch
import yaml

from src import grid_dvc, grid_jobs, grid_state
from src.errors import UserError
from tests.conftest import unavailable
from tests.test_pipeline import _fresh_copy
from tests.test_train import tiny_params

REPO = Path(__file__).resolve().parents[1]

POSTGRES = os.environ.get("CRYOET_TEST_POSTGRES", "postgresql://mlflow:mlflow@127.0.0.1:5432/postgres")


@pytest.fixture(scope="module")
def grid_repo(tmp_path_factory) -> Path:
    """A fresh copy of the repository with tiny params (4 epochs of 3 steps), its data and split made by DVC; no
    committed cell outputs, so the cells here are all there is."""
    repo = _fresh_copy(tmp_path_factory.mktemp("grid") / "repo")
    shutil.rmtree(repo / "metrics", ignore_errors=True)
    raw = tiny_params(yaml.safe_load((repo / "params.yaml").read_text()), epochs=4)
    raw["grid"].update(poll_seconds=0.5, retries=1)
    (repo / "params.yaml").write_text(yaml.safe_dump(raw))
    done = subprocess.run(["dvc", "repro", "split"], cwd=repo, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return repo


def _copy(repo: Path, dest: Path) -> Path:
    shutil.copytree(repo, dest, symlinks=True)
    return dest


def _start_grid(repo: Path, env: dict, *args: str, own_group: bool = False) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "src", "grid", "run", *args],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=own_group,  # a process group of its own, as a shell gives a command (Ctrl-C signals it all)
        # and, as that shell does, Ctrl-C's default action: a suite started in the background (`pytest &`, nohup)
        # inherits SIGINT ignored, and an ignored signal stays ignored across exec
        preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)) if own_group else None,
    )


def _wait_for_epoch(repo: Path, cell: str, driver: subprocess.Popen, timeout: float = 240) -> None:
    """Until the cell has saved its first finished epoch (so that there is something to resume)."""
    last = repo / "models" / f".{cell}.partial" / "last.pt"
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert driver.poll() is None, driver.communicate()[0]
        try:
            if last.exists() and torch.load(last, weights_only=False)["state"]["epoch"] >= 1:
                return
        except (EOFError, RuntimeError, KeyError):  # caught mid-write by the atomic rename's other side
            pass
        time.sleep(0.2)
    raise AssertionError(f"{cell} saved no epoch in {timeout} s")


def _train_process(job: dict) -> psutil.Process:
    """The `python -m src train` process of a local job (under submitit's controller, whose pid is the job id)."""
    for proc in psutil.Process(int(job["job_id"])).children(recursive=True):
        if "train" in proc.cmdline() and "bash" not in proc.cmdline()[0]:
            return proc
    raise AssertionError(f"job {job['job_id']} runs no train process")


def _job(repo: Path, cell: str) -> dict:
    """The grid.json entry of a cell, by the name messages give it (entries are keyed by DVC stage)."""
    entries = json.loads((repo / "logs" / "grid" / "grid.json").read_text())["cells"]
    found = [entry for stage, entry in entries.items() if entry["cell"] == cell and entry["stage"] == stage]
    assert len(found) == 1, entries.keys()
    return found[0]


def _check_cells(repo: Path, client, cells: list[str], killed: str, epochs: int = 4) -> None:
    """Every cell FINISHED exactly once in the store; the killed one continued its run from a saved epoch; each
    logged every epoch exactly once; dvc.lock has them all."""
    experiment = client.get_experiment_by_name("attention-unet-cryoet")
    runs = client.search_runs([experiment.experiment_id])
    for cell in cells:
        mine = [r for r in runs if r.data.tags.get("cell") == cell]
        assert [r.info.status for r in mine] == ["FINISHED"], (cell, [r.info.status for r in mine])
        record = json.loads((repo / "metrics" / f"{cell}.json").read_text())
        assert record["mlflow_run_id"] == mine[0].info.run_id
        steps = sorted({m.step for m in client.get_metric_history(mine[0].info.run_id, "train_loss")})
        assert steps == list(range(1, epochs + 1))
        if cell == killed:
            assert record["resumed_from_epochs"] and record["resumed_from_epochs"][0] >= 1, record
            assert mine[0].data.tags["resumed_from_epochs"] == ",".join(map(str, record["resumed_from_epochs"]))
            assert _job(repo, cell)["attempts"] == 2
        else:
            assert record["resumed_from_epochs"] == [] and _job(repo, cell)["attempts"] == 1
    stages = [f"train@{c.removesuffix('-r0')}-0" for c in cells]
    status = subprocess.run(["dvc", "status", *stages], cwd=repo, capture_output=True, text=True)
    assert status.returncode == 0 and "up to date" in status.stdout, status.stdout + status.stderr


def test_local_grid_two_at_a_time_resumes_a_killed_cell(grid_repo, tmp_path):
    repo = _copy(grid_repo, tmp_path / "repo")
    store = tmp_path / "mlruns"
    env = {**os.environ, "CRYOET_MLRUNS": str(store)}
    env.pop("MLFLOW_TRACKING_URI", None)
    cells, killed = ["unet-c16-p64-s1-r0", "unet_ag-c16-p64-s1-r0"], "unet_ag-c16-p64-s1-r0"
    driver = _start_grid(repo, env, "--executor", "local", "--jobs", "2", *cells)
    _wait_for_epoch(repo, killed, driver)
    job = _job(repo, killed)
    assert job["executor"] == "local" and job["state"] in ("queued", "running")
    _train_process(job).kill()  # uncatchable: its MLflow run is left RUNNING
    out, _ = driver.communicate(timeout=400)
    assert driver.returncode == 0, out
    assert "failed" in out and "resubmitting to resume it" in out
    _check_cells(repo, mlflow.MlflowClient(f"sqlite:///{store / 'mlflow.db'}"), cells, killed)

    status = subprocess.run(
        [sys.executable, "-m", "src", "grid", "status", *cells, "unet_se-c16-p64-s1-r0"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
    )
    assert status.returncode == 0, status.stderr
    lines = {line.split()[0]: line.split()[1:] for line in status.stdout.splitlines()[1:-1]}
    assert lines["unet-c16-p64-s1-r0"][:2] == ["done", "1"] and lines[killed][:2] == ["done", "2"]
    assert lines["unet_se-c16-p64-s1-r0"][:2] == ["not", "started"]
    again = _start_grid(repo, env, "--executor", "local", *cells)  # recorded cells are not run again
    out, _ = again.communicate(timeout=120)
    assert again.returncode == 0 and out.count("already recorded in dvc.lock") == 2, out


def test_a_cell_that_keeps_failing_is_reported_and_the_others_go_on(grid_repo, tmp_path):
    repo = _copy(grid_repo, tmp_path / "repo")
    env = {**os.environ, "CRYOET_MLRUNS": str(tmp_path / "mlruns")}
    env.pop("MLFLOW_TRACKING_URI", None)
    # unet_se's stage fails every time, for a real reason: its model folder holds a file this program did not make
    # (params that cannot run are refused before any job starts).
    foreign = repo / "models" / "unet_se-c16-p64-s2-r0"
    foreign.mkdir(parents=True, exist_ok=True)
    (foreign / "mine.txt").write_text("not made by the training stage\n")
    driver = _start_grid(repo, env, "--jobs", "2", "unet-c16-p64-s2-r0", "unet_se-c16-p64-s2-r0")
    out, _ = driver.communicate(timeout=400)
    assert driver.returncode == 1, out
    job = _job(repo, "unet_se-c16-p64-s2-r0")
    assert job["state"] == "failed" and job["attempts"] == 2 and len(job["logs"]) == 2
    assert f"last log {job['log']}" in out and "error" in Path(job["log"]).read_text().lower()
    assert job["logs"][0] != job["logs"][1] and "--resume" in out.split("attempt 2")[1].splitlines()[0]
    assert _job(repo, "unet-c16-p64-s2-r0")["state"] == "done"


def test_local_slots_each_see_one_gpu_and_compute_with_the_repro_threads(tmp_path, monkeypatch):
    from submitit.helpers import as_completed

    from src.params import GridParams

    grid = GridParams(retries=0, poll_seconds=0.1, log_dir="logs")
    run = grid_jobs.GridRun(tmp_path, grid, "local", slots=3, gpus=2)
    jobs = [  # each in DVC's environment of a stage command too (train refuses to replace a cell outside a stage)
        grid_state.CellJob(n, f"train@{n}", 'echo "gpu=$CUDA_VISIBLE_DEVICES $DVC_STAGE $DVC_ROOT"; sleep 1', slot=i)
        for i, n in enumerate("abc")
    ]
    list(as_completed([grid_jobs.submit(run, job) for job in jobs], poll_frequency=0.1))
    seen = [[x for x in Path(j.log).read_text().splitlines() if x.startswith("gpu=")] for j in jobs]
    assert seen == [[f"gpu={gpu} train@{n} {tmp_path}"] for gpu, n in zip((0, 1, 0), "abc", strict=True)]
    # On a CPU a slot's cell computes with repro.cpu_threads threads, whatever the slots and the outer environment.
    (tmp_path / "params.yaml").write_text("repro: {cpu_threads: 3, cpu_isa: avx2}\n")
    probe = "from src import repro; repro.apply(); import torch; repro.pin_threads(); print(torch.get_num_threads())"
    job = grid_state.CellJob("d", "train@d", f'{sys.executable} -c "{probe}"')
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    grid_jobs.submit(grid_jobs.GridRun(tmp_path, grid, "local", slots=2), job).result()
    assert "3" in Path(job.log).read_text().splitlines()
    assert grid_jobs.cpu_slots(3) == max(1, (os.cpu_count() or 1) // 3) and grid_jobs.cpu_slots(0) == 1


def test_the_grid_state_reads_back_by_stage_and_refuses_what_the_driver_did_not_write(tmp_path):
    """grid.json round trip; a file of the layout before rerun cells (keyed by run name) reads by stage; a bad value
    is a DataError naming the file and the field (tests/faults/test_grid_state.py: the whole table, through the CLI)."""
    from src.errors import DataError

    grid, rerun = grid_state.CellJob(ORPHAN, "train@unet-c16-p64-s1-0"), grid_state.CellJob(f"{ORPHAN}-t1", "rerun@x-0")
    grid.fingerprint, rerun.job_id, rerun.logs, rerun.started = [["a", '"b"']], "17_2", ["a.log"], 1.5
    grid_state.write_state(tmp_path, {j.stage: j for j in (grid, rerun)})
    assert grid_state.read_state(tmp_path) == {grid.stage: grid, rerun.stage: rerun}
    raw = json.loads((tmp_path / "grid.json").read_text())
    (tmp_path / "grid.json").write_text(json.dumps({"cells": {ORPHAN: raw["cells"][grid.stage]}}))
    assert grid_state.read_state(tmp_path) == {grid.stage: grid}
    raw["cells"][grid.stage]["state"] = "zombie"
    (tmp_path / "grid.json").write_text(json.dumps(raw))
    with pytest.raises(DataError, match=r"grid.json: field 'cells.train@unet-c16-p64-s1-0.state' is \"zombie\""):
        grid_state.read_state(tmp_path)
    assert grid_state.read_state(tmp_path / "nothing") == {}


def test_a_finished_cell_is_recorded_only_as_it_was_submitted(grid_repo, tmp_path, monkeypatch):
    """The driver's `dvc commit`: refused when the stage changed since submission; a DVC failure (here: the job's
    outputs are not there) is that cell's, said in its status, not the end of the grid."""
    from src.params import load_params
    from src.study import Study

    repo = _copy(grid_repo, tmp_path / "repo")
    monkeypatch.chdir(repo)  # as the command line runs it: DVC resolves dvc.yaml's params from the working folder
    cell = Study.from_params(load_params(repo / "params.yaml")).parse("unet-c16-p64-s1-r0")
    stage = grid_dvc.survey(repo, [cell], planning=True)[cell.stage]
    job = grid_state.CellJob(cell.run_name, cell.stage, stage.command, stage.fingerprint)
    assert grid_dvc.commit_stage(repo, job) == grid_state.STALE and "dvc commit" in job.message
    raw = yaml.safe_load((repo / "params.yaml").read_text())
    raw["train"]["lr"] *= 2  # a param the stage reads changes while the cell "runs"
    (repo / "params.yaml").write_text(yaml.safe_dump(raw))
    job.message = ""
    assert grid_dvc.commit_stage(repo, job) == grid_state.STALE and "changed while it ran" in job.message


def test_grid_refuses_bad_requests_in_one_sentence(grid_repo, tmp_path):
    assert grid_jobs.wall_minutes("1-02:30") == 1590
    for bad in ("12", "ab:cd", "00:00"):
        with pytest.raises(UserError):
            grid_jobs.wall_minutes(bad)
    done = subprocess.run(
        [sys.executable, "-m", "src", "grid", "run", "--executor", "kubernetes", "unet-c16-p64-s1-r0"],
        cwd=grid_repo,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and done.stderr.startswith("error: executor 'kubernetes' is not one of"), done.stderr
    stale = _copy(grid_repo, tmp_path / "stale")
    raw = yaml.safe_load((stale / "params.yaml").read_text())
    raw["split"]["seed"] += 1  # the split is now out of date: the grid must not train on the old one
    (stale / "params.yaml").write_text(yaml.safe_dump(raw))
    done = subprocess.run(
        [sys.executable, "-m", "src", "grid", "run", "unet-c16-p64-s1-r0"], cwd=stale, capture_output=True, text=True
    )
    assert done.returncode == 2 and "stage split is not up to date: run `dvc repro split` first" in done.stderr


# --- the driver's own death, reused pids, devices, one writer per cell ---------------------------------------------


def _local_env(store: Path) -> dict:
    env = {**os.environ, "CRYOET_MLRUNS": str(store)}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _runs_of(store: Path, cell: str) -> list:
    client = mlflow.MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("attention-unet-cryoet")
    return [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("cell") == cell]


def _grid(repo: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "src", "grid", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=900
    )


def _status(repo: Path, env: dict, cell: str) -> str:
    done = _grid(repo, env, "status", cell)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()[1].split("  ")[1].strip()  # cell, state, tries, job, log: two-space columns


ORPHAN = "unet-c16-p64-s1-r0"


@pytest.fixture(scope="module")
def orphaned(grid_repo, tmp_path_factory):
    """`kill -9` of the driver mid-cell, its job left to finish, then `grid run` again: (repo, env, rerun's output)."""
    repo = _copy(grid_repo, tmp_path_factory.mktemp("orphan") / "repo")
    env = _local_env(repo.parent / "mlruns")
    driver = _start_grid(repo, env, ORPHAN)
    _wait_for_epoch(repo, ORPHAN, driver)
    job = _job(repo, ORPHAN)
    driver.kill()  # SIGKILL: no handler runs, grid.json still says running
    driver.wait()
    assert _job(repo, ORPHAN)["state"] == "running"
    psutil.Process(int(job["job_id"])).wait(timeout=600)  # the orphan finishes on its own
    again = _grid(repo, env, "run", ORPHAN)
    assert again.returncode == 0, again.stdout + again.stderr
    return repo, env, again.stdout


def test_a_rerun_cell_is_a_stage_of_its_own_beside_its_grid_cell(grid_repo, orphaned, tmp_path):
    """The rerun block's cell of the same run name as a grid cell: its own outputs (models/reruns, metrics/reruns),
    its own entry in grid.json and dvc.lock, its own log folder; the grid cell is left as it was."""
    repo = _copy(orphaned[0], tmp_path / "repo")
    rerun = f"{ORPHAN}-t1"  # the rerun block's name for it (tiny params: train.reruns.threads 1)
    grid_metrics = (repo / "metrics" / f"{ORPHAN}.json").read_bytes()
    done = _grid(repo, _local_env(tmp_path / "mlruns"), "run", ORPHAN, "rerun@unet-c16-p64-s1-0")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{ORPHAN}: already recorded in dvc.lock" in done.stdout, done.stdout
    assert f"{rerun}: submitted attempt 1" in done.stdout and f"{rerun}: finished, recorded" in done.stdout
    assert "python -m src train --rerun --model unet --channels c16 --patch p64 --sample s1 --seed 0" in done.stdout
    record = json.loads((repo / "metrics" / "reruns" / f"{ORPHAN}.json").read_text())
    assert record["rerun_threads"] == 1 and (repo / "models" / "reruns" / ORPHAN / "model.pt").exists()
    assert (repo / "metrics" / f"{ORPHAN}.json").read_bytes() == grid_metrics
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert f"models/reruns/{ORPHAN}" in [o["path"] for o in lock["rerun@unet-c16-p64-s1-0"]["outs"]]
    assert f"models/{ORPHAN}" in [o["path"] for o in lock["train@unet-c16-p64-s1-0"]["outs"]]
    grid_job, rerun_job = _job(repo, ORPHAN), _job(repo, rerun)
    assert (grid_job["stage"], rerun_job["stage"]) == ("train@unet-c16-p64-s1-0", "rerun@unet-c16-p64-s1-0")
    assert Path(rerun_job["log"]).parent.parent.name == rerun and rerun_job["state"] == "done"
    status = _grid(repo, _local_env(tmp_path / "mlruns"), "status", ORPHAN, rerun)
    rows = [re.split(r"\s{2,}", line)[:2] for line in status.stdout.splitlines()[1:-1]]  # two-space columns
    assert rows == [[ORPHAN, "done"], [rerun, "done"]], status.stdout


def test_the_whole_grid_is_every_training_stage_of_dvc_yaml():
    """`grid run` without names runs what `dvc repro` trains: train@, replicate@ and rerun@ stages; a name selects by
    cell, rerun cell, stage or configuration."""
    from dvc.repo import Repo

    from src.params import load_params
    from src.study import Study

    study = Study.from_params(load_params(REPO / "params.yaml"))
    with Repo(str(REPO)) as repo:
        stages = sorted(
            s.addressing for s in repo.index.stages if s.addressing.startswith(("train@", "replicate@", "rerun@"))
        )
    every = grid_dvc.cells_named(study, [])
    assert sorted(c.stage for c in every) == stages and {s.split("@")[0] for s in stages} == {
        "train",
        "replicate",
        "rerun",
    }
    assert len({c.mlflow_name for c in every}) == len(every)  # log folders and messages name each stage apart
    named = grid_dvc.cells_named(study, ["unet-c16-p64-s1-r0-t1", "rerun@unet-c16-p64-s1-0", "unet-c16-p64-s1-r0"])
    assert [c.stage for c in named] == ["rerun@unet-c16-p64-s1-0", "train@unet-c16-p64-s1-0"]
    configuration = [c.stage for c in grid_dvc.cells_named(study, ["unet_se-c16-p64-s1"])]
    assert sorted(configuration) == [s for s in stages if s.split("@")[1].rsplit("-", 1)[0] == "unet_se-c16-p64-s1"]
    with pytest.raises(UserError, match="not one of the study's models"):
        grid_dvc.cells_named(study, ["vnet-c16-p64-s1"])


def test_a_killed_drivers_job_that_finished_is_recorded_not_retrained(orphaned):
    repo, env, out = orphaned
    assert f"re-attached to job {_job(repo, ORPHAN)['job_id']}" in out and "finished, recorded in dvc.lock" in out
    assert "submitted" not in out and _job(repo, ORPHAN)["attempts"] == 1, out
    assert [r.info.status for r in _runs_of(Path(env["CRYOET_MLRUNS"]), ORPHAN)] == ["FINISHED"]
    # `grid status` says done only while dvc.lock and the model folder agree.
    assert _status(repo, env, ORPHAN) == "done"
    shutil.rmtree(repo / "models" / ORPHAN)
    assert _status(repo, env, ORPHAN) == "changed since recorded"


def test_a_second_train_of_a_cell_refuses_while_the_first_finishes(grid_repo, orphaned, tmp_path):
    """One writer per cell; and the cell trained directly is the cell the grid trained (same weights, same score)."""
    repo = _copy(grid_repo, tmp_path / "repo")
    store = tmp_path / "mlruns"
    # by hand, so --force: the grid recorded the cell in dvc.lock (and the fresh copy's committed study names it too)
    command = [sys.executable, "-m", "src", "train", "--cell", ORPHAN, "--force"]
    first = subprocess.Popen(command, cwd=repo, env=_local_env(store), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lock = repo / "models" / f".{ORPHAN}.lock"
    deadline = time.time() + 240
    while not (lock.exists() and lock.read_text().startswith("pid ")):
        assert first.poll() is None and time.time() < deadline, first.communicate()
        time.sleep(0.2)
    second = subprocess.run(command, cwd=repo, env=_local_env(store), capture_output=True, text=True, timeout=300)
    assert second.returncode != 0 and f"cell {ORPHAN} is being trained by pid {first.pid} on" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1, second.stderr
    out, err = first.communicate(timeout=900)
    assert first.returncode == 0, err[-3000:]
    assert [r.info.status for r in _runs_of(store, ORPHAN)] == ["FINISHED"]
    direct = json.loads((repo / "metrics" / f"{ORPHAN}.json").read_text())
    gridded = json.loads((orphaned[0] / "metrics" / f"{ORPHAN}.json").read_text())
    assert (direct["weights_sha256"], direct["test_score"]) == (gridded["weights_sha256"], gridded["test_score"])


@pytest.mark.parametrize("stop", ["kill -TERM of the driver", "Ctrl-C"])
def test_a_stopped_driver_stops_and_records_its_cells_and_the_rerun_resumes_them(grid_repo, tmp_path, stop):
    repo = _copy(grid_repo, tmp_path / "repo")
    store, cell = tmp_path / "mlruns", "unet-c16-p64-s2-r0"
    env = _local_env(store)
    driver = _start_grid(repo, env, cell, own_group=True)
    _wait_for_epoch(repo, cell, driver)
    job = _job(repo, cell)
    train = _train_process(job)
    if stop == "Ctrl-C":  # a terminal's SIGINT reaches the driver, submitit's controller and train alike
        os.killpg(driver.pid, signal.SIGINT)
    else:
        driver.send_signal(signal.SIGTERM)
    out, _ = driver.communicate(timeout=120)
    assert driver.returncode != 0 and "interrupted: stopping the local cells" in out, out
    assert _job(repo, cell)["state"] == "interrupted" and not psutil.pid_exists(train.pid)
    assert not psutil.pid_exists(int(job["job_id"])) or psutil.Process(int(job["job_id"])).status() == "zombie"
    assert [r.info.status for r in _runs_of(store, cell)] == ["FAILED"] or stop == "Ctrl-C"  # SIGTERM: train's handler
    first_log = Path(job["log"]).read_text()
    again = _grid(repo, env, "run", cell)
    assert again.returncode == 0 and "submitted attempt 2" in again.stdout and "--resume" in again.stdout, again.stdout
    record = json.loads((repo / "metrics" / f"{cell}.json").read_text())
    assert record["resumed_from_epochs"] and record["resumed_from_epochs"][0] >= 1, record
    assert [r.info.status for r in _runs_of(store, cell)] == ["FINISHED"]  # the interrupted run, continued
    ended = _job(repo, cell)
    assert ended["attempts"] == 2 and len(ended["logs"]) == 2 and ended["logs"][0] == job["log"] != ended["log"]
    assert Path(job["log"]).read_text() == first_log  # one log per attempt: the first is kept as it was


def test_a_reused_pid_is_not_taken_for_a_job(grid_repo, tmp_path):
    """grid.json naming a live but unrelated process (its pid reused): the driver neither waits on it nor stops it."""
    stranger = subprocess.Popen(["sleep", "120"])
    try:
        born = psutil.Process(stranger.pid).create_time()
        job = grid_state.CellJob(ORPHAN, "train@unet-c16-p64-s1-0", executor="local", job_id=str(stranger.pid))
        job.folder, job.started, job.state = str(tmp_path), born - 3600, "running"  # our job started an hour before
        assert grid_jobs.attach(job).done() and grid_jobs.stop_local(job) and stranger.poll() is None
        repo = _copy(grid_repo, tmp_path / "repo")
        grid_state.write_state(repo / "logs" / "grid", {job.stage: job})
        assert _status(repo, _local_env(tmp_path / "mlruns"), ORPHAN) == "ended (driver not running)"
        job.started = born  # the process it names after all: alive, not done
        assert not grid_jobs.attach(job).done()
    finally:
        stranger.kill()
        stranger.wait()


@pytest.mark.skipif(torch.cuda.device_count() >= 2, reason="this machine has 2 GPUs")
def test_more_gpus_than_the_machine_has_is_refused_in_one_sentence(grid_repo):
    done = _grid(grid_repo, _local_env(grid_repo / "unused"), "run", "--gpus", "2", ORPHAN)
    expected = f"error: --gpus 2 asks for more GPUs than this machine has ({torch.cuda.device_count()})"
    assert done.returncode == 2 and done.stderr.startswith(expected) and done.stderr.count("\n") == 1, done.stderr
    assert not (grid_repo / "logs").exists()


# --- SLURM and an MLflow server on PostgreSQL -------------------------------------------------------------------------


def _slurm_problem() -> str | None:
    if shutil.which("sinfo") is None:
        return "no SLURM client (sinfo) on this machine: run .ci/start-slurm"
    up = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    if up.returncode != 0 or not {"idle", "mixed", "allocated"} & set(up.stdout.split()):
        return f"SLURM has no node up ({(up.stdout + up.stderr).strip()[:200]}): run .ci/start-slurm"
    return None


def _postgres_database() -> str:
    """A new, empty database on the test PostgreSQL server; its URL. Skips (under CI=true: fails) if it is down."""
    try:
        import psycopg

        with psycopg.connect(POSTGRES, autocommit=True, connect_timeout=3) as conn:
            name = f"mlflow_{uuid.uuid4().hex[:12]}"
            conn.execute(f"CREATE DATABASE {name}")
    except Exception as err:  # psycopg's errors, or none installed
        unavailable(f"PostgreSQL does not answer at {POSTGRES} ({type(err).__name__}): run .ci/start-postgres")
    return POSTGRES.rsplit("/", 1)[0] + "/" + name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    """`python -m src tracking serve` on a fresh PostgreSQL database; its URL."""
    problem = _slurm_problem()
    if problem:
        unavailable(problem)
    database, port = _postgres_database(), _free_port()
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "src", "tracking", "serve", "--backend-store-uri", database, "--port", str(port)]
        + ["--artifacts", str(tmp_path / "artifacts")],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while not grid_module_answers(url):
        assert server.poll() is None and time.time() < deadline, (tmp_path / "server.log").read_text()[-3000:]
        time.sleep(0.5)
    yield url
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=30)


def grid_module_answers(url: str) -> bool:
    from src.tracking import server_answers

    return server_answers(url, timeout=1)


def test_slurm_grid_on_an_mlflow_server_with_postgresql_resumes_a_cancelled_job(
    grid_repo, tmp_path, mlflow_server, monkeypatch
):
    repo = _copy(grid_repo, tmp_path / "repo")
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server, "CRYOET_MLRUNS": str(tmp_path / "unused")}
    cells = ["unet-c16-p64-s2-r0", "unet_ag-c16-p64-s2-r0", "unet_cbam-c16-p64-s2-r0"]
    killed = "unet_ag-c16-p64-s2-r0"
    started = time.time()
    driver = _start_grid(
        repo,
        env,
        "--executor",
        "slurm",
        "--gpus",
        "0",
        "--cpus-per-task",
        "1",
        "--mem",
        "3G",
        "--time",
        "00:15",
        *cells,
    )
    _wait_for_epoch(repo, killed, driver)
    job_id = _job(repo, killed)["job_id"]
    subprocess.run(["scancel", job_id], check=True)  # SLURM's SIGTERM, then SIGKILL after KillWait
    out, _ = driver.communicate(timeout=600)
    print(f"SLURM grid of {len(cells)} tiny cells, one cancelled and resumed: {time.time() - started:.0f} s")
    assert driver.returncode == 0, out
    assert f"job {job_id} failed" in out and "resubmitting to resume it" in out
    assert _job(repo, killed)["job_id"] != job_id
    client = mlflow.MlflowClient(mlflow_server)
    _check_cells(repo, client, cells, killed)
    assert not (tmp_path / "unused").exists()  # nothing went to a local store

    # The report reads each run from the server its metrics file names.
    from src.params import load_params
    from src.report.runs import load_runs
    from src.study import Study

    monkeypatch.chdir(repo)
    shutil.rmtree(repo / "metrics" / "mlflow")  # no exports to fall back on: the values must come from the server
    records = {c: json.loads((repo / "metrics" / f"{c}.json").read_text()) for c in cells}
    assert {r["mlflow_tracking_uri"] for r in records.values()} == {mlflow_server}
    frame = load_runs(repo / "metrics", Study.from_params(load_params(repo / "params.yaml")))
    assert sorted(frame["run_id"]) == sorted(r["mlflow_run_id"] for r in records.values())
    for _, row in frame.iterrows():
        assert row["fbeta"] == pytest.approx(records[row["run_cell"]]["test_score"])
