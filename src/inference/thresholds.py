"""Per-class probability thresholds chosen on validation runs to maximise each class's F-beta (competition beta 4).

Cheap by design: the network is not rerun; for each class and grid value only the reduced class maps are
thresholded and labelled (cc3d), cropped to the bounding box of the voxels whose argmax is that class.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from src.classes import ParticleClass
from src.data.copick_io import voxel_to_angstrom
from src.errors import UserError
from src.inference.points import blob_size_bounds, components
from src.metric import COORDS, POINT_COLUMNS, fbeta_score


def threshold_grid(spec: tuple[float, float, float]) -> np.ndarray:
    """Grid values from params' (start, stop inclusive, step)."""
    start, stop, step = (float(v) for v in spec)
    if step <= 0 or stop < start:
        raise UserError(f"predict.threshold_grid must be start <= stop and step > 0, got {spec}")
    return np.round(np.arange(start, stop + step / 2, step), 6)


def _class_points(maps, label: int, threshold: float, lo: float, hi: float, run: str, name: str) -> pd.DataFrame:
    mine = maps.label == label
    if not mine.any():
        return pd.DataFrame(columns=POINT_COLUMNS)
    idx = [np.nonzero(mine.any(axis=axes))[0] for axes in ((1, 2), (0, 2), (0, 1))]
    box = tuple(slice(i[0], i[-1] + 1) for i in idx)
    image = (mine[box] & (maps.prob[box] >= np.float16(threshold))).astype(np.uint8)
    _, counts, centroids = components(image)
    keep = (counts >= lo) & (counts <= hi)
    offset = np.array([s.start for s in box], dtype=float)
    xyz = voxel_to_angstrom(centroids[keep].reshape(-1, 3) + offset, maps.voxel_spacing)
    frame = pd.DataFrame(xyz, columns=COORDS)
    frame.insert(0, "particle_type", name)
    frame.insert(0, "experiment", run)
    return frame


def tune_thresholds(
    maps_by_run: dict,
    solution_df: pd.DataFrame,
    classes: tuple[ParticleClass, ...],
    grid: Sequence[float],
    *,
    label_radius_fraction: float,
    min_blob_fraction: float,
    max_blob_fraction: float,
    beta: float = 4.0,
    distance_multiplier: float = 0.5,
    default_threshold: float = 0.5,
) -> dict[str, float]:
    """Per class, the `grid` value (e.g. `threshold_grid(params.predict.threshold_grid)`) with the best F-beta.

    Ties go to the lower threshold. Every class gets a threshold (weight 0 included); a class with no reference
    point in these runs cannot be tuned and keeps `default_threshold`.
    """
    values = np.sort(np.asarray(grid, dtype=float))
    solution = solution_df.loc[solution_df["experiment"].isin(list(maps_by_run))]
    bounds = {
        run: blob_size_bounds(classes, m.voxel_spacing, label_radius_fraction, min_blob_fraction, max_blob_fraction)
        for run, m in maps_by_run.items()
    }
    chosen = {}
    for c in classes:
        reference = solution.loc[solution["particle_type"] == c.name]
        if reference.empty:
            chosen[c.name] = float(default_threshold)
            continue
        best, best_score = float(values[0]), -1.0
        for t in values:
            frames = [
                _class_points(m, c.label, float(t), bounds[run][0][c.name], bounds[run][1][c.name], run, c.name)
                for run, m in maps_by_run.items()
            ]
            submission = pd.concat(frames, ignore_index=True).astype({"x": float, "y": float, "z": float})
            result = fbeta_score(reference, submission, classes, beta, distance_multiplier)
            score = result.classes[c.name].fbeta
            if score > best_score + 1e-12:
                best, best_score = float(t), score
        chosen[c.name] = best
    return chosen
