"""The post-processing plan tuned on validation maps: per extractor, the per-class threshold with the best F-beta
(competition beta 4); then the extractor with the best validation score.

Cheap by design: the network is not rerun; the maps validation already computed are thresholded again. Components
are labelled (cc3d) once at the lowest threshold, then each blob large enough is swept alone in its own box; peaks
are found once at the lowest threshold, since the peaks at a higher one are the same filtered by level. Scores are the
competition's (`match_counts` per tomogram and class, summed), so the tuned score equals `fbeta_score` of the points.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import cc3d
import numpy as np
import pandas as pd

from src.classes import ParticleClass
from src.data.copick_io import voxel_to_angstrom
from src.data.masks import label_radius_voxels
from src.errors import UserError
from src.inference.plan import AUTO, EXTRACTORS, SELECTABLE, PostprocessPlan, plan_from_params
from src.inference.points import (
    blob_centres,
    blob_size_bounds,
    bounding_box,
    class_mask,
    maps_to_points,
    peak_candidates,
    quantised,
)
from src.metric import COORDS, class_fbeta, fbeta_score, match_counts
from src.params import Params


def threshold_grid(spec: tuple[float, float, float]) -> np.ndarray:
    """Grid values from params' (start, stop inclusive, step)."""
    start, stop, step = (float(v) for v in spec)
    if step <= 0 or stop < start:
        raise UserError(f"predict.threshold_grid must be start <= stop and step > 0, got {spec}")
    return np.round(np.arange(start, stop + step / 2, step), 6)


def threshold_sweep(maps, c: ParticleClass, plan: PostprocessPlan, grid: np.ndarray):
    """For one run and class, a function threshold -> centres (n, 3; z, y, x voxels) under the plan's extractor,
    with the work shared by every threshold of `grid` done once."""
    lowest = float(grid.min())
    if plan.extractor == "peaks":
        radius = label_radius_voxels(c, maps.voxel_spacing, plan.peak_radius_fraction)
        centres, levels = peak_candidates(maps.prob(c.label), radius, quantised(lowest))
        return lambda t: centres[levels >= quantised(t)]
    lo, hi = blob_size_bounds(
        (c,), maps.voxel_spacing, plan.label_radius_fraction, plan.min_blob_fraction, plan.max_blob_fraction
    )
    lo, hi = lo[c.name], hi[c.name]
    # The class's voxels at any higher threshold lie inside its blobs at the lowest one, and each blob stays apart
    # from the others, so each blob is swept on its own box; one under the minimum size can only shrink: dropped.
    mask = class_mask(maps, c, lowest, plan.extractor)
    box = bounding_box(mask)
    if box is None:
        return lambda t: np.zeros((0, 3))
    cc, n = cc3d.connected_components(mask[box].astype(np.uint8), connectivity=26, return_N=True)
    del mask
    stats = cc3d.statistics(cc)
    prob = maps.prob(c.label)[box]
    blobs = []
    for k in range(1, n + 1):
        if stats["voxel_counts"][k] >= lo:
            sub = stats["bounding_boxes"][k]
            start = np.array([b.start + s.start for b, s in zip(box, sub, strict=True)], dtype=float)
            blobs.append((cc[sub] == k, prob[sub], start))

    def centres(t: float) -> np.ndarray:
        level = quantised(t)
        found = [blob_centres(inside & (p >= level), lo, hi) + start for inside, p, start in blobs]
        return np.concatenate(found) if found else np.zeros((0, 3))

    return centres


def tune_extractor(
    maps_by_run: dict,
    solution: pd.DataFrame,
    classes: tuple[ParticleClass, ...],
    grid: Sequence[float],
    plan: PostprocessPlan,
    *,
    beta: float = 4.0,
    distance_multiplier: float = 0.5,
) -> tuple[dict[str, float], dict[str, float]]:
    """(threshold, F-beta) per class with a reference point in these runs, for the plan's extractor. Ties go to the
    lower threshold."""
    values = np.sort(np.asarray(grid, dtype=float))
    solution = solution.loc[solution["experiment"].isin(list(maps_by_run))]
    thresholds, scores = {}, {}
    for c in classes:
        mine = solution.loc[solution["particle_type"] == c.name]
        if mine.empty:
            continue
        reference = {run: mine.loc[mine["experiment"] == run, COORDS].to_numpy(float) for run in maps_by_run}
        sweeps = {run: threshold_sweep(m, c, plan, values) for run, m in maps_by_run.items()}
        radius = distance_multiplier * c.radius
        best, best_score = float(values[0]), -1.0
        for t in values:
            totals = np.zeros(3, dtype=np.int64)
            for run, m in maps_by_run.items():
                xyz = voxel_to_angstrom(sweeps[run](float(t)).reshape(-1, 3), m.voxel_spacing)
                totals += match_counts(reference[run], xyz, radius)
            score = float(class_fbeta(*(int(v) for v in totals), beta)[2])
            if score > best_score + 1e-12:
                best, best_score = float(t), score
        thresholds[c.name], scores[c.name] = best, best_score
    return thresholds, scores


def tune_plan(maps_by_run: dict, solution_df: pd.DataFrame, classes: tuple[ParticleClass, ...], params: Params):
    """(plan, score result on these runs with it): thresholds tuned for every extractor on validation maps, and the
    extractor params name, or with `predict.extractor: auto` the better of components and peaks (ties: components).
    A class without reference points here keeps `predict.default_threshold`."""
    grid = threshold_grid(params.predict.threshold_grid)
    base = plan_from_params(params)
    thresholds, totals = {}, {}
    weight_sum = sum(c.weight for c in classes)
    for extractor in EXTRACTORS:
        plan = dataclasses.replace(base, extractor=extractor)
        thresholds[extractor], scores = tune_extractor(maps_by_run, solution_df, classes, grid, plan)
        weights = {c.name: c.weight for c in classes}
        totals[extractor] = sum(weights[k] * v for k, v in scores.items()) / weight_sum if weight_sum else 0.0
    choices = SELECTABLE if params.predict.extractor == AUTO else (params.predict.extractor,)
    chosen = max(choices, key=lambda e: (totals[e], -choices.index(e)))
    plan = dataclasses.replace(base, extractor=chosen, thresholds=thresholds)
    return plan, score_maps(maps_by_run, solution_df, classes, plan, params.predict.default_threshold)


def score_maps(maps_by_run: dict, solution_df: pd.DataFrame, classes, plan: PostprocessPlan, default: float):
    """The competition score of the points `plan` extracts from each run's maps."""
    points = pd.concat(
        [maps_to_points(m, classes, plan, run, default) for run, m in maps_by_run.items()], ignore_index=True
    )
    solution = solution_df.loc[solution_df["experiment"].isin(list(maps_by_run))]
    return fbeta_score(solution, points, classes)
