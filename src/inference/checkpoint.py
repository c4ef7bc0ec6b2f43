"""Checkpoints that carry their own plan (as nnU-Net does): everything inference needs besides the tomogram.

A checkpoint is one torch file holding a plain dict: the model name and constructor config, the weights, the
particle classes, the voxel spacing (Angstrom) and patch size it was trained at, the per-class probability
thresholds, the input normalisation, the post-processing plan (`postprocess`: src/inference/plan.py, as a plain dict;
absent from checkpoints written before it existed, whose top-level `thresholds` were tuned for the argmax extractor),
and free-form `extra` (e.g. training history). It is loaded with `weights_only=True`, so only plain python types and
tensors are allowed in it.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from src.atomic import atomic_output
from src.classes import ParticleClass
from src.errors import DataError
from src.fields import NUMBER, WHOLE, field, list_of, map_of
from src.inference.plan import PostprocessPlan
from src.models import model_from_config
from src.names import check_name

FORMAT = "czii-picker-checkpoint"
VERSION = 1
NORMALIZATION = "zscore per volume"


def _class_dict(c: ParticleClass) -> dict:
    d = dataclasses.asdict(c)
    d["color"] = list(c.color)
    return d


def _class_from_dict(d: dict) -> ParticleClass:
    return ParticleClass(**{**d, "color": tuple(d["color"])})


def weights_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 of a model's weights: every tensor's name, dtype, shape and bytes in the state dict's order, so two
    checkpoints hash alike exactly when their weights are bit for bit the same (metrics/*.json records it)."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in state_dict.items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{list(t.shape)}|".encode())
        # as bytes whatever the dtype (bf16 has no numpy type) and the rank (a 0-d counter cannot be viewed as bytes)
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_torch(payload: dict, path: str | Path) -> None:
    """torch.save `payload` to `path` atomically. torch reports a write that failed (a full disk) as a RuntimeError
    without an errno: it becomes one sentence, the atomic output's (DiskFull), with nothing left half-written."""
    with atomic_output(path) as tmp:
        try:
            torch.save(payload, tmp)
        except RuntimeError as err:
            if not _torch_write_failed(err):
                raise
            # The disk filled up if the folder has no room left now (with the half-written file still in it).
            full = shutil.disk_usage(tmp.parent).free < FULL_BELOW
            code = errno.ENOSPC if full else errno.EIO
            raise OSError(code, os.strerror(code), str(tmp)) from None


FULL_BELOW = 1 << 20  # bytes: less room than this after a failed write means the disk is full
_TORCH_WRITE_FAILURES = ("PytorchStreamWriter failed", "unexpected pos", "file write failed", "iostream error")


def _torch_write_failed(err: RuntimeError) -> bool:
    """Whether `err` is torch's report of a failed write (its C++ writer has no errno to give)."""
    text = f"{err} {err.__context__ or ''}"
    return any(phrase in text for phrase in _TORCH_WRITE_FAILURES)


def checkpoint_payload(
    model: torch.nn.Module,
    *,
    model_name: str,
    classes: tuple[ParticleClass, ...],
    voxel_spacing: float,
    patch_size: tuple[int, int, int],
    thresholds: dict[str, float],
    postprocess: dict | None = None,
    extra: dict | None = None,
) -> dict:
    """A checkpoint as the plain dict a file holds, with a copy of the weights (training goes on changing the model's
    own tensors): what `save_torch` writes and `model_and_meta` rebuilds a model from."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model_name": model_name,
        "model_config": model.config,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "classes": [_class_dict(c) for c in classes],
        "voxel_spacing": float(voxel_spacing),
        "patch_size": [int(s) for s in patch_size],
        "thresholds": {str(k): float(v) for k, v in thresholds.items()},
        "normalization": NORMALIZATION,
        "extra": dict(extra or {}),
    }
    if postprocess is not None:
        payload["postprocess"] = dict(postprocess)
    return payload


def save_checkpoint(path: str | Path, model: torch.nn.Module, **meta) -> None:
    """Write a checkpoint (`checkpoint_payload`'s fields) atomically: a crash never leaves a half-written file."""
    save_torch(checkpoint_payload(model, **meta), path)


def _read(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a damaged or foreign file
        raise DataError(f"{path}: not a readable checkpoint ({type(err).__name__}: {str(err)[:200]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise DataError(f"{path}: not a checkpoint written by this project (no '{FORMAT}' marker)")
    if payload.get("version") != VERSION:
        raise DataError(f"{path}: checkpoint version {payload.get('version')} is not the supported {VERSION}")
    return payload


# What inference reads of a checkpoint besides the network, checked on loading (the plan by PostprocessPlan.check).
META_FIELDS = {"voxel_spacing": NUMBER, "patch_size": list_of(WHOLE), "thresholds": map_of(NUMBER)}


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """(model on `device` in eval mode, meta). meta has every saved field but the weights; classes as ParticleClass."""
    path = Path(path)
    return model_and_meta(_read(path), device, path)


def model_and_meta(
    payload: dict, device: str | torch.device = "cpu", source: str | Path = "checkpoint"
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A checkpoint's payload (read from a file, or held in memory by training) as (model on `device` in eval mode,
    meta), checked field by field; `source` names it in errors."""
    try:
        model = model_from_config(payload["model_config"])
        model.load_state_dict(payload["state_dict"])
        classes = tuple(_class_from_dict(d) for d in payload["classes"])
    except Exception as err:
        raise DataError(f"{source}: the checkpoint's model or classes do not load ({type(err).__name__})") from None
    for c in classes:
        check_name(c.name, "class name", source, DataError)
    for key, kind in META_FIELDS.items():
        field(payload, key, kind, source)
    if payload.get("postprocess") is not None:
        PostprocessPlan.check(payload["postprocess"], str(source))
    model.to(device).eval()
    meta = {k: v for k, v in payload.items() if k != "state_dict"}
    meta["classes"] = classes
    meta["patch_size"] = tuple(meta["patch_size"])
    return model, meta


def update_postprocess(path: str | Path, postprocess: dict) -> None:
    """Replace the post-processing plan (`PostprocessPlan.to_dict()`) stored in a checkpoint, atomically."""
    path = Path(path)
    payload = _read(path)
    payload["postprocess"] = dict(postprocess)
    save_torch(payload, path)
