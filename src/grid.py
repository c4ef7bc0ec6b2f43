"""The grid beyond `dvc repro`: its cells as local processes (one per GPU, or CPU slots) or as SLURM jobs (submitit).

Each job runs its cell's DVC stage command, read from dvc.yaml through DVC, so it computes exactly what `dvc repro`
would; a retry appends `--resume` and continues from the cell's last finished epoch. When a job has finished, the
driver records its cell in dvc.lock (`dvc commit` of that stage) if the stage's deps and params are what they were at
submission: a change meanwhile would file outputs under code that did not make them, so such a cell is left for
`dvc repro`. The driver's state is <log_dir>/grid.json (written atomically after every change): `grid status` reads
it from another shell, and a restarted `grid run` re-attaches to the jobs that are still queued or running.

SLURM jobs are watched with `squeue` while SLURM lists them, then with `sacct` where the cluster keeps accounting,
then by the result file submitit writes when its function returns or raises; a job that left none was killed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from src.atomic import atomic_output
from src.errors import UserError
from src.params import GridParams, SlurmParams
from src.study import Cell

STATE_FILE = "grid.json"
QUEUED, RUNNING, COMPLETED, FAILED = "queued", "running", "completed", "failed"
DONE, GAVE_UP, STALE = "done", "failed", "finished, not committed"  # a cell's end in the driver
# SLURM's job states (squeue / sacct) as the driver sees them; PREEMPTED and REQUEUED come back as PENDING.
SLURM_STATES = {
    "PENDING": QUEUED,
    "CONFIGURING": QUEUED,
    "REQUEUED": QUEUED,
    "REQUEUE_HOLD": QUEUED,
    "REQUEUE_FED": QUEUED,
    "RESV_DEL_HOLD": QUEUED,
    "SUSPENDED": QUEUED,
    "RUNNING": RUNNING,
    "COMPLETING": RUNNING,
    "PREEMPTED": RUNNING,
    "SIGNALING": RUNNING,
    "STAGE_OUT": RUNNING,
    "RESIZING": RUNNING,
    "COMPLETED": COMPLETED,
}


# --- what the driver knows of each cell ----------------------------------------------------------------------------


@dataclass
class CellJob:
    """One cell in the driver: its stage, its current job and how its attempts went."""

    cell: str
    stage: str
    command: str = ""  # the stage's command, as dvc.yaml gives it
    fingerprint: list = field(default_factory=list)
    executor: str = ""
    job_id: str | None = None
    attempts: int = 0
    state: str = QUEUED  # of the current job: queued, running, completed, failed; then done / failed / not committed
    log: str | None = None
    message: str = ""
    logs: list[str] = field(default_factory=list)  # every attempt's log, oldest first

    @property
    def active(self) -> bool:
        return self.job_id is not None and self.state in (QUEUED, RUNNING)


def read_state(log_dir: Path) -> dict[str, CellJob]:
    path = log_dir / STATE_FILE
    if not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text())
        return {name: CellJob(**entry) for name, entry in raw["cells"].items()}
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"{path} is not a grid state file ({err}); move it away to start afresh") from None


def write_state(log_dir: Path, jobs: dict[str, CellJob]) -> None:
    log_dir.mkdir(parents=True, exist_ok=True)
    with atomic_output(log_dir / STATE_FILE) as tmp:
        tmp.write_text(json.dumps({"cells": {n: dataclasses.asdict(j) for n, j in jobs.items()}}, indent=1) + "\n")


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


# --- the DVC side: a cell's stage, its command, whether it is recorded ------------------------------------------------


def _repo(root: Path):
    from dvc.repo import Repo

    return Repo(str(root))


def stages_of(repo, cells: Sequence[Cell]) -> dict:
    """The DVC stage of each cell, by its name (train@<configuration>-<seed>)."""
    stages = {s.addressing: s for s in repo.index.stages}
    missing = [c.stage for c in cells if c.stage not in stages]
    if missing:
        raise UserError(f"dvc.yaml has no stage {missing[0]}: is the cell in params.yaml's study and train.seeds?")
    return {c.stage: stages[c.stage] for c in cells}


def changed_stages(repo, stages) -> set[str]:
    """The stages whose deps, params, command or outputs differ from dvc.lock: what `dvc status` says, without its
    check of every output in the cache (minutes for a 48-cell grid; the outputs' hashes are compared all the same)."""
    with repo.lock:
        return {stage.addressing for stage in stages if stage.changed()}


def stage_fingerprint(stage) -> list:
    """The hashes of a stage's deps and the values of its params, as DVC computes them for dvc.lock."""
    stage.save_deps()
    return [[str(dep), json.dumps(dep.hash_info.value, sort_keys=True, default=str)] for dep in stage.deps]


def check_upstream(repo, stage) -> None:
    """The stages a cell's stage depends on (data, split) must be up to date: jobs do not run them, and a cell trained
    on stale data would be recorded against data that `dvc repro` is about to replace."""
    changed = sorted(set(repo.status(targets=[stage.addressing], with_deps=True)) - {stage.addressing})
    if changed:
        raise UserError(f"stage {', '.join(changed)} is not up to date: run `dvc repro {changed[-1]}` first")


def commit_stage(root: Path, cell: CellJob) -> str:
    """`dvc commit` of a finished cell if its stage is unchanged since submission: DONE, else STALE."""
    with _repo(root) as repo:
        stage = repo.stage.collect(cell.stage)[0]
        if stage_fingerprint(stage) != cell.fingerprint:
            cell.message = "its code, data or params changed while it ran: not recorded; `dvc repro` will re-run it"
            return STALE
        try:
            repo.commit(cell.stage, force=True)  # forced: no prompt; the check above is what makes it safe
        except Exception as err:  # DVC's errors (an output missing, a full disk): this cell, not the whole grid
            cell.message = f"finished but `dvc commit {cell.stage}` failed ({type(err).__name__}: {err})"
            return STALE
    return DONE


# --- what a job runs ------------------------------------------------------------------------------------------------


def attempt_command(stage_cmd: str, attempt: int) -> str:
    """The stage's own command; from the second attempt on it continues the cell (train --resume)."""
    return stage_cmd if attempt <= 1 else f"{stage_cmd} --resume"


@dataclass
class StageCommand:
    """A SLURM job's function (pickled by submitit): the stage command in the repository, on the node. When SLURM
    preempts the job or its time runs out, submitit asks `checkpoint` for what to requeue: the same cell, resumed."""

    root: str
    command: str
    env: dict[str, str] = field(default_factory=dict)

    def __call__(self) -> int:
        command = self.command
        # A job SLURM requeued (preempted, or requeued by hand) runs this again: continue the cell, not start over.
        if int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0 and not command.endswith("--resume"):
            command += " --resume"
        print(f"[grid] {time.strftime('%H:%M:%S')} on {os.uname().nodename}: {command}", flush=True)
        done = subprocess.run(["bash", "-c", command], cwd=self.root, env={**os.environ, **self.env})
        if done.returncode != 0:
            raise RuntimeError(f"`{command}` exited with status {done.returncode}")
        return done.returncode

    def checkpoint(self, *args, **kwargs):
        import submitit

        resumed = self.command if self.command.endswith("--resume") else f"{self.command} --resume"
        return submitit.helpers.DelayedSubmission(StageCommand(self.root, resumed, self.env))


def _job_env() -> dict[str, str]:
    """What a job must see of the driver's environment beyond SLURM's own export: where to log."""
    return {k: os.environ[k] for k in ("MLFLOW_TRACKING_URI", "CRYOET_MLRUNS") if os.environ.get(k)}


# --- executors --------------------------------------------------------------------------------------------------------


def cpu_slots(cpu_threads: int) -> int:
    """Cells at once on this machine's CPU when each computes with `cpu_threads` threads (repro.cpu_threads; 0: all
    cores, so one)."""
    return max(1, (os.cpu_count() or 1) // cpu_threads) if cpu_threads > 0 else 1


class LocalExecutor:
    """One process per slot on this machine: with GPUs, slot i sees GPU i % gpus only (CUDA_VISIBLE_DEVICES). On a
    CPU each cell computes with repro.cpu_threads threads (the job's `python -m src` sets them, src/repro.py), however
    many slots share the cores: the thread count decides a CPU run's numbers."""

    name = "local"
    poll_seconds = 1.0  # a local process is cheap to ask, and a free slot should not wait

    def __init__(self, root: Path, log_dir: Path, slots: int, gpus: int) -> None:
        self.root, self.log_dir, self.slots, self.gpus = root, log_dir / "local", max(1, slots), gpus
        self.procs: dict[str, tuple[subprocess.Popen, int]] = {}  # job id -> (process, slot)

    def capacity(self, jobs: dict[str, CellJob]) -> int:
        busy = {j.job_id for j in jobs.values() if j.active and j.executor == self.name} | set(self.procs)
        return self.slots - len(busy)

    def _free_slot(self) -> int:
        used = {slot for _, slot in self.procs.values()}
        return min(set(range(self.slots)) - used)

    def submit(self, cell: CellJob, command: str) -> None:
        slot = self._free_slot()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{cell.cell}.attempt{cell.attempts}.log"
        env = {**os.environ, **_job_env()}
        if self.gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(slot % self.gpus)
        with log.open("w") as out:
            proc = subprocess.Popen(
                ["bash", "-c", command],
                cwd=self.root,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C of the driver does not kill the cells; the driver stops them
            )
        cell.job_id, cell.log = f"local-{proc.pid}", str(log)
        self.procs[cell.job_id] = (proc, slot)

    def state(self, cell: CellJob) -> str:
        entry = self.procs.get(cell.job_id or "")
        if entry is None:  # a process of an earlier driver: alive or gone, nothing more is known of it
            return RUNNING if _alive(_local_pid(cell)) else FAILED
        code = entry[0].poll()
        if code is None:
            return RUNNING
        del self.procs[cell.job_id]
        return COMPLETED if code == 0 else FAILED

    def cancel(self, cell: CellJob) -> None:
        entry = self.procs.get(cell.job_id or "")
        if entry is not None and entry[0].poll() is None:
            os.killpg(entry[0].pid, 15)


def _local_pid(job: CellJob) -> int:
    """The process id in a local job's id (local-<pid>)."""
    return int((job.job_id or "local-0").split("-")[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return pid > 0


class SlurmExecutor:
    """Each cell a SLURM job through submitit, with what params.yaml's grid.slurm asks for."""

    name = "slurm"
    poll_seconds = float("inf")  # as often as grid.poll_seconds says: each look is an squeue call

    def __init__(self, root: Path, log_dir: Path, slurm: SlurmParams) -> None:
        import submitit

        self.root, self.folder = root, log_dir / "slurm"
        self.executor = submitit.SlurmExecutor(folder=self.folder / "%j", python=sys.executable)
        self.executor.update_parameters(
            time=wall_minutes(slurm.time),
            mem=slurm.mem,
            cpus_per_task=slurm.cpus_per_task,
            ntasks_per_node=1,
            setup=list(slurm.setup or []),
            signal_delay_s=120,  # SIGUSR2 this long before the limit: submitit requeues the cell, resumed
            **({"partition": slurm.partition} if slurm.partition else {}),
            **({"gpus_per_node": slurm.gpus_per_task} if slurm.gpus_per_task else {}),
        )

    def capacity(self, jobs: dict[str, CellJob]) -> int:
        return sys.maxsize  # SLURM queues them

    def submit(self, cell: CellJob, command: str) -> None:
        self.executor.update_parameters(job_name=cell.cell)
        job = self.executor.submit(StageCommand(str(self.root), command, _job_env()))
        cell.job_id, cell.log = str(job.job_id), str(job.paths.stdout)

    def state(self, cell: CellJob) -> str:
        return slurm_state(cell.job_id or "", self.folder)

    def cancel(self, cell: CellJob) -> None:
        subprocess.run(["scancel", cell.job_id or ""], capture_output=True)


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


def slurm_state(job_id: str, folder: Path) -> str:
    """A SLURM job's state: squeue while SLURM lists it, else sacct, else submitit's result file in its folder under
    `folder` (the executor's, <log_dir>/slurm)."""
    listed = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True)
    raw = listed.stdout.strip().split("\n")[0] if listed.returncode == 0 else ""
    if not raw:
        acct = subprocess.run(["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "State"], capture_output=True, text=True)
        raw = acct.stdout.strip().split("\n")[0].split(" ")[0] if acct.returncode == 0 else ""
    if raw in SLURM_STATES and SLURM_STATES[raw] != COMPLETED:
        return SLURM_STATES[raw]
    if raw and raw not in SLURM_STATES:
        return FAILED  # FAILED, CANCELLED, TIMEOUT, NODE_FAIL, OUT_OF_MEMORY, BOOT_FAIL, DEADLINE
    return _result_state(folder / job_id, job_id)


def _result_state(folder: Path, job_id: str) -> str:
    """COMPLETED if submitit's result file says the function returned, FAILED if it raised or there is none."""
    import pickle

    result = folder / f"{job_id}_0_result.pkl"
    try:
        outcome = pickle.loads(result.read_bytes())[0]
    except (OSError, pickle.UnpicklingError, EOFError, IndexError, TypeError):
        return FAILED
    return COMPLETED if outcome == "success" else FAILED


# --- the driver -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GridRun:
    """What `grid run` was asked: where, with which executor, how often to retry."""

    root: Path
    grid: GridParams
    executor: str = "local"
    slots: int = 1
    gpus: int = 0

    @property
    def log_dir(self) -> Path:
        return self.root / self.grid.log_dir


def make_executor(run: GridRun):
    if run.executor == "local":
        return LocalExecutor(run.root, run.log_dir, run.slots, run.gpus)
    if run.executor == "slurm":
        if run.grid.slurm is None:
            raise UserError("params.yaml has no grid.slurm section: add one (see the README's cluster section)")
        if shutil.which("sinfo") is None or subprocess.run(["sinfo", "-h"], capture_output=True).returncode != 0:
            raise UserError("SLURM does not answer here (sinfo): run `grid run --executor slurm` on a login node")
        return SlurmExecutor(run.root, run.log_dir, run.grid.slurm)
    raise UserError(f"executor {run.executor!r} is not one of: local, slurm")


def run_grid(run: GridRun, cells: Sequence[Cell], say: Callable[[str], None] = print) -> dict[str, CellJob]:
    """Run `cells` to the end (each recorded in dvc.lock, or failed after its retries); the cells' final entries."""
    executor = make_executor(run)
    with driver_lock(run.log_dir):
        jobs = read_state(run.log_dir)
        pending = _plan(run, cells, jobs, executor, say)
        write_state(run.log_dir, jobs)
        try:
            _drive(run, executor, jobs, pending, say)
        except KeyboardInterrupt:
            say("interrupted: stopping the local cells (SLURM jobs go on; `grid run` again re-attaches to them)")
            for job in pending:
                if job.active and job.executor == "local":
                    executor.cancel(job)
            raise
        finally:
            write_state(run.log_dir, jobs)
    return {c.run_name: jobs[c.run_name] for c in cells}


def _plan(run: GridRun, cells, jobs, executor, say) -> list[CellJob]:
    """The cells still to run: not those recorded in dvc.lock; those with live jobs are re-attached."""
    pending = []
    with _repo(run.root) as repo:
        stages = stages_of(repo, cells)  # one pass over dvc.yaml (per cell it takes seconds)
        if stages:
            check_upstream(repo, next(iter(stages.values())))  # the cells share their upstream stages
        changed = changed_stages(repo, stages.values())
        for cell in cells:
            stage = stages[cell.stage]
            if stage.addressing not in changed:
                jobs[cell.run_name] = CellJob(cell.run_name, cell.stage, state=DONE, message="already in dvc.lock")
                say(f"{cell.run_name}: already recorded in dvc.lock, skipped")
                continue
            old = jobs.get(cell.run_name)
            if old is not None and old.active and old.executor == executor.name and executor.state(old) != FAILED:
                say(f"{cell.run_name}: re-attached to job {old.job_id}")
                pending.append(old)
                continue
            jobs[cell.run_name] = CellJob(cell.run_name, cell.stage, stage.cmd, stage_fingerprint(stage), executor.name)
            pending.append(jobs[cell.run_name])
    return pending


def _drive(run: GridRun, executor, jobs: dict[str, CellJob], pending: list[CellJob], say) -> None:
    waiting = [j for j in pending if not j.active]
    while any(j.active for j in pending) or waiting:
        while waiting and executor.capacity(jobs) > 0:
            _submit(executor, waiting.pop(0), say)
            write_state(run.log_dir, jobs)
        time.sleep(min(run.grid.poll_seconds, executor.poll_seconds))
        for job in [j for j in pending if j.active]:
            state = executor.state(job)
            if state == job.state:
                continue
            was, job.state = job.state, state
            if state == QUEUED and was == RUNNING:
                say(f"{job.cell}: job {job.job_id} requeued by SLURM (preempted or out of time); it will resume")
            elif state == RUNNING:
                say(f"{job.cell}: running (job {job.job_id})")
            elif state == COMPLETED:
                job.state = commit_stage(run.root, job)
                say(f"{job.cell}: {'finished, recorded in dvc.lock' if job.state == DONE else job.message}")
            elif state == FAILED:
                if job.attempts <= run.grid.retries:
                    say(f"{job.cell}: job {job.job_id} failed (log {job.log}); resubmitting to resume it")
                    job.state = QUEUED
                    waiting.append(job)
                    job.job_id = None
                else:
                    job.state = GAVE_UP
                    job.message = f"failed {job.attempts} times; last log {job.log}"
                    say(f"{job.cell}: {job.message}")
            write_state(run.log_dir, jobs)


def _submit(executor, job: CellJob, say) -> None:
    job.attempts += 1
    command = attempt_command(job.command, job.attempts)
    executor.submit(job, command)
    job.state, job.executor = QUEUED, executor.name
    job.logs.append(job.log or "")
    say(f"{job.cell}: submitted attempt {job.attempts} as job {job.job_id} ({executor.name}): {command}")


# --- grid status ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CellStatus:
    cell: str
    state: str  # not started, queued, running, done, failed, finished (not committed)
    attempts: int
    job_id: str | None
    log: str | None
    note: str = ""


def grid_status(root: Path, grid: GridParams, cells: Sequence[Cell], metrics_dir: str) -> list[CellStatus]:
    """Each cell's state: live jobs asked of their executor (SLURM, or the local process), ended ones from the
    driver's state file, and cells it never ran from dvc.lock (done) and the metrics files (finished, not recorded)."""
    log_dir = root / grid.log_dir
    jobs = read_state(log_dir)
    unknown = [c for c in cells if c.run_name not in jobs]
    changed = set()
    if unknown:
        with _repo(root) as repo:
            changed = changed_stages(repo, stages_of(repo, unknown).values())
    rows = []
    for cell in cells:
        job = jobs.get(cell.run_name)
        if job is None:
            metrics = (root / metrics_dir / f"{cell.run_name}.json").exists()
            state = DONE if cell.stage not in changed else STALE if metrics else "not started"
            rows.append(CellStatus(cell.run_name, state, 0, None, None))
            continue
        state = _live_state(job, log_dir) if job.active else job.state
        rows.append(CellStatus(cell.run_name, state, job.attempts, job.job_id, job.log, job.message))
    return rows


def _live_state(job: CellJob, log_dir: Path) -> str:
    if job.executor == "slurm":
        return slurm_state(job.job_id or "", log_dir / "slurm")
    return job.state if _alive(_local_pid(job)) else "ended (driver not running)"
