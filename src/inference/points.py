"""Probability maps -> particle centres, by one of three extractors (the plan's `extractor`, src/inference/plan.py):

- `argmax`: a voxel is class c's when c is its argmax class and c's probability reaches c's threshold; 26-connected
  components (cc3d) within the blob-size bounds; their centroids. A threshold can only raise the bar above argmax.
- `components`: the same on each class's OWN probability (a rare class at 0.3 beside background at 0.5 is kept), so
  classes may overlap; each class is labelled on its own.
- `peaks`: max-pool non-maximum suppression on each class's probability: voxels equal to the maximum of their
  window (half-width: the class's peak radius) and at or above the threshold; a plateau of such voxels is one
  candidate at its centroid; then, strongest first, a candidate within the peak radius of a kept one is dropped.

Blob-size bounds come from the class radius: a label sphere has radius `label_radius_voxels` and volume V; blobs
outside [min_blob_fraction * V, max_blob_fraction * V] voxels are dropped. Probabilities are uint8 (p x 255,
rounded): a threshold t keeps q >= round(t x 255), a resolution of 1/255, finer than any threshold grid here.
"""

from __future__ import annotations

import math

import cc3d
import numpy as np
import pandas as pd
from scipy.ndimage import maximum_filter
from scipy.spatial import cKDTree

from src.classes import ParticleClass
from src.data.copick_io import voxel_to_angstrom
from src.data.masks import label_radius_voxels
from src.errors import UserError
from src.inference.plan import EXTRACTORS, PostprocessPlan
from src.metric import COORDS, POINT_COLUMNS

PROB_SCALE = 255  # uint8 probability maps: q = round(p * PROB_SCALE)


def quantised(threshold: float) -> int:
    """The uint8 level a probability threshold compares against (q >= level keeps a voxel)."""
    return int(min(max(round(float(threshold) * PROB_SCALE), 0), PROB_SCALE))


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
        volume = 4.0 / 3.0 * math.pi * label_radius_voxels(c, voxel_spacing, label_radius_fraction) ** 3
        lo[c.name] = min_blob_fraction * volume
        hi[c.name] = max_blob_fraction * volume
    return lo, hi


def bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """The smallest box holding every True voxel of a 3-D mask (None when there is none)."""
    idx = [np.flatnonzero(mask.any(axis=axes)) for axes in ((1, 2), (0, 2), (0, 1))]
    if any(len(i) == 0 for i in idx):
        return None
    return tuple(slice(int(i[0]), int(i[-1]) + 1) for i in idx)


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


def blob_centres(mask: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Centroids (n, 3; z, y, x voxels) of the 26-connected blobs of a boolean mask with lo <= voxels <= hi."""
    box = bounding_box(mask)
    if box is None:
        return np.zeros((0, 3))
    _, counts, centroids = components(mask[box].astype(np.uint8))
    keep = (counts >= lo) & (counts <= hi)
    return centroids[keep].reshape(-1, 3) + np.array([s.start for s in box], dtype=float)


def class_mask(maps, particle_class: ParticleClass, threshold: float, extractor: str) -> np.ndarray:
    """Voxels of a class at a threshold: on its own probability, or (argmax) only where it is also the argmax."""
    mask = maps.prob(particle_class.label) >= quantised(threshold)
    if extractor == "argmax":
        mask &= maps.label == particle_class.label
    return mask


def peak_candidates(prob: np.ndarray, radius_vox: float, min_level: int) -> tuple[np.ndarray, np.ndarray]:
    """Peaks of one class's uint8 probability with level >= `min_level`, after non-maximum suppression within
    `radius_vox`: (centres (n, 3) z, y, x voxels, levels), strongest first.

    A voxel is a candidate when it equals the maximum of the cube of half-width ceil(radius_vox) around it; touching
    candidates (a plateau, common at uint8) are one, at their centroid. Greedy suppression, strongest first, keeps
    a candidate only if no kept one lies within `radius_vox`; lower levels never suppress higher ones, so the peaks
    at any higher threshold are these peaks filtered by level (threshold tuning relies on it).
    """
    min_level = max(int(min_level), 1)  # level 0 is "no probability": never a particle
    box = bounding_box(prob >= min_level)
    if box is None:
        return np.zeros((0, 3)), np.zeros(0, np.uint8)
    # Outside the box every level is < min_level, below any candidate, so cropping changes no candidate.
    crop = prob[box]
    half = max(int(math.ceil(radius_vox)), 1)
    local_max = maximum_filter(crop, size=2 * half + 1, mode="constant", cval=0)
    peaks = (crop == local_max) & (crop >= min_level)
    del local_max
    cc, n = cc3d.connected_components(peaks.astype(np.uint8), connectivity=26, return_N=True)
    if n == 0:
        return np.zeros((0, 3)), np.zeros(0, np.uint8)
    centres = np.asarray(cc3d.statistics(cc)["centroids"][1 : n + 1], dtype=float).reshape(-1, 3)
    levels = np.zeros(n + 1, np.uint8)
    levels[cc[peaks]] = crop[peaks]  # every voxel of a plateau holds the same level
    levels = levels[1:]
    order = np.argsort(-levels.astype(np.int16), kind="stable")
    centres, levels = centres[order], levels[order]
    kept = np.ones(n, dtype=bool)
    tree = cKDTree(centres)
    for i in range(n):
        if kept[i]:
            near = np.asarray(tree.query_ball_point(centres[i], radius_vox), dtype=int)
            kept[near[near > i]] = False
    offset = np.array([s.start for s in box], dtype=float)
    return centres[kept] + offset, levels[kept]


def class_centres(maps, particle_class: ParticleClass, plan: PostprocessPlan, threshold: float) -> np.ndarray:
    """Centres (n, 3; z, y, x voxels) of one class in one tomogram's maps with the plan's extractor."""
    if plan.extractor not in EXTRACTORS:
        raise UserError(f"unknown point extractor '{plan.extractor}' (one of {', '.join(EXTRACTORS)})")
    spacing = maps.voxel_spacing
    if plan.extractor == "peaks":
        radius = label_radius_voxels(particle_class, spacing, plan.peak_radius_fraction)
        centres, _ = peak_candidates(maps.prob(particle_class.label), radius, quantised(threshold))
        return centres
    lo, hi = blob_size_bounds(
        (particle_class,), spacing, plan.label_radius_fraction, plan.min_blob_fraction, plan.max_blob_fraction
    )
    mask = class_mask(maps, particle_class, threshold, plan.extractor)
    return blob_centres(mask, lo[particle_class.name], hi[particle_class.name])


def points_frame(centres_zyx: np.ndarray, voxel_spacing: float, particle_type: str, run_name: str) -> pd.DataFrame:
    """Points (experiment, particle_type, x, y, z in Angstrom) of voxel centres at the true spacing."""
    frame = pd.DataFrame(voxel_to_angstrom(np.asarray(centres_zyx).reshape(-1, 3), voxel_spacing), columns=COORDS)
    frame.insert(0, "particle_type", particle_type)
    frame.insert(0, "experiment", run_name)
    return frame


def maps_to_points(
    maps,
    classes: tuple[ParticleClass, ...],
    plan: PostprocessPlan,
    run_name: str,
    default_threshold: float = 0.5,
) -> pd.DataFrame:
    """Points (experiment, particle_type, x, y, z in Angstrom at the maps' true spacing) of `ClassMaps` by the plan."""
    thresholds = plan.class_thresholds(classes, default_threshold)
    frames = [
        points_frame(class_centres(maps, c, plan, thresholds[c.name]), maps.voxel_spacing, c.name, run_name)
        for c in classes
    ]
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=POINT_COLUMNS)
    return out.astype(dict.fromkeys(COORDS, float))[POINT_COLUMNS]
