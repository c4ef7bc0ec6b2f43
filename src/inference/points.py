"""Class maps -> particle centres: threshold, 3-D connected components (cc3d, 26-connected), size filter, centroids.

Blob-size bounds come from the class radius: a label sphere has radius `label_radius_fraction * radius / spacing`
voxels and volume V; blobs outside [min_blob_fraction * V, max_blob_fraction * V] voxels are dropped.
"""

from __future__ import annotations

import math

import cc3d
import numpy as np
import pandas as pd

from src.classes import ParticleClass
from src.data.copick_io import voxel_to_angstrom
from src.metric import COORDS, POINT_COLUMNS


def blob_size_bounds(
    classes: tuple[ParticleClass, ...],
    voxel_spacing: float,
    label_radius_fraction: float,
    min_blob_fraction: float,
    max_blob_fraction: float,
) -> tuple[dict[str, float], dict[str, float]]:
    """(min voxels, max voxels) per class name, as fractions of the class's label-sphere volume."""
    lo, hi = {}, {}
    for c in classes:
        volume = 4.0 / 3.0 * math.pi * (label_radius_fraction * c.radius / voxel_spacing) ** 3
        lo[c.name] = min_blob_fraction * volume
        hi[c.name] = max_blob_fraction * volume
    return lo, hi


def components(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """26-connected components of a (multi-)label uint8 image: (label of each, voxel counts, centroids zyx)."""
    cc, n = cc3d.connected_components(image, connectivity=26, return_N=True)
    if n == 0:
        return np.zeros(0, np.uint8), np.zeros(0, np.int64), np.zeros((0, 3))
    stats = cc3d.statistics(cc)
    fg = image > 0
    comp_label = np.zeros(n + 1, dtype=np.uint8)
    comp_label[cc[fg]] = image[fg]
    return comp_label[1:], np.asarray(stats["voxel_counts"][1 : n + 1]), np.asarray(stats["centroids"][1 : n + 1])


def maps_to_points(
    maps,
    classes: tuple[ParticleClass, ...],
    thresholds: dict[str, float],
    min_size: dict[str, float],
    max_size: dict[str, float],
    run_name: str,
) -> pd.DataFrame:
    """Points (experiment, particle_type, x, y, z in Angstrom at the maps' true spacing) from `ClassMaps`.

    A voxel belongs to class c when its argmax label is c and its probability is >= c's threshold (compared in
    float16, the maps' precision, so a threshold equal to a stored probability keeps it).
    """
    image = np.zeros(maps.label.shape, dtype=np.uint8)
    for c in classes:
        image[(maps.label == c.label) & (maps.prob >= np.float16(thresholds[c.name]))] = c.label
    labels, counts, centroids = components(image)
    frames = []
    for c in classes:
        keep = (labels == c.label) & (counts >= min_size[c.name]) & (counts <= max_size[c.name])
        xyz = voxel_to_angstrom(centroids[keep].reshape(-1, 3), maps.voxel_spacing)
        frame = pd.DataFrame(xyz, columns=COORDS)
        frame.insert(0, "particle_type", c.name)
        frame.insert(0, "experiment", run_name)
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=POINT_COLUMNS)
    return out.astype(dict.fromkeys(COORDS, float))[POINT_COLUMNS]
