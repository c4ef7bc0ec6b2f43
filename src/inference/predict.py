"""Whole-tomogram inference: MONAI Gaussian sliding windows over z-slabs, reduced to one class map per tomogram.

Memory: a 184 x 630 x 630 tomogram's 7 float32 probability maps alone take 2 GB. Here the volume is processed in
z-slabs of `slab_depth` rows; each slab's input is extended by exactly the sliding windows that touch its rows,
laid on the same grid as a whole-volume pass, so every kept voxel is blended from the same windows with the same
Gaussian weights as without slabs (no seams, identical up to float rounding). Each slab's softmax is reduced at
once to the argmax class (uint8) and each particle class's own probability (uint8, p x 255 rounded); only these are
kept for the volume: 1 + 6 bytes per voxel, 0.5 GB for a 184 x 630 x 630 tomogram of the six CZII classes.
The cost is re-evaluating the window rows that straddle slab boundaries (about one row per boundary).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from monai.inferers import sliding_window_inference
from tqdm.auto import tqdm

from src.atomic import atomic_output, check_output
from src.data.copick_io import (
    PREDICTION_USER,
    SPACING_TOLERANCE,
    CopickProject,
    Tomogram,
    picks_file_name,
    write_picks_json,
)
from src.errors import DataError, UserError
from src.hardware import pick_device
from src.inference.checkpoint import NORMALIZATION, load_checkpoint
from src.inference.plan import PostprocessPlan, plan_for
from src.inference.points import PROB_SCALE, maps_to_points
from src.inference.thresholds import tune_plan
from src.metric import COORDS, POINT_COLUMNS
from src.params import Params, PredictParams
from src.progress import each

SUBMISSION_COLUMNS = ["id", *POINT_COLUMNS]
PICKS_USER = PREDICTION_USER
PICKS_SESSION = "0"
AXES = {"z": 2, "y": 3, "x": 4}


@dataclass
class ClassMaps:
    """Per voxel (z, y, x), at the true spacing (A): the argmax class (0 = background) and every particle class's
    softmax probability, quantised to uint8 (p x 255, rounded); `probs[i]` is class label i + 1's."""

    label: np.ndarray  # uint8 (z, y, x)
    probs: np.ndarray  # uint8 (classes, z, y, x)
    voxel_spacing: float

    def prob(self, label: int) -> np.ndarray:
        """The uint8 probability map of the class with this label (1-based, as in label masks)."""
        return self.probs[label - 1]


def default_device() -> torch.device:
    """The first GPU where one is seen, else the CPU."""
    return pick_device(None)


def window_starts(size: int, roi: int, overlap: float) -> list[int]:
    """Window starts along one axis exactly as MONAI's `dense_patch_slices` lays them (size > roi)."""
    interval = max(int(roi * (1 - overlap)), 1)
    n = next(d for d in range(size) if d * interval + roi >= size)
    return [i * interval - max(i * interval + roi - size, 0) for i in range(n + 1)]


def plan_slabs(depth: int, roi: int, overlap: float, slab_depth: int) -> list[tuple[int, int, int, int]]:
    """(input start, input stop, kept start, kept stop) rows per slab; input = windows touching kept rows."""
    if slab_depth < 1:
        raise UserError(f"predict.slab_depth must be >= 1, got {slab_depth}")
    if depth <= roi:
        return [(0, depth, 0, depth)]
    starts = window_starts(depth, roi, overlap)
    slabs = []
    for c0 in range(0, depth, slab_depth):
        c1 = min(c0 + slab_depth, depth)
        touching = [s for s in starts if s < c1 and s + roi > c0]
        slabs.append((touching[0], touching[-1] + roi, c0, c1))
    return slabs


def _predictor(model: torch.nn.Module, flips: str, device: torch.device):
    dims = [AXES[a] for a in flips]
    amp = device.type == "cuda"

    def predict(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
            prob = torch.softmax(model(x).float(), dim=1)
            for d in dims:
                prob += torch.softmax(model(x.flip(d)).float(), dim=1).flip(d)
        return prob / (1 + len(dims))

    return predict


def predict_volume(
    model: torch.nn.Module,
    volume: np.ndarray,
    patch_size: tuple[int, int, int],
    voxel_spacing: float,
    params: PredictParams,
    progress: bool = True,
) -> ClassMaps:
    """Class maps of a (z, y, x) volume; z-scored over the whole volume (as in training), model on its own device."""
    flips = params.tta_flips
    if any(a not in AXES for a in flips) or len(set(flips)) != len(flips):
        raise UserError(f"predict.tta_flips must be distinct letters among 'zyx', got '{flips}'")
    device = next(model.parameters()).device
    mean = float(volume.mean(dtype=np.float64))
    std = float(volume.std(dtype=np.float64)) or 1.0
    label = np.zeros(volume.shape, dtype=np.uint8)
    probs = None  # (classes, z, y, x) once the number of output channels is known
    predictor = _predictor(model, flips, device)
    slabs = plan_slabs(volume.shape[0], patch_size[0], params.overlap, params.slab_depth)
    model.eval()
    with torch.inference_mode():
        for a, b, c0, c1 in tqdm(slabs, desc="slabs", unit="slab", disable=None if progress else True, leave=False):
            x = torch.from_numpy(((volume[a:b] - mean) / std).astype(np.float32, copy=False))[None, None].to(device)
            out = sliding_window_inference(
                x, patch_size, params.sw_batch_size, predictor, overlap=params.overlap, mode="gaussian"
            )
            kept = out[0, :, c0 - a : c1 - a]
            if probs is None:
                probs = np.zeros((kept.shape[0] - 1, *volume.shape), dtype=np.uint8)
            label[c0:c1] = kept.argmax(dim=0).to(torch.uint8).cpu().numpy()
            for i in range(1, kept.shape[0]):  # one channel at a time: a float temporary of one class, not seven
                level = (kept[i] * PROB_SCALE).round_().clamp_(0, PROB_SCALE)
                probs[i - 1, c0:c1] = level.to(torch.uint8).cpu().numpy()
            del out, kept
    return ClassMaps(label, probs, voxel_spacing)


def predict_tomogram(
    model: torch.nn.Module, meta: dict, tomo: Tomogram, params: PredictParams, progress=True, rescale: bool = False
):
    """Class maps of a tomogram with a loaded checkpoint; a voxel spacing off the checkpoint's by >1 % is an error,
    or with `rescale` the tomogram is resampled to it (the maps then lie on that grid, in the same Angstrom frame)."""
    trained = float(meta["voxel_spacing"])
    if abs(tomo.voxel_spacing - trained) > SPACING_TOLERANCE * trained:
        if not rescale:
            raise UserError(
                f"tomogram '{tomo.name}' has voxel spacing {tomo.voxel_spacing:g} A but the model was trained at "
                f"{trained:g} A; pass --rescale to resample it, or --voxel-spacing if its header is wrong"
            )
        from src.inference.rescale import resample_tomogram

        tomo = resample_tomogram(tomo, trained)
    check_has_contrast(tomo)
    if meta.get("normalization", NORMALIZATION) != NORMALIZATION:
        raise UserError(f"checkpoint normalisation '{meta['normalization']}' is not supported")
    return predict_volume(model, tomo.data, tuple(meta["patch_size"]), tomo.voxel_spacing, params, progress)


def check_has_contrast(tomo: Tomogram) -> None:
    """A DataError for a constant tomogram (a blank or zero-filled file): it z-scores to all zeros, where the
    network's biases alone would "find" thousands of particles. NaNs and infinities are refused when it is read."""
    lowest, highest = float(tomo.data.min()), float(tomo.data.max())
    if lowest == highest:
        raise DataError(
            f"tomogram '{tomo.name}' is constant (every voxel is {lowest:g}): there is nothing to pick in it"
        )


def with_plan(params: PredictParams, plan: PostprocessPlan) -> PredictParams:
    """Inference settings under a plan: the plan's test-time flips, the rest from params."""
    return dataclasses.replace(params, tta_flips=plan.tta_flips)


def points_of_maps(maps: ClassMaps, meta: dict, run: str, params: Params, plan: PostprocessPlan | None = None):
    """Points of one run's maps with the checkpoint's classes and `plan` (default: the one predict applies)."""
    plan = plan or plan_for(meta, params)
    return maps_to_points(maps, meta["classes"], plan, run, params.predict.default_threshold)


def _loaded(checkpoint, device=None):
    if isinstance(checkpoint, tuple):
        return checkpoint
    return load_checkpoint(checkpoint, device or default_device())


def run_tomograms(project: CopickProject, runs, tomo_type: str, meta: dict, folder_spacing: float, progress: bool):
    """(run, tomogram) of each run, read from its VoxelSpacing folder nearest the model's trained spacing, else from
    `folder_spacing`: the one way validation, test and `predict` pick a run's pixel size."""
    for run in each(list(runs), "tomograms", "run", progress):
        folder = project.folder_spacing(run, float(meta["voxel_spacing"]), folder_spacing)
        yield run, project.tomogram(run, tomo_type, folder)


def predict_run_maps(
    checkpoint,
    project: CopickProject,
    runs,
    tomo_type: str,
    folder_spacing: float,
    params: Params,
    progress=True,
    tta_flips: str | None = None,
) -> dict[str, ClassMaps]:
    """Class maps per run (for threshold tuning); `checkpoint` is a path or a loaded (model, meta); runs read as
    `run_tomograms` does. Flips: params' unless `tta_flips` is given."""
    model, meta = _loaded(checkpoint)
    settings = params.predict if tta_flips is None else dataclasses.replace(params.predict, tta_flips=tta_flips)
    tomograms = run_tomograms(project, runs, tomo_type, meta, folder_spacing, progress)
    return {run: predict_tomogram(model, meta, tomo, settings, progress) for run, tomo in tomograms}


def tune_on_runs(checkpoint, project: CopickProject, runs, params: Params, progress: bool = False):
    """(plan, validation score result): the post-processing plan tuned on `runs`, whose picks are the reference
    (validation runs), from one inference pass over them with params' settings."""
    model, meta = _loaded(checkpoint)
    d = params.data
    maps = predict_run_maps((model, meta), project, runs, d.tomo_type, d.voxel_spacing, params, progress)
    return tune_plan(maps, pd.concat([project.picks(r) for r in runs], ignore_index=True), meta["classes"], params)


def predict_runs(
    checkpoint,
    project: CopickProject,
    runs,
    tomo_type: str,
    folder_spacing: float,
    params: Params,
    progress: bool = True,
    plan: PostprocessPlan | None = None,
) -> pd.DataFrame:
    """Predicted points (experiment, particle_type, x, y, z in A) of runs, read as `run_tomograms` does; `checkpoint`:
    path or (model, meta); `plan`: the checkpoint's (or params', see `plan_for`) unless given."""
    model, meta = _loaded(checkpoint)
    plan = plan or plan_for(meta, params)
    settings = with_plan(params.predict, plan)
    frames = []
    for run, tomo in run_tomograms(project, runs, tomo_type, meta, folder_spacing, progress):
        maps = predict_tomogram(model, meta, tomo, settings, progress)
        frames.append(points_of_maps(maps, meta, run, params, plan))
    return pd.concat(frames, ignore_index=True)


def write_submission(points: pd.DataFrame, path: str | Path) -> None:
    """The Kaggle CSV (id, experiment, particle_type, x, y, z), written atomically."""
    frame = points[SUBMISSION_COLUMNS[1:]].reset_index(drop=True)
    frame.insert(0, "id", range(len(frame)))
    with atomic_output(path) as tmp:
        frame.to_csv(tmp, index=False)


def write_copick_picks(project: CopickProject, points: pd.DataFrame, classes, voxel_spacing: dict[str, float]) -> int:
    """Copick picks files `predict_0_<object>.json` per run and class in the overlay; returns the count. A run whose
    picks folder resolves outside the overlay root (a symbolic link to elsewhere) is refused."""
    written = 0
    for run, spacing in voxel_spacing.items():
        folder = project.overlay_picks_folder(run)
        mine = points.loc[points["experiment"] == run]
        for c in classes:
            xyz = mine.loc[mine["particle_type"] == c.name, COORDS].to_numpy()
            name = picks_file_name(c.name, "copick", PICKS_USER, PICKS_SESSION)
            write_picks_json(
                folder / name,
                c.name,
                run,
                xyz,
                spacing,
                user_id=PICKS_USER,
                session_id=PICKS_SESSION,
                root=project.overlay_root,
            )
            written += 1
    return written


def run_predict(
    checkpoint: str | Path,
    params: Params,
    out: str | Path,
    *,
    project: CopickProject | None = None,
    runs: list[str] | None = None,
    tomogram: Tomogram | None = None,
    tomo_type: str | None = None,
    picks_to_copick: bool = False,
    progress: bool = True,
    rescale: bool = False,
    device: torch.device | None = None,
) -> pd.DataFrame:
    """The `predict` command: points of copick runs or of one tomogram -> submission CSV (and copick picks). With
    `rescale`, a tomogram at another pixel size than the model's is resampled; points stay in its own Angstrom.
    `device`: where the model runs (default: `default_device()`)."""
    if (project is None) == (tomogram is None):
        raise UserError("give exactly one of --copick and --tomogram")
    if picks_to_copick and project is None:
        raise UserError("--picks-to-copick needs --copick (a single tomogram has no copick project)")
    check_output(out)  # before any work: a file, not over a folder
    model, meta = load_checkpoint(checkpoint, device or default_device())
    names = None
    if project is not None:
        names = runs or project.run_names()
        project.check_runs(names)
        if picks_to_copick:
            for run in names:
                project.overlay_picks_folder(run)
                for c in meta["classes"]:
                    picks_file_name(c.name, "copick", PICKS_USER, PICKS_SESSION)
    frames, spacings = [], {}
    plan = plan_for(meta, params)
    settings = with_plan(params.predict, plan)
    if tomogram is not None:
        maps = predict_tomogram(model, meta, tomogram, settings, progress, rescale)
        frames.append(points_of_maps(maps, meta, tomogram.name, params, plan))
    else:
        # The pixel size the model was trained at, where the run has it; else params' (then rescaled or refused).
        d = params.data
        for run, tomo in run_tomograms(project, names, tomo_type or d.tomo_type, meta, d.voxel_spacing, progress):
            maps = predict_tomogram(model, meta, tomo, settings, progress, rescale)
            frames.append(points_of_maps(maps, meta, run, params, plan))
            spacings[run] = tomo.voxel_spacing
    points = pd.concat(frames, ignore_index=True)
    write_submission(points, out)
    if picks_to_copick:
        write_copick_picks(project, points, meta["classes"], spacings)
    return points
