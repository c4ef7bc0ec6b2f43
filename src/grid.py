"""The grid beyond `dvc repro`: its cells as submitit jobs, local (one per GPU, or CPU slots) or on SLURM.

A job runs its cell's DVC stage command in the environment DVC gives it, so it computes what `dvc repro` would. Which
stages are stale and the record of a finished one in dvc.lock are src/grid_dvc.py's; the driver's state, grid.json,
is src/grid_state.py's. It names each job beyond a pid, so a restarted `grid run` re-attaches to live jobs, collects
ended ones and continues failed or stopped cells (`train --resume`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil
import submitit
from submitit import helpers
from submitit.core.utils import FailedJobError

from src import grid_state
from src.errors import UserError
from src.grid_dvc import commit_stage, outputs_since, survey
from src.grid_state import DETACHED, DONE, GAVE_UP, INTERRUPTED, QUEUED, RUNNING, STALE, CellJob, driver_lock
from src.params import GridParams
from src.study import Cell

JOB_ENV = ("MLFLOW_TRACKING_URI", "CRYOET_MLRUNS")  # where a job logs, passed whatever the cluster exports
LOCAL_TIMEOUT_MIN = 10**7  # submitit ends a local job after 2 minutes by default; a cell runs until it is done


# --- a job: what it runs, where, how it is found again and stopped -------------------------------------------------


class StageCommand(helpers.CommandFunction, helpers.Checkpointable):
    """A job's function: the stage command in the repository, the call's arguments appended. When SLURM preempts
    the job or its time runs out, submitit asks `checkpoint` what to requeue: the same cell, resumed."""

    @classmethod
    def of(cls, command: str, root: Path, env: dict[str, str]) -> StageCommand:
        return cls(["env", *[f"{k}={v}" for k, v in env.items()], "bash", "-c", f'{command} "$@"', "stage"], cwd=root)

    def __call__(self, *args: str) -> str:
        if int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0:  # requeued by SLURM itself: continue, not start over
            args = ("--resume",)
        return super().__call__(*args)

    def checkpoint(self, *args, **kwargs) -> helpers.DelayedSubmission:
        return helpers.DelayedSubmission(self, "--resume")


def cpu_slots(cpu_threads: int) -> int:
    """Cells at once on this CPU when each computes with `cpu_threads` threads (repro.cpu_threads; 0: all cores)."""
    return max(1, (os.cpu_count() or 1) // cpu_threads) if cpu_threads > 0 else 1


def wall_minutes(text: str) -> int:
    """SLURM's [D-]HH:MM as minutes; a UserError for anything else."""
    try:
        days, _, clock = text.rpartition("-")
        hours, minutes = clock.split(":")
        total = int(days or 0) * 1440 + int(hours) * 60 + int(minutes)
    except ValueError:
        raise UserError(f"time {text!r} is not [D-]HH:MM (as in 12:00 or 1-00:00)") from None
    if total <= 0:
        raise UserError(f"time {text!r} must be longer than 0 minutes")
    return total


@dataclass(frozen=True)
class GridRun:
    """What `grid run` was asked: where, with which executor, how many cells at once on this machine."""

    root: Path
    grid: GridParams
    executor: str = "local"
    slots: int = 1
    gpus: int = 0

    @property
    def log_dir(self) -> Path:
        return self.root / self.grid.log_dir


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


def job_parameters(run: GridRun) -> dict:
    """submitit's parameters of the run's jobs, by AutoExecutor's names (slurm_* ones reach SLURM only)."""
    if run.executor == "local":
        return {"timeout_min": LOCAL_TIMEOUT_MIN}
    s = run.grid.slurm
    asked = {"slurm_partition": s.partition, "slurm_gpus_per_node": s.gpus_per_task}
    return {
        "timeout_min": wall_minutes(s.time),
        "cpus_per_task": s.cpus_per_task,
        "slurm_mem": s.mem,
        "slurm_setup": list(s.setup or []),
        "slurm_signal_delay_s": 120,  # SIGUSR2 this long before the limit: submitit requeues the cell, resumed
        **{k: v for k, v in asked.items() if v},
    }


def submit(run: GridRun, job: CellJob) -> submitit.Job:
    """The cell's next attempt, in a fresh folder of its own (so no log is overwritten), its command in the environment
    DVC gives a stage's (DVC_ROOT, DVC_STAGE). A local slot sees one GPU; on a CPU, none (submitit hides them)."""
    job.attempts += 1
    (base := run.log_dir / run.executor / job.cell).mkdir(parents=True, exist_ok=True)
    folder = tempfile.mkdtemp(prefix=f"attempt{job.attempts}-", dir=base)
    executor = submitit.AutoExecutor(folder, cluster=run.executor, slurm_python=sys.executable)
    executor.update_parameters(name=job.cell, stderr_to_stdout=True, **job_parameters(run))
    env = {k: os.environ[k] for k in JOB_ENV if os.environ.get(k)} | {"DVC_ROOT": str(run.root), "DVC_STAGE": job.stage}
    env |= {"CUDA_VISIBLE_DEVICES": str(job.slot % run.gpus)} if run.executor == "local" and run.gpus else {}
    handle = executor.submit(StageCommand.of(job.command, run.root, env), *job.resume * ["--resume"])
    job.executor, job.job_id, job.folder, job.started = run.executor, str(handle.job_id), folder, time.time()
    with contextlib.suppress(psutil.Error, ValueError):  # a local job is named by its process's start time too
        job.started = psutil.Process(int(handle.job_id)).create_time() if run.executor == "local" else job.started
    job.state, job.log, job.message = RUNNING if run.executor == "local" else QUEUED, str(handle.paths.stdout), ""
    job.logs.append(job.log)
    return handle


def _process(job: CellJob) -> psutil.Process | None:
    """A local job's process: the one with its pid *and* its start time, not a later one reusing the pid."""
    with contextlib.suppress(psutil.Error, ValueError, TypeError):
        proc = psutil.Process(int(job.job_id))
        if abs(proc.create_time() - job.started) < 1 and proc.status() != psutil.STATUS_ZOMBIE:
            return proc
    return None


class AdoptedLocalJob(submitit.LocalJob):
    """A local job an earlier driver started: submitit polls only a process it started itself, so this one is done
    when no process with its pid and start time is left."""

    def __init__(self, job: CellJob) -> None:
        super().__init__(job.folder, job.job_id)
        self.cell = job

    def done(self, force_check: bool = False) -> bool:
        return _process(self.cell) is None


def attach(job: CellJob) -> submitit.Job:
    """submitit's handle on a job an earlier driver started, by its folder and id."""
    return submitit.SlurmJob(job.folder, job.job_id) if job.executor == "slurm" else AdoptedLocalJob(job)


def stop_local(job: CellJob, grace: float = 3, patience: float = 60) -> bool:
    """Stop a local job's processes; whether they all ended. submitit's cancel signals its controller, which does not
    reach the stage's command: each process left after `grace` (after a Ctrl-C they end by themselves) gets SIGTERM,
    which train turns into a FAILED MLflow run beside a resumable `.partial` folder."""
    with contextlib.suppress(psutil.Error, AttributeError):
        procs = [root := _process(job), *root.children(recursive=True)]
        for proc in psutil.wait_procs(procs, timeout=grace)[1]:
            proc.send_signal(signal.SIGTERM)
        psutil.wait_procs(procs, timeout=patience)
    return _process(job) is None


def ended_well(run: GridRun, job: CellJob, handle: submitit.Job) -> bool:
    """Whether a job that is done finished its cell: its function returned, or it left no result at all (killed after
    train published) and its stage's outputs are newer than the job."""
    error = handle.exception()  # None: returned; FailedJobError: raised; UncompletedJobError: no result
    return error is None or (not isinstance(error, FailedJobError) and outputs_since(run.root, job))


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
