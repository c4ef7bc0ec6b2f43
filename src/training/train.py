"""Train one grid cell, validate it with the competition metric through the real inference path, test it, log it.

One epoch is `train.steps_per_epoch` steps; a step loads `train.batch_size` tomograms drawn at random from the sample's
training tomograms and trains on `train.crops_per_volume` augmented crops of each (src/training/batches.py). Every
random stream is re-seeded from (seed, epoch) at the start of each epoch, so a run resumed from the checkpoint written
at the end of an epoch ends with the same weights as an uninterrupted one (on a CPU).

Files: while training, the cell's one file is `models/.<cell>.partial/last.pt`, the resume state (weights, optimiser,
progress, and the best validated checkpoint so far, which the run otherwise keeps in memory). Only at the end is
`models/<cell>/` (model.pt, the best checkpoint with its tuned post-processing plan, written once; history.json)
renamed into place and `metrics/<cell>.json` written, so a crash never leaves an output that looks complete.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import platform
import resource
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from monai.losses import TverskyLoss
from monai.utils import set_determinism
from tqdm import tqdm

from src import tracking
from src.atomic import DiskFull, atomic_output, check_output
from src.data.copick_io import SPACING_TOLERANCE
from src.data.masks import label_mask
from src.data.prepare import MANIFEST_NAME, open_project
from src.data.split import read_split
from src.errors import DataError, UserError
from src.hardware import hardware_record, pick_device, use_deterministic_algorithms
from src.inference.checkpoint import checkpoint_payload, model_and_meta, save_torch, weights_sha256
from src.inference.plan import PostprocessPlan
from src.inference.predict import predict_run_maps, predict_runs
from src.inference.thresholds import tune_plan
from src.metric import fbeta_score
from src.models import build_model
from src.params import Params
from src.study import Cell, Study
from src.training.batches import epoch_batches
from src.training.paths import CellPaths
from src.training.transforms import augment, preprocess, volume_item

# Params that change how fast a cell trains, never its numbers: a run may resume under other values.
SPEED_ONLY = ("prefetch",)


def data_fingerprint(params: Params) -> str:
    """A short hash of what the cell was trained on: the project manifest and the split file."""
    digest = hashlib.sha256()
    for path in (Path(params.data.out) / MANIFEST_NAME, Path(params.split.out)):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _solution(project, runs) -> pd.DataFrame:
    return pd.concat([project.picks(r) for r in runs], ignore_index=True)


def _flatten(prefix: str, value) -> dict:
    """{"a.b.c": leaf} of a nested params dataclass or dict."""
    if dataclasses.is_dataclass(value):
        value = asdict(value)
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flatten(f"{prefix}.{key}", item).items()}
    return {prefix: str(value) if isinstance(value, list | tuple) else value}


def _flat_params(cell: Cell, params: Params, patch: tuple[int, int, int]) -> dict:
    """Every param the cell ran with: its own model and sizes, then each params.yaml section it depends on."""
    t = params.train
    model = params.study.models[cell.model]
    flat = {
        "cell": cell.run_name,
        "configuration": cell.name,
        "model": cell.model,
        "sample": cell.sample_number,
        "seed": cell.seed,
        "attention": model.attention,
        **_flatten("attention_kwargs", model.attention_kwargs),
        **tracking.size_params(params.study.channels[cell.channels], patch),
        **{k: v for k, v in asdict(t).items() if k not in ("augment", "network", "seeds")},
        **_flatten("network", t.network),
        **_flatten("augment", t.augment),
        **_flatten("predict", params.predict),
        **_flatten("masks", params.masks),
        **_flatten("data", params.data),
        **_flatten("split", params.split),
        **_flatten("classes", params.classes),
    }
    if params.data.source == "synthetic":
        flat.update(_flatten("synth", params.synth))
    return flat


def _seed_epoch(seed: int, epoch: int, transforms) -> np.random.Generator:
    set_determinism(seed=seed * 100_003 + epoch)
    transforms.set_random_state(seed=seed * 100_003 + epoch)
    return np.random.default_rng([seed, epoch])


def training_volumes(project, runs, params: Params) -> tuple[list[dict], float]:
    """The runs' tomograms and label masks, preprocessed once, and their one true voxel spacing (A): the checkpoint
    records it, and validation, test and predict read each run at it, so runs at other spacings are refused."""
    prep = preprocess(len(project.classes) + 1)
    volumes, spacings = [], {}
    for run in runs:
        tomo = project.tomogram(run, params.data.tomo_type, params.data.voxel_spacing)
        mask = label_mask(
            tomo.data.shape,
            project.picks(run, tomo),
            project.classes,
            tomo.voxel_spacing,
            params.masks.label_radius_fraction,
        )
        volumes.append(prep(volume_item(tomo.data, mask, tomo.voxel_spacing)))
        spacings[run] = float(tomo.voxel_spacing)
    first = next(iter(spacings.values()))
    odd = {run: s for run, s in spacings.items() if abs(s - first) > SPACING_TOLERANCE * first}
    if odd:
        run, spacing = next(iter(odd.items()))
        raise DataError(
            f"training tomograms differ in voxel spacing ({runs[0]}: {first:g} A, {run}: {spacing:g} A): a model is "
            "trained at one spacing, so a sample's training runs must share one"
        )
    return volumes, first


def training_loss(t) -> TverskyLoss:
    """The paper's Tversky loss on softmax outputs; `t` is params.train (alpha weighs false positives)."""
    return TverskyLoss(to_onehot_y=True, softmax=True, alpha=t.tversky_alpha, beta=t.tversky_beta)


def train_step(model, optimizer, loss_fn, image: torch.Tensor, label: torch.Tensor, use_amp: bool) -> float:
    """One optimiser step; the loss of the batch. `use_amp`: bf16 autocast, which needs no gradient scaling."""
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(image.device.type, dtype=torch.bfloat16, enabled=use_amp):
        loss = loss_fn(model(image).float(), label.long())
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def peak_memory(device: torch.device) -> dict[str, float]:
    """This process's peak resident memory so far, and on a GPU the peak memory torch allocated there, in MB."""
    peaks = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # KiB on Linux
    if device.type == "cuda":
        peaks["peak_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return peaks


def _raise_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


@dataclass
class TrainState:
    """What a resumed run continues from (saved in `last.pt` after every epoch)."""

    epoch: int = 0
    best_score: float = -1.0
    best_epoch: int = -1
    history: list[dict] = field(default_factory=list)
    run_id: str | None = None
    seconds: float = 0.0
    resumed_from: list[int] = field(default_factory=list)  # the epoch each resume continued from (grid retries)


@dataclass
class CellSession:
    """Everything the steps of one cell share: its data, model, optimiser and progress."""

    cell: Cell
    params: Params
    paths: CellPaths
    device: torch.device
    project: object
    split: dict
    patch: tuple[int, int, int]
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: TverskyLoss
    use_amp: bool
    volumes: list[dict]
    voxel_spacing: float
    transforms: object
    state: TrainState
    best: dict | None = None  # the best validated checkpoint so far (`checkpoint_payload`, with its plan), in memory
    force: bool = False  # replace a models/<cell> folder that this program did not make
    fingerprint: dict = field(default_factory=dict)  # {"sha256", "params", "model"}: what `last.pt` must match
    lock: object = None  # the cell's lock file, held open (so locked) as long as the session lives

    @property
    def sample(self) -> dict:
        """{"train": [...], "val": [...]} runs of the cell's sample."""
        return self.split["samples"][self.cell.sample_number]

    @property
    def classes(self):
        return self.project.classes

    def checkpoint_meta(self) -> dict:
        """The plan saved with every checkpoint (nnU-Net style): how to rebuild and apply the model."""
        return dict(
            model_name=self.cell.model,
            classes=self.classes,
            voxel_spacing=self.voxel_spacing,
            patch_size=self.patch,
            thresholds={},
        )


def cell_fingerprint(flat: dict, model_config: dict) -> dict:
    """What a resumed run must share with the one it continues: the cell's flattened params and model config, and the
    sha256 of both (plain data, so `last.pt` loads with `weights_only=True`)."""
    plain = json.loads(json.dumps({"params": flat, "model": model_config}, sort_keys=True, default=str))
    digest = hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()
    return {"sha256": digest, **plain}


def _changes(old: dict, new: dict, prefix: str) -> list[str]:
    return [
        f"{prefix}{key} changed from {old.get(key, '(absent)')!r} to {new.get(key, '(absent)')!r}"
        for key in sorted(set(old) | set(new), key=str)
        if old.get(key, "(absent)") != new.get(key, "(absent)")
    ]


def _notice(text: str) -> None:
    print(f"notice: {text}", file=sys.stderr, flush=True)


def read_resume_state(last: Path, device: torch.device | str = "cpu") -> dict:
    """The saved resume state (plain data, loaded with `weights_only=True`); a UserError if it cannot be read."""
    try:
        saved = torch.load(last, map_location=device, weights_only=True)
    except Exception as err:  # torch raises many types for a truncated or foreign file
        raise UserError(
            f"{last} cannot be read to resume ({type(err).__name__}: it is damaged or truncated); "
            "start the cell over without --resume"
        ) from None
    if not isinstance(saved, dict) or not {"model", "optimizer", "state"} <= set(saved):
        raise UserError(f"{last} is not a resume state of this program; start the cell over without --resume")
    return saved


def _resume(cell: Cell, last: Path, device, model, optimizer, fingerprint: dict) -> tuple[TrainState, dict | None]:
    """(progress, best checkpoint so far) of the run `last` was saved by, its weights and optimiser loaded."""
    saved = read_resume_state(last, device)
    old = saved.get("fingerprint")
    if not isinstance(old, dict) or "sha256" not in old:
        raise UserError(f"{last} holds no params fingerprint (an older version wrote it); start over without --resume")
    if old["sha256"] != fingerprint["sha256"]:
        changed = _changes(old.get("params", {}), fingerprint["params"], "")
        changed += _changes(old.get("model", {}), fingerprint["model"], "model ")
        what = changed[0] if changed else "the params fingerprint changed"
        more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
        raise UserError(
            f"cannot resume {cell.run_name} from {last}: {what}{more} since it was saved; "
            "restore them or start over without --resume"
        )
    try:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        state, best = TrainState(**saved["state"]), saved.get("best")
    except Exception as err:
        raise UserError(
            f"{last} does not fit the model of {cell.run_name} ({type(err).__name__}); start over without --resume"
        ) from None
    if state.best_epoch > 0 and not isinstance(best, dict):
        raise UserError(f"{last} holds no best checkpoint (an older version wrote it); start over without --resume")
    if best is not None:  # loaded onto the training device; published from the CPU
        best["state_dict"] = {k: v.cpu() for k, v in best["state_dict"].items()}
    return state, best


def _fail_abandoned_run(last: Path) -> None:
    """A cell started over: the MLflow run its old `last.pt` names is marked FAILED if it still says RUNNING."""
    try:
        saved = torch.load(last, map_location="cpu", weights_only=True)
        run_id = saved["state"]["run_id"]
    except Exception:  # unreadable: nothing to go on
        return
    if run_id and tracking.fail_run_if_running(run_id):
        _notice(f"MLflow run {run_id} of the interrupted attempt was still RUNNING; marked FAILED")


def lock_cell(cell: Cell, paths: CellPaths):
    """One writer per cell: a lock (flock) on a file beside its `.partial` folder, held while the returned file is open
    and released by the OS however the process ends. A second run of the cell refuses at once, naming the holder."""
    path = paths.partial.with_name(f".{cell.run_name}.lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = path.open("a+")
    except OSError as err:
        raise UserError(f"cannot create {path}: {err.strerror}") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "another process"
        lock.close()
        raise UserError(f"cell {cell.run_name} is being trained by {holder}: wait for it to end, or stop it") from None
    lock.truncate(0)  # "a+": the write below lands at the start
    lock.write(f"pid {os.getpid()} on {platform.node()} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
    lock.flush()
    return lock


def check_patch_fits(cell: Cell, patch: tuple[int, ...], project, train_runs: list[str], params: Params) -> None:
    """From the metadata, before any work: a patch must fit every training tomogram."""
    for run in train_runs:
        shape = project.volume_shape(run, params.data.tomo_type, params.data.voxel_spacing).shape
        if any(p > s for p, s in zip(patch, shape, strict=True)):
            raise UserError(
                f"cell {cell.run_name} trains patches of {list(patch)} voxels, larger than run {run}'s tomogram "
                f"{list(shape)}: lower train.patch_scale or study.patches.{cell.patch}"
            )


def clear_attempt(paths: CellPaths) -> None:
    """A fresh start: the old attempt's MLflow run is marked FAILED and its partial folder goes."""
    last = paths.partial / "last.pt"
    if last.exists():
        _fail_abandoned_run(last)
    if paths.partial.exists():
        shutil.rmtree(paths.partial)


def setup_cell(
    cell: Cell, params: Params, resume: bool = False, force: bool = False, device: str | None = None
) -> CellSession:
    """Build the cell's model, optimiser and training data; with `resume`, continue from its last finished epoch.

    Outputs are checked first (`models/<cell>` replaced only if this program made it, unless `force`). `--resume`
    refuses a `last.pt` whose params or model config differ from now; without `resume` an old attempt is cleared and
    its MLflow run marked FAILED. `device`: cpu, cuda or cuda:N (default: the first GPU if one is seen, else the CPU).
    """
    t = params.train
    device = pick_device(device)
    use_deterministic_algorithms()  # before the first CUDA call; recorded with the run (hardware_record)
    paths = CellPaths.of(cell, t)
    check_output(paths.final, folder=True, force=force)
    check_output(paths.metrics)
    project = open_project(params)
    spec = params.study.models[cell.model]
    torch.manual_seed(cell.seed)
    model = build_model(
        spec.attention,
        params.study.channels[cell.channels],
        len(project.classes) + 1,
        spec.attention_kwargs,
        **asdict(t.network),
    ).to(device)
    patch = Study.from_params(params).trained_patch(cell.patch, t.patch_scale, model.size_divisor)
    split = read_split(params.split.out)
    train_runs = split["samples"][cell.sample_number]["train"]
    check_patch_fits(cell, patch, project, train_runs, params)
    optimizer = torch.optim.Adam(model.parameters(), lr=t.lr)
    flat = {k: v for k, v in _flat_params(cell, params, patch).items() if k not in SPEED_ONLY}
    fingerprint = cell_fingerprint(flat, model.config)
    state, best = TrainState(), None
    last = paths.partial / "last.pt"
    resuming = resume and last.exists()
    if resuming:  # reads only: a refused resume leaves every file as it was
        state, best = _resume(cell, last, device, model, optimizer, fingerprint)
        state.resumed_from.append(state.epoch)
    # Before anything writes to the cell's files (after the checks, so a refused command creates no lock file): a
    # second run of the cell must not clear the first's attempt.
    lock = lock_cell(cell, paths)
    if not resuming:
        if resume:
            _notice(f"nothing to resume for {cell.run_name} (no {last}); starting from the first epoch")
        clear_attempt(paths)
    try:
        paths.partial.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create {paths.partial}: {err.strerror}") from None
    volumes, voxel_spacing = training_volumes(project, train_runs, params)
    return CellSession(
        cell=cell,
        params=params,
        paths=paths,
        device=device,
        project=project,
        split=split,
        patch=patch,
        model=model,
        optimizer=optimizer,
        loss_fn=training_loss(t),
        use_amp=t.amp and device.type == "cuda",
        volumes=volumes,
        voxel_spacing=voxel_spacing,
        transforms=augment(patch, len(project.classes) + 1, t.augment, t.crops_per_volume),
        state=state,
        best=best,
        force=force,
        fingerprint=fingerprint,
        lock=lock,
    )


def fit_epoch(session: CellSession, epoch: int, bar: tqdm | None = None) -> dict:
    """Train one epoch (0-based `epoch`) of `train.steps_per_epoch` batches; its history record."""
    t, state = session.params.train, session.state
    start = time.perf_counter()
    rng = _seed_epoch(session.cell.seed, epoch, session.transforms)
    session.model.train()
    losses = []
    batches = epoch_batches(
        session.transforms, session.volumes, rng, t.steps_per_epoch, t.batch_size, session.device, t.prefetch
    )
    for image, label in batches:
        losses.append(train_step(session.model, session.optimizer, session.loss_fn, image, label, session.use_amp))
        if bar is not None:
            bar.update(1)
            best = f"{state.best_score:.3f}" if state.best_epoch > 0 else "n/a"  # nothing validated yet
            bar.set_postfix(epoch=epoch + 1, loss=f"{np.mean(losses):.4f}", best=best)
    return {"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "train_seconds": time.perf_counter() - start}


def validate(session: CellSession, epoch: int):
    """Score the current model on the sample's validation runs with the competition metric, through the real
    predict path (a model rebuilt from the checkpoint it would publish, as `predict` loads it), with the
    post-processing plan tuned on the maps of this same pass (so tuning never reruns inference); keep that checkpoint
    with its plan as the best when it beats the best so far. Returns the score result."""
    state, d = session.state, session.params.data
    runs = session.sample["val"]
    current = checkpoint_payload(session.model, **session.checkpoint_meta())
    loaded = model_and_meta(current, session.device, f"{session.cell.run_name} at epoch {epoch + 1}")
    maps = predict_run_maps(loaded, session.project, runs, d.tomo_type, d.voxel_spacing, session.params, False)
    plan, val = tune_plan(maps, _solution(session.project, runs), session.classes, session.params)
    current["postprocess"] = plan.to_dict()
    if val.score > state.best_score:
        state.best_score, state.best_epoch = val.score, epoch + 1
        session.best = current
    return val


@contextlib.contextmanager
def resumable_on_full_disk() -> Iterator[None]:
    """A full disk while a cell saves its files: once space is freed, --resume goes on from the last epoch saved."""
    try:
        yield
    except DiskFull as err:
        raise err.then("resume with --resume") from None


def save_resume_state(session: CellSession) -> None:
    """`last.pt`: weights, optimiser, progress (the `TrainState` as a dict) and the params fingerprint, written
    atomically; all plain data, so it loads with `weights_only=True`."""
    saved = {"model": session.model.state_dict(), "optimizer": session.optimizer.state_dict(), "best": session.best}
    with resumable_on_full_disk():
        save_torch(
            {**saved, "state": asdict(session.state), "fingerprint": session.fingerprint},
            session.paths.partial / "last.pt",
        )


def select_and_tune(session: CellSession) -> dict[str, float]:
    """The best checkpoint's per-class thresholds for its chosen extractor. `validate` tuned its plan on the maps of
    the validation pass that chose it and kept it with the checkpoint, so nothing is inferred again here."""
    import mlflow

    plan = PostprocessPlan.from_dict(session.best["postprocess"])
    if mlflow.active_run():
        mlflow.log_param("postprocess.extractor", plan.extractor)
    return plan.class_thresholds(session.classes, session.params.predict.default_threshold)


def evaluate_test_set(session: CellSession):
    """The best checkpoint on the common test set, through the same predict path users run: (score result,
    inference seconds per tomogram)."""
    runs = session.split["test"]
    start = time.perf_counter()
    test = _score_runs(session, model_and_meta(session.best, session.device, f"{session.cell.run_name}'s best"), runs)
    return test, (time.perf_counter() - start) / max(len(runs), 1)


def _score_runs(session: CellSession, loaded, runs: list[str]):
    """The competition score of a loaded (model, meta) on annotated runs, through the predict path users run."""
    params = session.params
    points = predict_runs(
        loaded,
        session.project,
        runs,
        params.data.tomo_type,
        params.data.voxel_spacing,
        params,
        progress=False,
    )
    return fbeta_score(_solution(session.project, runs), points, session.classes)


def publish(session: CellSession, run_id: str, test, thresholds: dict[str, float], durations: dict) -> dict:
    """Move the model into place (logging it to MLflow), then write metrics/<cell>.json; returns that record."""
    import mlflow

    cell, paths = session.cell, session.paths
    # The artifact first: after the rename only the metrics file is left to write.
    with atomic_output(paths.final, folder=True, force=session.force) as tmp:
        save_torch(session.best, tmp / "model.pt")  # the one write of the published checkpoint
        (tmp / "history.json").write_text(json.dumps(session.state.history, indent=2) + "\n")
        mlflow.log_artifact(str(tmp / "model.pt"))  # the checkpoint `predict` reads, kept beside the logged model
        tracking.log_cell_model(tmp / "model.pt")
    mlflow.log_dict(test.counts_by_tomogram(), "test_counts.json")
    record = {
        "cell": cell.run_name,
        "configuration": cell.name,
        "model": cell.model,
        "channels": cell.channels,
        "patch": cell.patch,
        "sample": cell.sample,
        "seed": cell.seed,
        **({"rerun_threads": cell.rerun_threads} if cell.rerun_threads else {}),
        "channel_sizes": list(session.params.study.channels[cell.channels]),
        "patch_size": list(session.patch),
        "mlflow_run_id": run_id,
        **tracking.store_record(),
        "resumed_from_epochs": session.state.resumed_from,
        "test_score": test.score,
        "test_fbeta": {k: v.fbeta for k, v in test.classes.items()},
        # TP/FP/FN per test tomogram and class, so the report can resample tomograms.
        "test_counts": test.counts_by_tomogram(),
        "thresholds": thresholds,
        # The published model's weights, bit for bit: what an exact rerun must give (report compare, level "exact").
        "weights_sha256": weights_sha256(session.best["state_dict"]),
        **durations,
        # Which machine made these numbers: a rerun elsewhere differs by floating-point rounding (see README).
        "hardware": hardware_record(session.device),
    }
    tracking.write_cell_metrics(paths.metrics, record)
    return record


def _tags(session: CellSession) -> dict[str, str]:
    cell = session.cell
    return {
        "cell": cell.run_name,
        "configuration": cell.name,
        "model": cell.model,
        "channels": cell.channels,
        "patch": cell.patch,
        "sample": cell.sample,
        "seed": str(cell.seed),
        **({"rerun_threads": str(cell.rerun_threads)} if cell.rerun_threads else {}),
        "git_commit": tracking.git_commit(),
        "dvc_stage": cell.stage,
        "data_fingerprint": data_fingerprint(session.params),
        "device": str(session.device),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        **{f"hardware.{k}": str(v) for k, v in hardware_record(session.device).items()},
    }


def _say(progress: bool, text: str) -> None:
    """One line per epoch and phase where the bar does not show (output to a file or pipe); phases also on a terminal
    (validation and testing take seconds to minutes with no bar)."""
    if progress:
        tqdm.write(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr)


def train_cell(
    cell: Cell,
    params: Params,
    resume: bool = False,
    progress: bool = True,
    force: bool = False,
    device: str | None = None,
) -> dict:
    """Train, validate, tune thresholds, test and log one cell on `device` (see `setup_cell`); returns the record
    written to metrics/<cell>.json. While it runs, SIGTERM raises (a killed stage marks its MLflow run FAILED); the
    caller's handler is put back after."""
    previous = signal.signal(signal.SIGTERM, _raise_on_sigterm)
    try:
        return _run_cell(cell, params, resume, progress, force, device)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_cell(cell: Cell, params: Params, resume: bool, progress: bool, force: bool, device: str | None) -> dict:
    session = setup_cell(cell, params, resume, force, device)
    t, state = params.train, session.state
    flat = _flat_params(cell, params, session.patch)
    with tracking.cell_run(cell.mlflow_name, _tags(session), flat, run_id=state.run_id) as run:
        import mlflow
        import monai

        mlflow.set_tag("monai_version", monai.__version__)
        if state.run_id is None:
            state.run_id = run.info.run_id
            save_resume_state(session)  # so a restart finds (and closes) this run even if killed in the first epoch
        if state.resumed_from:  # a resumed run says so: the grid's retries continue, they do not start over
            mlflow.set_tag("resumed_from_epochs", ",".join(map(str, state.resumed_from)))
        total = (t.epochs - state.epoch) * t.steps_per_epoch
        bar = tqdm(total=total, desc=cell.run_name, unit="step", disable=None if progress else True)
        for epoch in range(state.epoch, t.epochs):
            epoch_start = time.perf_counter()
            record = fit_epoch(session, epoch, bar)
            mlflow.log_metric("train_loss", record["train_loss"], step=epoch + 1)
            if (epoch + 1) % t.val_every == 0 or epoch + 1 == t.epochs:
                _say(progress, f"{cell.name}: epoch {epoch + 1}/{t.epochs}, validating")
                val_start = time.perf_counter()
                val = validate(session, epoch)
                record["val_seconds"] = time.perf_counter() - val_start
                record["val_score"] = val.score
                mlflow.log_metric("val_score", val.score, step=epoch + 1)
                mlflow.log_metrics({f"val_fbeta/{k}": v.fbeta for k, v in val.classes.items()}, step=epoch + 1)
            state.history.append(record)
            state.epoch = epoch + 1
            state.seconds += time.perf_counter() - epoch_start  # training and validation
            save_resume_state(session)
            if bar.disable:
                best = f"{state.best_score:.3f} (epoch {state.best_epoch})" if state.best_epoch > 0 else "n/a"
                _say(
                    progress, f"{cell.name}: epoch {epoch + 1}/{t.epochs}, loss {record['train_loss']:.4f}, best {best}"
                )
        bar.close()
        _say(progress, f"{cell.name}: tuning thresholds on {len(session.sample['val'])} validation runs")
        thresholds = select_and_tune(session)
        mlflow.log_params({f"threshold.{k}": round(v, 4) for k, v in thresholds.items()})
        _say(progress, f"{cell.name}: testing on {len(session.split['test'])} runs")
        test, inference_seconds = evaluate_test_set(session)
        durations = {
            "train_minutes": state.seconds / 60,
            "seconds_per_epoch": float(np.mean([h["train_seconds"] for h in state.history])),
            "inference_seconds_per_tomogram": inference_seconds,
            "val_best_score": state.best_score,
            "best_epoch": state.best_epoch,
            # validation's share of the time above (inference on the validation runs and tuning), and the memory peaks
            "validation_minutes": sum(h.get("val_seconds", 0.0) for h in state.history) / 60,
            **peak_memory(session.device),
        }
        tracking.log_test_result(test.score, {k: v.fbeta for k, v in test.classes.items()}, durations)
        with resumable_on_full_disk():
            record = publish(session, run.info.run_id, test, thresholds, durations)
    tracking.export_cell_run(session.paths.metrics)  # the finished run, for git: metrics/mlflow/<cell>.json
    shutil.rmtree(session.paths.partial)
    return record
