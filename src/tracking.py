"""The MLflow store: one run per grid cell, in a sqlite database under <repo>/mlruns, or on an MLflow server.

One machine uses the sqlite file. Many writers (the grid's jobs on a cluster, `python -m src grid run`) log over HTTP
to an `mlflow server` with a database behind it (PostgreSQL on a cluster; `python -m src tracking serve` starts one):
MLflow's own MLFLOW_TRACKING_URI names it, and each metrics file records the server its run went to.

The sqlite store's path is absolute and resolved from the repository root, because `dvc exp run --queue` runs each
experiment in a temporary copy of the repository: a relative URI would send its runs into a database then deleted.
Several processes creating a new sqlite store at once corrupt it, so creation happens once, under a file lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from src.fields import ANY_TEXT, NULL, NUMBER_OR_NAN, TEXT, WHOLE, Kind, either, field, map_of, one_of, read_object

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
    """CRYOET_MLRUNS, else a workspace's own mlruns/ (so a tour's runs stay there), else the repository's."""
    from src.workspace import workspace_root

    return Path(os.environ.get(ENV_STORE) or (workspace_root() or repo_root()) / "mlruns").resolve()


ENV_SERVER = "MLFLOW_TRACKING_URI"  # MLflow's own variable: a tracking server (http://host:port) for many writers


def local_uri() -> str:
    """The sqlite store of this machine (the default)."""
    return f"sqlite:///{store_dir() / 'mlflow.db'}"


def server_uri() -> str | None:
    """The tracking server that MLFLOW_TRACKING_URI names, if any (a file or sqlite URI there is not a server)."""
    uri = os.environ.get(ENV_SERVER, "").strip()
    return uri if uri.startswith(("http://", "https://")) else None


def tracking_uri() -> str:
    """Where runs are logged and read: the server MLFLOW_TRACKING_URI names, else the local sqlite store."""
    return server_uri() or local_uri()


HEALTH_TIMEOUT = 3.0  # seconds for a server's /health to answer; MLflow's own client retries for minutes


def server_answers(server: str, timeout: float = HEALTH_TIMEOUT) -> bool:
    """Whether the MLflow server at `server` (http://host:port) is up: its /health answers within `timeout`."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(server.rstrip("/") + "/health", timeout=timeout) as reply:
            return reply.status == 200
    except (OSError, ValueError, urllib.error.URLError):  # ValueError: a URI urllib cannot parse
        return False


def check_server(uri: str) -> None:
    """A UserError unless the store at `uri` can be reached: a server must answer its /health (a local store is
    always there)."""
    from src.errors import UserError

    if uri.startswith(("http://", "https://")) and not server_answers(uri):
        raise UserError(
            f"the MLflow server {uri} does not answer at /health within {HEALTH_TIMEOUT:g} s: start it (python -m src "
            f"tracking serve), or unset {ENV_SERVER} to use the local store"
        )


def mlflow_client(uri: str | None = None):
    """An MLflow client of the store at `uri` (default: `tracking_uri()`), once a server there has answered: every
    client call to a tracking server goes through here, so a server that is down is one error, not a long hang."""
    uri = uri or tracking_uri()
    check_server(uri)
    import mlflow

    return mlflow.MlflowClient(uri)


def store_record() -> dict[str, str]:
    """What a metrics file says of its run's store: the server's URI, or nothing for the local sqlite store (whose
    absolute path would tie a committed file to one machine)."""
    server = server_uri()
    return {"mlflow_tracking_uri": server} if server else {}


def ensure_store(experiment: str = EXPERIMENT) -> str:
    """Create the store and the experiment if missing (once, under a lock); return the experiment id."""
    if server_uri() is not None:
        return _ensure_server_experiment(mlflow_client(server_uri()), experiment)
    folder = store_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".create.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        client = mlflow_client(tracking_uri())
        found = client.get_experiment_by_name(experiment)
        if found is not None:
            check_artifacts_inside(found.artifact_location, folder)
            return found.experiment_id
        experiment_id = client.create_experiment(experiment, artifact_location=(folder / "artifacts").as_uri())
        mark_classic_view(client, experiment_id)  # MLflow 3's UI opens it in the classic ML view, not GenAI
        return experiment_id


def check_artifacts_inside(location: str, folder: Path) -> None:
    """A UserError unless the experiment's artifact location lies inside the store `folder`. MLflow records it as an
    absolute path, so a store copied with its project (or moved) would write every model into the original's folder,
    re-creating it if it was moved away."""
    from urllib.parse import unquote, urlparse

    from src.errors import UserError

    parsed = urlparse(location)
    if parsed.scheme not in ("", "file"):
        return  # an object store or a server's: not a folder of this machine
    where = Path(unquote(parsed.path)).resolve()
    if not where.is_relative_to(folder.resolve()):
        raise UserError(
            f"the MLflow store {folder} keeps its artifacts in {where}, outside it (the store was copied or moved "
            f"from another folder): delete {folder} and run `python -m src tracking import` to load the committed runs "
            "into a new store here"
        )


def _ensure_server_experiment(client, experiment: str) -> str:
    """The experiment on a server, created if missing; jobs starting at once may race to create it (the server's
    database allows one, the losers read it back). Artifacts go where the server was told to keep them."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(experiment)
    if found is not None:
        return found.experiment_id
    try:
        experiment_id = client.create_experiment(experiment)
        mark_classic_view(client, experiment_id)
        return experiment_id
    except MlflowException:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise
        return found.experiment_id


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
    say so); whether it did. Best effort: a run that is not in this store, or a server that is down, is left alone."""
    if server_uri() is None and not (store_dir() / "mlflow.db").exists():
        return False
    try:
        client = mlflow_client()
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


# --- a finished cell's run as a git-friendly file: metrics/mlflow/<cell>.json ------------------------------------
#
# The store (mlruns/) is not in git; these exports are, beside the metrics files that name their runs. They hold what
# the report and the MLflow UI show (params, every metric with its steps, tags, times), not the weights (DVC's).
# `import_runs` loads them into a local store; an imported run gets a new MLflow id (MLflow assigns ids) and keeps the
# original in the tag SOURCE_TAG, by which the report finds it.

EXPORT_FORMAT = "cryoet-unet-mlflow-run"
EXPORT_VERSION = 1
EXPORT_FOLDER = "mlflow"  # under the metrics folder: metrics/*.json are the cells' metrics files, not these
SOURCE_TAG = "cryoet.source_run_id"


@dataclass(frozen=True)
class RunValues:
    """What the report reads of a run, from the store or from an export: params, latest metrics, tags, name."""

    run_id: str
    run_name: str
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]

    @classmethod
    def of_run(cls, run) -> RunValues:
        d = run.data
        return cls(run.info.run_id, run.info.run_name, dict(d.params), dict(d.metrics), dict(d.tags))

    @classmethod
    def of_export(cls, export: dict) -> RunValues:
        latest = {k: max(h, key=lambda m: (m[0], m[1]))[2] for k, h in export["metrics"].items() if h}
        return cls(export["run_id"], export["run_name"], export["params"], latest, export["tags"])


def run_export_path(metrics_file: str | Path) -> Path:
    """Where the run of the cell whose metrics file is `metrics_file` is exported: metrics/mlflow/<cell>.json."""
    metrics_file = Path(metrics_file)
    return metrics_file.parent / EXPORT_FOLDER / metrics_file.name


def export_run(run_id: str, path: str | Path, tracking_uri_: str | None = None) -> Path:
    """Write run `run_id` of the store as compact JSON (sorted keys; metrics as [step, timestamp ms, value])."""
    from src.atomic import atomic_output

    client = mlflow_client(tracking_uri_)
    run = client.get_run(run_id)
    metrics = {}
    for key in sorted(run.data.metrics):
        history = sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))
        metrics[key] = [[m.step, m.timestamp, m.value] for m in history]
    export = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "run_id": run.info.run_id,
        "run_name": run.info.run_name,
        "experiment": client.get_experiment(run.info.experiment_id).name,
        "status": run.info.status,
        "start_time": run.info.start_time,
        "end_time": run.info.end_time,
        "params": dict(sorted(run.data.params.items())),
        "tags": dict(sorted(run.data.tags.items())),
        "metrics": metrics,
    }
    path = Path(path)
    with atomic_output(path) as tmp:
        tmp.write_text(_export_text(export))
    return path


def _export_text(export: dict) -> str:
    """JSON with one line per metric (its whole history), so that a file stays short and a diff readable."""
    head = json.dumps({k: v for k, v in export.items() if k != "metrics"}, indent=1, sort_keys=True)
    lines = [f"  {json.dumps(key)}: {json.dumps(history)}" for key, history in sorted(export["metrics"].items())]
    return head[:-2] + ',\n "metrics": {\n' + ",\n".join(lines) + "\n }\n}\n"


def export_cell_run(metrics_file: str | Path) -> Path:
    """Export the run that a cell's metrics file names to `run_export_path(metrics_file)`; a UserError if the store
    does not have it."""
    from mlflow.exceptions import MlflowException

    from src.errors import UserError

    metrics_file = Path(metrics_file)
    run_id = field(read_object(metrics_file, "a cell metrics file"), "mlflow_run_id", TEXT, metrics_file)
    try:
        return export_run(run_id, run_export_path(metrics_file))
    except MlflowException:
        raise UserError(
            f"{metrics_file} names MLflow run {run_id}, which is not in the store {tracking_uri()}"
        ) from None


# The fields of a run export (`export_run`), as `import_runs` and the report read them; metrics are checked point by
# point in `read_run_export`.
EXPORT_FIELDS = {
    "run_id": TEXT,
    "run_name": ANY_TEXT,
    "status": one_of("FINISHED", "FAILED", "KILLED", "RUNNING", "SCHEDULED"),
    "start_time": either(WHOLE, NULL),
    "end_time": either(WHOLE, NULL),
    "params": map_of(ANY_TEXT),
    "tags": map_of(ANY_TEXT),
    "metrics": map_of(Kind("a list", lambda v: isinstance(v, list))),
}


def read_run_export(path: str | Path) -> dict:
    """A run export, checked for its format and the type of every field `import_runs` and the report use; a
    DataError names the file and the field otherwise."""
    from src.errors import DataError

    path = Path(path)
    export = read_object(path, "an MLflow run export")
    if export.get("format") != EXPORT_FORMAT:
        raise DataError(f"{path}: not an MLflow run export of this project (no '{EXPORT_FORMAT}' marker)")
    if export.get("version") != EXPORT_VERSION:
        raise DataError(f"{path}: run export version {export.get('version')} is not the supported {EXPORT_VERSION}")
    for key, kind in EXPORT_FIELDS.items():
        field(export, key, kind, path)
    for key, history in export["metrics"].items():
        for point in history:  # [step, timestamp in ms, value]
            if not (isinstance(point, list) and len(point) == 3 and WHOLE.holds(point[0]) and WHOLE.holds(point[1])):
                raise DataError(f"{path}: field 'metrics.{key}' holds {point!r}, not [step, time in ms, value]")
            if not NUMBER_OR_NAN.holds(point[2]):
                where = f"metrics.{key}' at step {point[0]}"
                raise DataError(f"{path}: field '{where} is {point[2]!r}, not a number")
    return export


def find_run(client, run_id: str):
    """The store's run `run_id`, or the run imported from it (tag SOURCE_TAG, which an import sets last); None if
    neither is there."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException:
        pass
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        return None
    found = client.search_runs([experiment.experiment_id], f"tags.`{SOURCE_TAG}` = '{run_id}'", max_results=1)
    return found[0] if found else None


IMPORTING_TAG = "cryoet.importing_run_id"  # set when an import creates a run; SOURCE_TAG, set last, completes it


def read_run_exports(paths: Sequence[str | Path]) -> list[tuple[Path, dict]]:
    """Every export of `paths`, checked, before any is imported; two exports of one run are refused."""
    from src.errors import DataError

    exports, seen = [], {}
    for path in map(Path, paths):
        export = read_run_export(path)
        if export["run_id"] in seen:
            raise DataError(f"{seen[export['run_id']]} and {path} are both exports of run {export['run_id']}; keep one")
        seen[export["run_id"]] = path
        exports.append((path, export))
    return exports


def import_runs(paths: Sequence[str | Path]) -> tuple[list[str], list[str]]:
    """Load run exports into the store (`store_dir()`); (imported run ids, skipped: already there). Params, tags,
    every metric step with its time, and the run's start and end are kept; the id is new (MLflow assigns it).

    All or nothing per run: a run counts as imported once its last step, the tag SOURCE_TAG, is set. A failure
    half-way deletes the half-made run; one left by a process that was killed is deleted and imported again."""
    check_server(tracking_uri())  # first: a server that is down is refused before anything is read or sent
    exports = read_run_exports(paths)  # then every export, before the store is made or changed
    experiment_id = ensure_store()
    client = mlflow_client()
    imported, skipped = [], []
    for path, export in exports:
        if find_run(client, export["run_id"]) is not None:
            skipped.append(export["run_id"])
            continue
        _delete_half_imported(client, experiment_id, export["run_id"])
        imported.append(_import_run(client, experiment_id, path, export))
    return imported, skipped


def _delete_half_imported(client, experiment_id: str, source_id: str) -> None:
    """Delete the runs an import of `source_id` began and never completed (no SOURCE_TAG)."""
    query = f"tags.`{IMPORTING_TAG}` = '{source_id}'"
    for run in client.search_runs([experiment_id], query):
        if SOURCE_TAG not in run.data.tags:
            client.delete_run(run.info.run_id)


def _import_run(client, experiment_id: str, path: Path, export: dict) -> str:
    """Create one run from `export`; on any failure the run is deleted again and MLflow's refusal is one sentence."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.exceptions import MlflowException

    from src.errors import DataError

    source_id = export["run_id"]
    run = client.create_run(
        experiment_id, start_time=export["start_time"], run_name=export["run_name"], tags={IMPORTING_TAG: source_id}
    )
    run_id = run.info.run_id
    try:
        params = [Param(k, v) for k, v in export["params"].items()]
        metrics = [Metric(k, v, ts, step) for k, h in export["metrics"].items() for step, ts, v in h]
        ours = ("mlflow.runName", SOURCE_TAG, IMPORTING_TAG)
        tag_list = [RunTag(k, v) for k, v in export["tags"].items() if k not in ours]
        for start in range(0, max(len(params), len(metrics), len(tag_list)), 100):  # MLflow's per-call limits
            client.log_batch(
                run_id,
                metrics=metrics[start : start + 100],
                params=params[start : start + 100],
                tags=tag_list[start : start + 100],
            )
        client.set_terminated(run_id, status=export["status"], end_time=export["end_time"])
        client.set_tag(run_id, SOURCE_TAG, source_id)  # last: from here on the run is imported
    except BaseException as err:
        with contextlib.suppress(Exception):
            client.delete_run(run_id)
        if isinstance(err, MlflowException):
            reason = str(err.message).splitlines()[0][:200]
            raise DataError(f"{path}: MLflow refused run {source_id} ({reason}); nothing of it was imported") from None
        raise
    return run_id


def server_command(backend_store_uri: str | None, artifacts: str | Path | None, host: str, port: int) -> list[str]:
    """`mlflow server` for many writers: runs in `backend_store_uri` (default: this machine's sqlite store), artifacts
    served over HTTP from `artifacts` (default: the store's artifacts folder), so jobs on other nodes need no share."""
    import shutil

    from src.errors import UserError

    backend = backend_store_uri or local_uri()
    folder = Path(artifacts) if artifacts else store_dir() / "artifacts"
    if folder.exists() and not folder.is_dir():  # the server would start, then fail on the first upload
        raise UserError(f"--artifacts {folder} is a file; give a folder (it is made if missing)")
    if backend.startswith("sqlite:///"):
        store_dir().mkdir(parents=True, exist_ok=True)
    mlflow = shutil.which("mlflow") or "mlflow"
    return [
        mlflow,
        "server",
        "--backend-store-uri",
        backend,
        "--artifacts-destination",
        str(folder.resolve()),
        "--serve-artifacts",
        "--host",
        host,
        "--port",
        str(port),
    ]


def check_port_free(host: str, port: int) -> None:
    """A UserError unless a server may listen on host:port now: `mlflow server` on a busy port fails only after its
    start-up, and still exits 0."""
    import socket

    from src.errors import UserError

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as err:
        raise UserError(f"--host {host} is not an address to listen on ({err})") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server's own socket does
        try:
            probe.bind(address)
        except OSError as err:
            raise UserError(
                f"cannot listen on {host}:{port} ({err.strerror}): stop what uses it, or choose another --port"
            ) from None


def run_server(command: Sequence[str]) -> None:
    """Run `command` (an `mlflow server`) until it is stopped: Ctrl-C or SIGTERM here is passed on to it (to its whole
    process group, workers included), and then it ends normally. A UserError if it ends by itself, as `mlflow
    server` exits 0 even when its web server failed."""
    import signal

    from src.errors import UserError

    server = subprocess.Popen(list(command), start_new_session=True)  # its own group, which a signal reaches whole
    stopped: list[int] = []

    def stop(signum, frame):
        stopped.append(signum)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = server.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not stopped:
        raise UserError(f"the MLflow server stopped by itself (exit code {code}); its messages above say why")


# MLflow 3 opens an experiment in its GenAI view unless this tag says otherwise (the UI reads it; values as in
# mlflow/server/js: "custom_model_development" is the classic runs/metrics/models view).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
CLASSIC_VIEW = "custom_model_development"


def mark_classic_view(client, experiment_id: str) -> None:
    """Tag the experiment so that MLflow's UI opens it in the classic ML view (runs, metrics, logged models)."""
    client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, CLASSIC_VIEW)


def model_signature(n_classes: int):
    """Input float32 [batch, 1, D, H, W], output [batch, n_classes, D, H, W] (class scores); every size but the
    channels is free (-1), as the network is fully convolutional."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    volume = np.dtype("float32")
    return ModelSignature(
        inputs=Schema([TensorSpec(volume, (-1, 1, -1, -1, -1), "tomogram")]),
        outputs=Schema([TensorSpec(volume, (-1, n_classes, -1, -1, -1), "scores")]),
    )


def log_cell_model(checkpoint: str | Path, name: str = "model"):
    """Log a checkpoint's network as an MLflow PyTorch model of the active run, with its signature and the
    checkpoint's post-processing plan (as model metadata and `postprocess_plan.json`); returns the model info.

    The pytorch flavour pickles the module, which names classes in `src.models`: `code_paths` ships the `src` package
    with the model so that `mlflow.pytorch.load_model` works outside this repository too (a state_dict + pyfunc would
    need its own loader and gives no `torch.nn.Module` back; MLflow's default "pt2" export fixes the input shape)."""
    import tempfile

    import mlflow

    from src.inference.checkpoint import load_checkpoint

    model, meta = load_checkpoint(checkpoint)
    plan = meta.get("postprocess") or {}
    n_classes = int(model.config["out_channels"])
    package = Path(__file__).resolve().parent
    with tempfile.TemporaryDirectory() as tmp:
        plan_file = Path(tmp) / "postprocess_plan.json"
        plan_file.write_text(json.dumps(plan, indent=2, sort_keys=True) + "\n")
        return mlflow.pytorch.log_model(
            model,
            name=name,
            signature=model_signature(n_classes),
            # "pickle": the default "pt2" (torch.export) traces one input shape, and tomograms vary in size.
            serialization_format="pickle",
            code_paths=[str(package)],
            extra_files=[str(plan_file)],
            metadata={
                "postprocess": plan,
                "classes": [c.name for c in meta["classes"]],
                "voxel_spacing": meta["voxel_spacing"],
                "patch_size": list(meta["patch_size"]),
                "thresholds": meta["thresholds"],
            },
            pip_requirements=[f"torch=={_version('torch')}", f"monai=={_version('monai')}"],
        )


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)
