"""The grid beyond `dvc repro`: its cells as submitit jobs, local (one per GPU, or CPU slots) or on SLURM.

A job runs its cell's DVC stage command in the environment DVC gives it, so it computes what `dvc repro` would (the
jobs: src/grid_jobs.py). Which stages are stale and the record of a finished one in dvc.lock are src/grid_dvc.py's;
the driver's state, grid.json, is src/grid_state.py's. It names each job beyond a pid, so a restarted `grid run`
re-attaches to live jobs, collects ended ones and continues failed or stopped cells (`train --resume`).
"""

from __future__ import annotations

import dataclasses
import shutil
import signal
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import submitit
from submitit import helpers

from src import grid_state
from src.errors import UserError
from src.grid_dvc import commit_stage, survey
from src.grid_jobs import GridRun, attach, ended_well, stop_local, submit
from src.grid_state import DETACHED, DONE, GAVE_UP, INTERRUPTED, QUEUED, RUNNING, STALE, CellJob, driver_lock
from src.params import GridParams
from src.study import Cell


def check_request(run: GridRun) -> None:
    """The executor exists and the devices asked for are there, before any job starts."""
    if run.executor not in ("local", "slurm"):
        raise UserError(f"executor {run.executor!r} is not one of: local, slurm")
    if run.executor == "slurm" and run.grid.slurm is None:
        raise UserError("params.yaml has no grid.slurm section: add one (see the README's cluster section)")
    if run.executor == "slurm" and (
        not shutil.which("sinfo") or subprocess.run(["sinfo"], capture_output=True).returncode
    ):
        raise UserError("SLURM does not answer here (sinfo): run `grid run --executor slurm` on a login node")
    if run.executor == "local" and run.gpus > 0:
        import torch

        if run.gpus > (found := torch.cuda.device_count()):
            raise UserError(f"--gpus {run.gpus} asks for more GPUs than this machine has ({found}); use --jobs for CPU")


# --- the driver -----------------------------------------------------------------------------------------------------


def run_grid(run: GridRun, cells: Sequence[Cell], say: Callable[[str], None] = print) -> dict[str, CellJob]:
    """Run `cells` to the end (each recorded in dvc.lock, or failed after its retries); the cells' final entries."""
    check_request(run)
    with driver_lock(run.log_dir):
        jobs = grid_state.read_state(run.log_dir)
        handles, waiting = _plan(run, cells, jobs, say)
        grid_state.write_state(run.log_dir, jobs)
        previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM takes Ctrl-C's path below
        try:
            _drive(run, jobs, handles, waiting, say)
        except KeyboardInterrupt:  # stopped local jobs are interrupted (resumed next time), others detached
            say("interrupted: stopping the local cells (SLURM jobs go on); `grid run` again resumes or re-attaches")
            for job in (jobs[name] for name in handles):
                if job.executor == "local" and stop_local(job):
                    job.state, job.message, job.resume = INTERRUPTED, "stopped with the driver", True
                else:
                    job.state, job.message = DETACHED, "left running when the driver stopped"
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
            grid_state.write_state(run.log_dir, jobs)
    return {c.stage: jobs[c.stage] for c in cells}


def _plan(run: GridRun, cells, jobs, say) -> tuple[dict[str, submitit.Job], list[CellJob]]:
    """Jobs to watch (re-attached) and cells to submit; cells recorded in dvc.lock are done. An unfinished cell whose
    stage is as it was continues (`--resume`), counting its attempts on."""
    handles, waiting, stages = {}, [], survey(run.root, cells, planning=True)
    for cell in cells:
        name, stage, old = cell.mlflow_name, stages[cell.stage], jobs.get(cell.stage)
        if not stage.stale:
            jobs[cell.stage] = CellJob(name, cell.stage, state=DONE, message="already in dvc.lock")
            say(f"{name}: already recorded in dvc.lock, skipped")
        elif old is not None and old.live:
            handles[cell.stage] = attach(old)
            say(f"{name}: re-attached to job {old.job_id} ({old.executor})")
        else:
            job = jobs[cell.stage] = CellJob(name, cell.stage, stage.command, stage.fingerprint, run.executor)
            if old is not None and old.attempts and old.state != DONE and old.fingerprint == job.fingerprint:
                job.attempts, job.logs, job.resume = old.attempts, old.logs, True
            waiting.append(job)
    return handles, waiting


def _drive(run: GridRun, jobs: dict[str, CellJob], handles: dict, waiting: list[CellJob], say) -> None:
    tries: dict[str, int] = {}  # attempts made by this driver: grid.retries bounds them
    poll = run.grid.poll_seconds if run.executor == "slurm" else min(run.grid.poll_seconds, 1.0)  # local: cheap
    while handles or waiting:
        held = {jobs[name].slot for name in handles if jobs[name].executor == "local"}
        for slot in [0] * len(waiting) if run.executor == "slurm" else sorted(set(range(run.slots)) - held):
            if not waiting:
                break
            job = waiting.pop(0)
            job.slot, tries[job.stage] = slot, tries.get(job.stage, 0) + 1
            handles[job.stage] = submit(run, job)
            grid_state.write_state(run.log_dir, jobs)
            command = job.command + " --resume" * job.resume
            say(f"{job.cell}: submitted attempt {job.attempts} as job {job.job_id} ({run.executor}): {command}")
        handle = next(helpers.as_completed(list(handles.values()), poll_frequency=poll))
        job = jobs[next(name for name, h in handles.items() if h is handle)]
        del handles[job.stage]
        if ended_well(run, job, handle):
            job.state = commit_stage(run.root, job)
            say(f"{job.cell}: {'finished, recorded in dvc.lock' if job.state == DONE else job.message}")
        elif tries.get(job.stage, 0) <= run.grid.retries:
            say(f"{job.cell}: job {job.job_id} failed (log {job.log}); resubmitting to resume it")
            job.state, job.job_id, job.resume = QUEUED, None, True
            waiting.append(job)
        else:
            job.state, job.message = GAVE_UP, f"failed {job.attempts} times; last log {job.log}"
            say(f"{job.cell}: {job.message}")
        grid_state.write_state(run.log_dir, jobs)


def grid_status(root: Path, grid: GridParams, cells: Sequence[Cell]) -> list[CellJob]:
    """Each cell's entry with its state now: a live job's from submitit (a local one's by pid and start time), else
    done only where the stage and its outputs match dvc.lock, else the driver's record or the stage's metrics file."""
    jobs, stages, rows = grid_state.read_state(root / grid.log_dir), survey(root, cells), []
    for cell in cells:
        job = jobs.get(cell.stage) or CellJob(cell.mlflow_name, cell.stage, state="not started")
        if job.live and (handle := attach(job)).done():
            state = "ended (driver not running)"
        elif job.live:  # SLURM's word where its accounting answers (submitit asks sacct), else the driver's last
            state = {"PENDING": QUEUED, "RUNNING": RUNNING}.get(handle.state, job.state)
        elif not stages[cell.stage].stale:
            state = DONE
        elif job.state == DONE:
            state = "changed since recorded"  # dvc.lock and the outputs (or the code, or params) disagree now
        elif job.state == "not started" and any(path.exists() for path in stages[cell.stage].metrics):
            state = STALE
        else:
            state = job.state
        rows.append(dataclasses.replace(job, state=state))
    return rows
