"""Train one grid cell, validate it with the competition metric through the real inference path, test it, log it.

One epoch is `train.steps_per_epoch` random patches (batch size `train.batch_size`) drawn from the sample's training
tomograms. Every random stream is re-seeded from (seed, epoch) at the start of each epoch, so a run resumed from the
checkpoint written at the end of an epoch ends with the same weights as an uninterrupted one (on a CPU).

Files: while training, everything lives in `models/.<cell>.partial/` (`last.pt`: the resume state, `best.pt`: the
best validated model). Only at the end is `models/<cell>/` (model.pt with tuned thresholds, history.json) renamed
into place and `metrics/<cell>.json` written, so a crash never leaves an output that looks complete.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import shutil
import signal
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from monai.losses import TverskyLoss
from monai.utils import set_determinism
from tqdm import tqdm

from src.atomic import atomic_output
from src.data.masks import label_mask
from src.data.prepare import MANIFEST_NAME, open_project
from src.data.split import read_split
from src.inference.checkpoint import load_checkpoint, save_checkpoint, update_thresholds
from src.inference.predict import default_device, predict_runs, tune_on_runs
from src.metric import fbeta_score
from src.models import build_model
from src.params import Params
from src.training import tracking
from src.training.cells import Cell
from src.training.transforms import augment, preprocess, volume_item


def cell_dirs(cell: Cell) -> tuple[Path, Path, Path]:
    """(final model folder, in-progress folder, metrics file) of a cell."""
    return Path("models") / cell.name, Path("models") / f".{cell.name}.partial", Path("metrics") / f"{cell.name}.json"


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


def _flat_params(cell: Cell, params: Params) -> dict:
    """Every param the cell ran with: its own sizes, then each params.yaml section it depends on, flattened."""
    t = params.train
    flat = {
        "cell": cell.name,
        "model": cell.model,
        "channels": "-".join(map(str, t.channels[cell.channels])),
        "patch_size": "x".join(map(str, t.patches[cell.patch])),
        "sample": cell.sample_number,
        **{k: v for k, v in asdict(t).items() if k not in ("channels", "patches", "augment", "network")},
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
    """The runs' tomograms and label masks, preprocessed once, and their true voxel spacing (A)."""
    prep = preprocess(len(project.classes) + 1)
    volumes = []
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
    return volumes, float(tomo.voxel_spacing)


def training_loss(t) -> TverskyLoss:
    """The paper's Tversky loss on softmax outputs; `t` is params.train (alpha weighs false positives)."""
    return TverskyLoss(to_onehot_y=True, softmax=True, alpha=t.tversky_alpha, beta=t.tversky_beta)


def draw_batch(transforms, volumes: list[dict], rng: np.random.Generator, batch_size: int, device: torch.device):
    """(image, label) tensors of `batch_size` augmented patches, each from a tomogram drawn at random."""
    batch = [transforms(volumes[int(rng.integers(len(volumes)))])[0] for _ in range(batch_size)]
    image = torch.stack([b["image"].as_tensor() for b in batch]).to(device)
    label = torch.stack([b["label"].as_tensor() for b in batch]).to(device)
    return image, label


def train_step(model, optimizer, loss_fn, image: torch.Tensor, label: torch.Tensor, use_amp: bool) -> float:
    """One optimiser step; the loss of the batch. `use_amp`: bf16 autocast, which needs no gradient scaling."""
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(image.device.type, dtype=torch.bfloat16, enabled=use_amp):
        loss = loss_fn(model(image).float(), label.long())
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def _raise_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def train_cell(cell: Cell, params: Params, resume: bool = False, progress: bool = True) -> dict:
    """Train, validate, tune thresholds, test and log one cell; returns the record written to metrics/<cell>.json."""
    signal.signal(signal.SIGTERM, _raise_on_sigterm)  # a killed stage marks its MLflow run FAILED
    t = params.train
    device = default_device()
    final_dir, partial, metrics_path = cell_dirs(cell)
    split = read_split(params.split.out)
    sample = split["samples"][cell.sample_number]
    project = open_project(params)
    classes = project.classes
    spacing_folder = params.data.voxel_spacing
    patch = t.patches[cell.patch]

    torch.manual_seed(t.seed)
    model = build_model(
        cell.model, channels=t.channels[cell.channels], out_channels=len(classes) + 1, **asdict(t.network)
    ).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=t.lr)
    loss_fn = training_loss(t)
    use_amp = t.amp and device.type == "cuda"

    state = {"epoch": 0, "best_score": -1.0, "best_epoch": -1, "history": [], "run_id": None, "seconds": 0.0}
    last = partial / "last.pt"
    if resume and last.exists():
        saved = torch.load(last, map_location=device, weights_only=False)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        state = saved["state"]
    elif partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)

    volumes, voxel_spacing = training_volumes(project, sample["train"], params)
    transforms = augment(patch, len(classes) + 1, t.augment)
    val_solution = _solution(project, sample["val"])
    checkpoint_meta = dict(
        model_name=cell.model, classes=classes, voxel_spacing=voxel_spacing, patch_size=patch, thresholds={}
    )

    tags = {
        "cell": cell.name,
        "model": cell.model,
        "channels": cell.channels,
        "patch": cell.patch,
        "sample": cell.sample,
        "git_commit": tracking.git_commit(),
        "dvc_stage": f"train@{cell.name}",
        "data_fingerprint": data_fingerprint(params),
        "device": str(device),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
    }
    with tracking.cell_run(cell.name, tags, _flat_params(cell, params), run_id=state["run_id"]) as run:
        import mlflow
        import monai

        mlflow.set_tag("monai_version", monai.__version__)
        state["run_id"] = run.info.run_id
        total = (t.epochs - state["epoch"]) * t.steps_per_epoch
        bar = tqdm(total=total, desc=cell.name, unit="step", disable=None if progress else True)
        for epoch in range(state["epoch"], t.epochs):
            epoch_start = time.perf_counter()
            rng = _seed_epoch(t.seed, epoch, transforms)
            model.train()
            losses = []
            for _ in range(t.steps_per_epoch):
                image, label = draw_batch(transforms, volumes, rng, t.batch_size, device)
                losses.append(train_step(model, optimizer, loss_fn, image, label, use_amp))
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{np.mean(losses):.4f}", best=f"{state['best_score']:.3f}")
            record = {
                "epoch": epoch + 1,
                "train_loss": float(np.mean(losses)),
                "train_seconds": time.perf_counter() - epoch_start,
            }
            mlflow.log_metric("train_loss", record["train_loss"], step=epoch + 1)
            if (epoch + 1) % t.val_every == 0 or epoch + 1 == t.epochs:
                save_checkpoint(partial / "current.pt", model, **checkpoint_meta)
                points = predict_runs(
                    load_checkpoint(partial / "current.pt", device),
                    project,
                    sample["val"],
                    params.data.tomo_type,
                    spacing_folder,
                    params,
                    progress=False,
                )
                val = fbeta_score(val_solution, points, classes)
                record["val_score"] = val.score
                mlflow.log_metric("val_score", val.score, step=epoch + 1)
                mlflow.log_metrics({f"val_fbeta/{k}": v.fbeta for k, v in val.classes.items()}, step=epoch + 1)
                if val.score > state["best_score"]:
                    state["best_score"], state["best_epoch"] = val.score, epoch + 1
                    os.replace(partial / "current.pt", partial / "best.pt")
            state["history"].append(record)
            state["epoch"] = epoch + 1
            state["seconds"] += time.perf_counter() - epoch_start
            with atomic_output(last) as tmp:
                torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "state": state}, tmp)
        bar.close()

        # Per-class thresholds tuned on the validation runs, stored in the best checkpoint.
        best = partial / "best.pt"
        thresholds = tune_on_runs(load_checkpoint(best, device), project, sample["val"], params)
        update_thresholds(best, thresholds)
        mlflow.log_params({f"threshold.{k}": round(v, 4) for k, v in thresholds.items()})

        # The common test set, through the same predict path users run.
        test_start = time.perf_counter()
        test_points = predict_runs(
            best, project, split["test"], params.data.tomo_type, spacing_folder, params, progress=False
        )
        inference_seconds = (time.perf_counter() - test_start) / max(len(split["test"]), 1)
        test = fbeta_score(_solution(project, split["test"]), test_points, classes)
        train_seconds = [h["train_seconds"] for h in state["history"]]
        durations = {
            "train_minutes": state["seconds"] / 60,
            "seconds_per_epoch": float(np.mean(train_seconds)),
            "inference_seconds_per_tomogram": inference_seconds,
            "val_best_score": state["best_score"],
            "best_epoch": state["best_epoch"],
        }
        tracking.log_test_result(test.score, {k: v.fbeta for k, v in test.classes.items()}, durations)

        # The artifact first: after the rename only the metrics file is left to write.
        with atomic_output(final_dir) as tmp:
            tmp.mkdir()
            shutil.copy2(best, tmp / "model.pt")
            (tmp / "history.json").write_text(json.dumps(state["history"], indent=2) + "\n")
            mlflow.log_artifact(str(tmp / "model.pt"))
        record = {
            "cell": cell.name,
            "model": cell.model,
            "channels": cell.channels,
            "patch": cell.patch,
            "sample": cell.sample,
            "channel_sizes": list(t.channels[cell.channels]),
            "patch_size": list(patch),
            "mlflow_run_id": run.info.run_id,
            "test_score": test.score,
            "test_fbeta": {k: v.fbeta for k, v in test.classes.items()},
            "thresholds": thresholds,
            **durations,
        }
        tracking.write_cell_metrics(metrics_path, record)
    shutil.rmtree(partial)
    return record
