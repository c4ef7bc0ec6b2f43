"""The grid's jobs on submitit: what one runs (its cell's DVC stage command), with which parameters, and how an
earlier driver's job is found again (by id and folder; a local one by pid and start time) and stopped.

src/grid.py drives them; src/grid_dvc.py says which stages are stale and records a finished one in dvc.lock.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import submitit
from submitit import helpers
from submitit.core.utils import FailedJobError

from src.errors import UserError
from src.grid_dvc import outputs_since
from src.grid_state import QUEUED, RUNNING, CellJob
from src.params import GridParams

JOB_ENV = ("MLFLOW_TRACKING_URI", "CRYOET_MLRUNS")  # where a job logs, passed whatever the cluster exports
LOCAL_TIMEOUT_MIN = 10**7  # submitit ends a local job after 2 minutes by default; a cell runs until it is done


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
