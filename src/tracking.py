"""The MLflow store: one sqlite database under <repo>/mlruns, one run per grid cell.

The store's path is absolute and resolved from the repository root, because `dvc exp run --queue` runs each experiment
in a temporary copy of the repository: a relative URI would send its runs into a database that is then deleted.
Several processes creating a new sqlite store at once corrupt it, so creation happens once, under a file lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

EXPERIMENT = "attention-unet-cryoet"
ENV_STORE = "CRYOET_MLRUNS"  # override the store folder (tests use a temporary one)


def repo_root() -> Path:
    """The main repository's root, also from inside a DVC queue's temporary copy (<root>/.dvc/tmp/exps/...)."""
    cwd = Path.cwd().resolve()
    parts = cwd.parts
    for i in range(len(parts) - 2):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True)
        return Path(top.stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        return cwd


def store_dir() -> Path:
    return Path(os.environ.get(ENV_STORE) or repo_root() / "mlruns").resolve()


def tracking_uri() -> str:
    return f"sqlite:///{store_dir() / 'mlflow.db'}"


def ensure_store(experiment: str = EXPERIMENT) -> str:
    """Create the store and the experiment if missing (once, under a lock); return the experiment id."""
    import mlflow

    folder = store_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".create.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        client = mlflow.MlflowClient(tracking_uri())
        found = client.get_experiment_by_name(experiment)
        if found is not None:
            return found.experiment_id
        return client.create_experiment(experiment, artifact_location=(folder / "artifacts").as_uri())


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


@contextlib.contextmanager
def cell_run(run_name: str, tags: dict[str, str], params: dict, run_id: str | None = None) -> Iterator[object]:
    """An MLflow run for one cell (or the run `run_id`, resumed); an exception, Ctrl-C or SIGTERM marks it FAILED
    before propagating."""
    import mlflow

    experiment_id = ensure_store()
    mlflow.set_tracking_uri(tracking_uri())
    if run_id is not None:
        run = mlflow.start_run(run_id=run_id)
    else:
        run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags)
    try:
        if run_id is None:
            mlflow.log_params(params)
        yield run
    except BaseException:
        mlflow.end_run(status="FAILED")
        raise
    mlflow.end_run(status="FINISHED")


def fail_run_if_running(run_id: str) -> bool:
    """Mark the run FAILED if the store has it and it still says RUNNING (its process was killed without a chance to
    say so); whether it did. Best effort: a run that is not in this store is left alone."""
    import mlflow

    if not (store_dir() / "mlflow.db").exists():
        return False
    try:
        client = mlflow.MlflowClient(tracking_uri())
        if client.get_run(run_id).info.status != "RUNNING":
            return False
        client.set_terminated(run_id, status="FAILED")
    except Exception:  # mlflow raises its own and sqlalchemy's errors for a run it does not know
        return False
    return True


# --- a cell's sizes, logged as JSON lists and read back as tuples -------------------------------------------------


def size_params(channel_sizes: Sequence[int], patch_size: Sequence[int]) -> dict[str, str]:
    """The MLflow params of the sizes a cell trained with (MLflow params are strings: JSON keeps them typed)."""
    return {
        "channel_sizes": json.dumps([int(c) for c in channel_sizes]),
        "patch_size": json.dumps([int(s) for s in patch_size]),
    }


def read_sizes(run_params: dict[str, str]) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None]:
    """(channel sizes, patch size) as `size_params` logged them; None for a size the run did not log."""
    sizes = []
    for key in ("channel_sizes", "patch_size"):
        try:
            sizes.append(tuple(int(v) for v in json.loads(run_params[key])))
        except (KeyError, ValueError, TypeError):
            sizes.append(None)
    return sizes[0], sizes[1]


# --- what a finished cell records: the MLflow metric names and metrics/<cell>.json ---------------------------------

# Per epoch (step = epoch): "train_loss", "val_score", "val_fbeta/<class>".
# Once, at the end: "test_score", "test_fbeta/<class>", "train_minutes", "seconds_per_epoch",
# "inference_seconds_per_tomogram", "val_best_score", "best_epoch".


def log_test_result(test_score: float, test_fbeta: dict[str, float], durations: dict[str, float]) -> None:
    import mlflow

    mlflow.log_metric("test_score", test_score)
    mlflow.log_metrics({f"test_fbeta/{name}": value for name, value in test_fbeta.items()})
    mlflow.log_metrics(durations)


def write_cell_metrics(path: str | Path, record: dict) -> None:
    """metrics/<cell>.json: the DVC metrics file of a cell; `record["mlflow_run_id"]` names the run it produced."""
    import json

    from src.atomic import atomic_output

    required = {"cell", "mlflow_run_id", "test_score", "test_fbeta", "train_minutes"}
    missing = required - set(record)
    if missing:
        raise ValueError(f"cell metrics lack {sorted(missing)}")
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
