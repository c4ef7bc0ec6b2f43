"""Where the report's numbers come from: metrics/<cell>.json -> MLflow runs -> one tidy DataFrame (one row per cell).

The metrics files are what DVC's lock refers to, so they decide WHICH runs are read (by `mlflow_run_id`); the values
are read from those MLflow runs: from the store where it has them (logged there, or loaded by `tracking import`),
else from their exports in metrics/mlflow/ (a fresh clone has no store). Runs in the store that no metrics file
names are ignored. The paper's published Tables 3 and 4 (published_results.csv, a copy kept beside this module) are
loaded into the same shape.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from src import tracking
from src.errors import UserError
from src.fields import NUMBER, NUMBER_OR_NAN, OBJECT, TEXT, WHOLE, field, list_of, map_of, read_object
from src.study import Cell, Study

PUBLISHED_CSV = Path(__file__).with_name("published_results.csv")
KEYS = ["cell", "model", "channels", "patch", "sample"]
VALUES = ["fbeta", "train_minutes", "seconds_per_epoch", "inference_seconds_per_tomogram", "val_best_score"]
CLASS_PREFIX = "fbeta/"  # per-class test F-beta columns, one per class the runs logged (MLflow "test_fbeta/<class>")


def class_columns(frame: pd.DataFrame) -> list[str]:
    """The per-class columns of a `load_runs` frame, in the order the runs logged them."""
    return [c for c in frame.columns if c.startswith(CLASS_PREFIX)]


# What a cell's metrics file holds (tracking.write_cell_metrics), each checked as it is read; only `cell` and
# `mlflow_run_id` are in every file (the others are missing from older files, or from unfinished cells: test_score).
_COUNTS = map_of(map_of(map_of(WHOLE)))  # {tomogram: {class: {tp, fp, fn}}}
METRICS_FIELDS = {
    "cell": TEXT,
    "mlflow_run_id": TEXT,
    "configuration": TEXT,
    "seed": WHOLE,
    "test_score": NUMBER,
    "test_fbeta": map_of(NUMBER_OR_NAN),
    "test_counts": _COUNTS,
    "thresholds": map_of(NUMBER),
    "best_epoch": WHOLE,
    "channel_sizes": list_of(WHOLE),
    "patch_size": list_of(WHOLE),
    "weights_sha256": TEXT,
    "mlflow_tracking_uri": TEXT,
    "hardware": OBJECT,
    **{name: NUMBER_OR_NAN for name in VALUES[1:]},
}
REQUIRED = ("cell", "mlflow_run_id")


def read_metrics_file(path: str | Path) -> dict:
    """One metrics/<cell>.json, every field it has checked (a DataError names the file and the field)."""
    record = read_object(path, "a cell metrics file")
    for key in REQUIRED:
        if key not in record:
            raise UserError(f"{path} has no '{key}': it was not written by the training stage")
    for key, kind in METRICS_FIELDS.items():
        field(record, key, kind, path, default=None)
    return record


def read_metrics_files(metrics_dir: str | Path) -> list[dict]:
    """Every metrics/<cell>.json, sorted by cell name; an empty or missing folder is an error."""
    folder = Path(metrics_dir)
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not files:
        raise UserError(
            f"no cell metrics (*.json) in {folder}/: train some cells first (dvc repro) or pass --metrics-dir"
        )
    return [read_metrics_file(path) | {"_path": str(path)} for path in files]


def _metric(run: tracking.RunValues, name: str, where: str) -> float:
    if name not in run.metrics:
        raise UserError(f"{where} has no metric '{name}': the cell did not finish its test evaluation")
    return float(run.metrics[name])


def _run_values(client, tracking_uri: str | None, run_id: str, where: str) -> tracking.RunValues:
    """The run a metrics file names: from the store (as logged, or as imported), else from its export beside the
    metrics file (metrics/mlflow/<cell>.json, committed with it), else an error saying what to do."""
    run = tracking.find_run(client, run_id) if client is not None else None
    if run is not None:
        return tracking.RunValues.of_run(run)
    export_path = tracking.run_export_path(where)
    if export_path.is_file():
        export = tracking.read_run_export(export_path)
        if export["run_id"] != run_id:
            raise UserError(f"{where} names MLflow run {run_id} but its export {export_path} is run {export['run_id']}")
        return tracking.RunValues.of_export(export)
    if client is None:
        raise UserError(
            f"no MLflow store answers for {where} (its server, or {tracking.store_dir()}), and it names run "
            f"{run_id} with no export at {export_path}: re-run that cell (dvc repro -f) or point CRYOET_MLRUNS "
            "at the store it was logged to"
        )
    raise UserError(
        f"{where} names MLflow run {run_id}, which is not in the store {tracking_uri} and has no export at "
        f"{export_path}: re-run that cell (dvc repro -f) or point CRYOET_MLRUNS at the store it was logged to"
    )


class RunStores:
    """The MLflow store of each metrics file: the server it names (`mlflow_tracking_uri`, written by runs that logged
    to one), else `default` (the report's --tracking-uri), else the local sqlite store if there is one. A server that
    does not answer is skipped (the exports beside the metrics files stand in), once per server."""

    def __init__(self, default: str | None = None) -> None:
        if default is None and (tracking.store_dir() / "mlflow.db").exists():
            default = tracking.local_uri()
        self.default = default
        self._clients: dict[str, object] = {}

    def client_for(self, record: dict) -> tuple[str | None, object]:
        uri = record.get("mlflow_tracking_uri") or self.default
        if uri is None:
            return None, None
        if uri not in self._clients:
            self._clients[uri] = _client(uri)
        return uri, self._clients[uri]


def _client(uri: str):
    """A client of the store at `uri`, or None for a server that does not answer (the exports stand in for it)."""
    try:
        return tracking.mlflow_client(uri)
    except UserError:
        return None


def _record_sizes(record: dict, key: str) -> tuple[int, ...] | None:
    sizes = record.get(key)
    return tuple(int(v) for v in sizes) if isinstance(sizes, list) and sizes else None


def load_runs(metrics_dir: str | Path, study: Study, tracking_uri: str | None = None) -> pd.DataFrame:
    """One row per metrics file, with values read from the MLflow run that the file names. The sizes a cell really
    trained with are tuples in `channel_sizes` and `patch_size` (the demo trains smaller patches under the paper's
    keys)."""
    records = read_metrics_files(metrics_dir)
    stores = RunStores(tracking_uri)
    rows = []
    for record in records:
        run_id, where = record["mlflow_run_id"], record["_path"]
        uri, client = stores.client_for(record)
        run = _run_values(client, uri, run_id, where)
        cell, seed = record_cell(record, study)
        tagged = run.tags.get("cell", run.run_name)
        if tagged not in (record["cell"], cell.name):  # runs tag the cell with or without its seed suffix
            raise UserError(f"{where} is cell {record['cell']} but its MLflow run {run_id} is cell {tagged}")
        row = _record_row(record, cell, seed)
        row["run_params"] = dict(run.params)  # what the run was given: data source, epochs, ... (conclusions)
        row["run_device"] = run.tags.get("device")  # "cpu" / "cuda:0", also in runs that predate `hardware`
        # The sizes the cell trained with: from the run, else from its metrics file (runs logged before the sizes
        # were JSON), else the paper's.
        channel_sizes, patch_size = tracking.read_sizes(run.params)
        row["channel_sizes"] = channel_sizes or _record_sizes(record, "channel_sizes") or study.channels[cell.channels]
        row["patch_size"] = patch_size or _record_sizes(record, "patch_size") or study.patches[cell.patch]
        row["fbeta"] = _metric(run, "test_score", f"MLflow run {run_id} ({cell.name})")
        row["train_minutes"] = _metric(run, "train_minutes", f"MLflow run {run_id} ({cell.name})")
        for name in VALUES[2:]:
            row[name] = float(run.metrics.get(name, float("nan")))
        for key, value in run.metrics.items():
            if key.startswith("test_fbeta/"):
                row[CLASS_PREFIX + key.split("/", 1)[1]] = float(value)
        row["run_id"] = run_id
        rows.append(row)
    return _tidy(rows)


def record_cell(record: dict, study: Study) -> tuple[Cell, int]:
    """The grid configuration and training seed of a metrics file. Files written before seeds were a grid axis have
    neither `configuration` nor `seed`: their cell name is the configuration and the seed was 0."""
    where = record.get("_path", record["cell"])
    configuration = field(record, "configuration", TEXT, where, None) or record["cell"]
    seed = field(record, "seed", WHOLE, where, 0)
    if seed < 0:
        raise UserError(f"{where}: field 'seed' is {seed}, not a whole number of at least 0")
    return study.parse(configuration), seed


def _record_row(record: dict, cell: Cell, seed: int) -> dict:
    """The keys of one run, and what only its metrics file holds: per-tomogram test counts and the hardware."""
    row = {"cell": cell.name, "model": cell.model, "channels": cell.channels, "patch": cell.patch}
    row |= {"sample": cell.sample, "seed": seed, "run_cell": record["cell"]}
    row["test_counts"] = record.get("test_counts")  # {tomogram: {class: {tp, fp, fn}}}; None in older files
    row["hardware"] = record.get("hardware")  # {cpu, gpu, device, deterministic, ...}; None in older files
    return row


def _tidy(rows: list[dict]) -> pd.DataFrame:
    """The rows as a frame in the paper's order; two files for one (configuration, seed) are an error."""
    frame = pd.DataFrame(rows)
    duplicated = frame["run_cell"][frame[["cell", "seed"]].duplicated()]
    if len(duplicated):
        raise UserError(f"more than one metrics file for cell {duplicated.iloc[0]}")
    return frame.sort_values(["sample", "model", "channels", "patch", "seed"]).reset_index(drop=True)


def frame_from_metrics(metrics_dir: str | Path, study: Study) -> pd.DataFrame:
    """The same frame as `load_runs`, from the metrics files alone (no MLflow store): what `compare` reads, so a
    rerun on another machine can be checked from its metrics/ folder."""
    rows = []
    for record in read_metrics_files(metrics_dir):
        cell, seed = record_cell(record, study)
        row = _record_row(record, cell, seed)
        sizes = {"channel_sizes": study.channels[cell.channels], "patch_size": study.patches[cell.patch]}
        for key, paper in sizes.items():
            row[key] = _record_sizes(record, key) or paper
        if "test_score" not in record:
            raise UserError(f"{record['_path']} has no 'test_score': the cell did not finish its test evaluation")
        row["fbeta"] = float(record["test_score"])
        for name in VALUES[1:]:
            row[name] = float(record.get(name, float("nan")))
        for name, value in (record.get("test_fbeta") or {}).items():
            row[CLASS_PREFIX + name] = float(value)
        row["run_id"] = record["mlflow_run_id"]
        rows.append(row)
    return _tidy(rows)


def _sizes(label: str, sep: str) -> tuple[int, ...] | None:
    try:
        return tuple(int(v) for v in label.split(sep))
    except ValueError:
        return None


def load_published(study: Study, path: str | Path = PUBLISHED_CSV) -> pd.DataFrame:
    """The paper's Tables 3 and 4 in the same shape as `load_runs` (keys, fbeta, train_minutes; no per-class scores).
    The CSV writes sizes as the paper does ("16-32-64-128", "32x64x64"); they map to the study's keys by value."""
    raw = pd.read_csv(path, dtype={"sample": str, "channels": str, "patch_size": str})
    channels = {sizes: key for key, sizes in study.channels.items()}
    patches = {sizes: key for key, sizes in study.patches.items()}
    frame = pd.DataFrame(
        {
            "model": raw["model"],
            "channels": raw["channels"].map(lambda label: channels.get(_sizes(label, "-"))),
            "patch": raw["patch_size"].map(lambda label: patches.get(_sizes(label, "x"))),
            "sample": "s" + raw["sample"],
            "fbeta": raw["fbeta"].astype(float),
            "train_minutes": raw["train_minutes"].astype(float),
        }
    )
    # Rows of sizes the study does not hold (a study that changed study.channels or study.patches) are left out.
    frame = frame.dropna(subset=["channels", "patch"]).reset_index(drop=True)
    frame.insert(0, "cell", [Cell(*r).name for r in frame[["model", "channels", "patch", "sample"]].itertuples(False)])
    return frame
