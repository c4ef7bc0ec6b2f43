"""A picture of a tomogram with its picks: look at the data before training on it.

With predictions, the picture draws the competition metric's own matching (`src.metric.match_points`, the function
the scorer counts with), so that what the score counts can be seen. The marks differ by shape, not only by colour,
so they read in greyscale too:

    solid ring      a truth pick some prediction of its class reaches (true positive); without predictions, every pick
    dashed ring     a truth pick no prediction reaches (false negative)
    filled dot      a prediction within the match radius of a truth pick of its class (a found pick is a ring with a
                    dot in it; a second dot in one ring is a duplicate, which the metric counts as a false positive)
    x               a prediction that reaches no truth pick of its class (false positive)

A ring is the truth sphere's cross-section in the slice; a prediction is marked in every slice its class's sphere
around it cuts. Classes are coloured from the one palette, `src.classes.CLASS_PALETTE`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from src.atomic import atomic_output
from src.classes import ParticleClass, display_colors
from src.data.copick_io import Tomogram
from src.metric import COORDS, DISTANCE_MULTIPLIER, Matching, match_points

# the column `mark_matches` adds: how each point is drawn
STATE = "state"
TRUTH, FOUND, MISSED, REACHING, STRAY = "truth", "found", "missed", "reaching", "stray"
RING_STYLE = {TRUTH: "solid", FOUND: "solid", MISSED: (0, (3, 2))}  # dashes long enough to survive a small ring
OUTLINE = "black"  # drawn under every mark, so that a light colour stays visible on a light part of the slice


# --- the metric's matching, point by point -----------------------------------------------------------------------


def match_classes(
    picks: pd.DataFrame,
    predictions: pd.DataFrame,
    classes: tuple[ParticleClass, ...],
    distance_multiplier: float = DISTANCE_MULTIPLIER,
) -> dict[str, Matching]:
    """The scorer's matching of one run's predictions to its picks, per class (match radius = `distance_multiplier`
    x the class radius). Points of classes not in `classes` are not matched (the scorer would refuse them)."""
    matchings = {}
    for cls in classes:
        truth = picks.loc[picks["particle_type"] == cls.name, COORDS].to_numpy(dtype=float)
        predicted = predictions.loc[predictions["particle_type"] == cls.name, COORDS].to_numpy(dtype=float)
        matchings[cls.name] = match_points(truth, predicted, distance_multiplier * cls.radius)
    return matchings


def mark_matches(
    picks: pd.DataFrame, predictions: pd.DataFrame, matchings: dict[str, Matching]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Copies of `picks` and `predictions` with a STATE column: found / missed truth, reaching / stray prediction."""
    truth = picks.assign(**{STATE: TRUTH})
    predicted = predictions.assign(**{STATE: STRAY})
    for name, matching in matchings.items():
        rows = truth["particle_type"] == name
        truth.loc[rows, STATE] = np.where(matching.found, FOUND, MISSED)
        rows = predicted["particle_type"] == name
        predicted.loc[rows, STATE] = np.where(matching.reaching, REACHING, STRAY)
    return truth, predicted


# --- drawing ------------------------------------------------------------------------------------------------------


def _in_plane(points: pd.DataFrame, radius: float, plane: str, depth_a: float, spacing: float):
    """(u, v, r) in pixels of the points whose sphere of `radius` (Angstrom) cuts the plane at `depth_a`: the
    in-plane position and the radius of the sphere's cross-section."""
    across = {"xy": "z", "xz": "y"}[plane]
    vertical = "y" if plane == "xy" else "z"
    dz = points[across].to_numpy(dtype=float) - depth_a
    inside = np.abs(dz) < radius
    r = np.sqrt(radius**2 - dz[inside] ** 2) / spacing
    return (
        points["x"].to_numpy(dtype=float)[inside] / spacing,
        points[vertical].to_numpy(dtype=float)[inside] / spacing,
        r,
    )


def _draw_truth(ax, truth: pd.DataFrame, classes, colours, plane: str, depth_a: float, spacing: float) -> None:
    """Each truth pick cutting the plane as a ring of its cross-section: solid if found (or unmatched), dashed if
    missed."""
    from matplotlib.patches import Circle

    for (name, state), group in truth.groupby(["particle_type", STATE]):
        if name not in classes:
            continue  # a class the project does not list: nothing to compare it with
        for u, v, r in zip(*_in_plane(group, classes[name].radius, plane, depth_a, spacing), strict=True):
            ring = Circle((u, v), r, fill=False, edgecolor=colours[name], linewidth=1.4, linestyle=RING_STYLE[state])
            ring.set_path_effects(_outlined(2.8))  # the outline follows the dashes (a second patch would not)
            ax.add_patch(ring)


def _draw_predictions(ax, predicted: pd.DataFrame, classes, colours, plane: str, depth_a: float, spacing: float):
    """Each prediction whose class sphere cuts the plane: a filled dot if it reaches a truth pick, else an x."""
    for (name, state), group in predicted.groupby(["particle_type", STATE]):
        if name not in classes:
            continue
        u, v, _ = _in_plane(group, classes[name].radius, plane, depth_a, spacing)
        if state == REACHING:
            # a white edge: a dot mostly sits on a dark particle
            style = dict(marker="o", markersize=6, markerfacecolor=colours[name], markeredgecolor="white", mew=1.0)
        else:
            style = dict(marker="x", markersize=8, color=colours[name], mew=2.2, path_effects=_outlined(4.0))
        ax.plot(u, v, linestyle="", **style)


def _outlined(width: float):
    from matplotlib import patheffects

    return [patheffects.Stroke(linewidth=width, foreground=OUTLINE), patheffects.Normal()]


def _draw_marks(ax, truth, predicted, classes, colours, plane: str, depth_a: float, spacing: float) -> None:
    ax.set_autoscale_on(False)  # the slice's extent stays the view: a point far outside it must not shrink the slice
    _draw_truth(ax, truth, classes, colours, plane, depth_a, spacing)
    if predicted is not None:
        _draw_predictions(ax, predicted, classes, colours, plane, depth_a, spacing)


# --- the legend ---------------------------------------------------------------------------------------------------


def class_label(name: str, picks: pd.DataFrame, matching: Matching | None) -> str:
    """A class's legend entry: its pick count, or with predictions the metric's TP / FP / FN of this run."""
    if matching is None:
        return f"{name} ({int((picks['particle_type'] == name).sum())})"
    tp, fp, fn = matching.counts()
    return f"{name}: TP {tp}  FP {fp}  FN {fn}"


def _legend_ring(legend, orig_handle, xdescent, ydescent, width, height, fontsize):
    from matplotlib.patches import Circle

    return Circle((width / 2 - xdescent, height / 2 - ydescent), 0.75 * height)


def _legend_handles(classes, colours, picks, matchings: dict[str, Matching] | None) -> list:
    """One colour swatch per class with its counts, then (with predictions) what each mark means."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Circle

    swatch = dict(marker="s", linestyle="", markersize=10, markeredgecolor=OUTLINE)
    handles = [
        Line2D(
            [],
            [],
            markerfacecolor=colours[c.name],
            label=class_label(c.name, picks, (matchings or {}).get(c.name)),
            **swatch,
        )
        for c in classes
    ]
    if matchings is None:
        return handles
    grey = "0.35"
    return [
        *handles,
        Circle((0, 0), 1, fill=False, edgecolor=grey, linewidth=1.6, label="solid ring: truth found (TP)"),
        Circle(
            (0, 0),
            1,
            fill=False,
            edgecolor=grey,
            linewidth=1.6,
            linestyle=RING_STYLE[MISSED],
            label="dashed ring: truth missed (FN)",
        ),
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            markerfacecolor=grey,
            markeredgecolor=OUTLINE,
            label="dot: prediction reaching a truth",
        ),
        Line2D(
            [],
            [],
            marker="x",
            linestyle="",
            color=grey,
            mew=2.2,
            markersize=8,
            label="x: prediction reaching no truth (FP)",
        ),
    ]


# --- the picture --------------------------------------------------------------------------------------------------


def render_slices(
    tomo: Tomogram,
    picks: pd.DataFrame,
    classes: tuple[ParticleClass, ...],
    out: str | Path,
    title: str = "",
    predictions: pd.DataFrame | None = None,
    distance_multiplier: float = DISTANCE_MULTIPLIER,
) -> dict[str, Matching] | None:
    """Three xy slices (a quarter, half and three quarters deep) and the central xz slice, picks ringed by class;
    with `predictions` (same columns, this run's), the metric's matching drawn (see the module's doc). Returns the
    matching per class (None without predictions), whose counts the legend shows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.legend_handler import HandlerPatch
    from matplotlib.patches import Circle

    by_name = {c.name: c for c in classes}
    colours = display_colors(classes)
    matchings = None
    truth, predicted = picks.assign(**{STATE: TRUTH}), None
    if predictions is not None:
        matchings = match_classes(picks, predictions, classes, distance_multiplier)
        truth, predicted = mark_matches(picks, predictions, matchings)

    vol = tomo.data
    lo, hi = np.percentile(vol, [1, 99])
    depths = [vol.shape[0] // 4, vol.shape[0] // 2, (3 * vol.shape[0]) // 4]
    aspect = vol.shape[1] / vol.shape[2]
    fig, axes = plt.subplots(
        2, 3, figsize=(15, 5 * aspect + 15 * vol.shape[0] / vol.shape[2] + 1.5), layout="constrained"
    )
    gs = axes[1, 0].get_gridspec()
    for ax in axes[1]:
        ax.remove()
    side = fig.add_subplot(gs[1, :])
    for ax, z in zip(axes[0], depths, strict=True):
        ax.imshow(vol[z], cmap="gray", vmin=lo, vmax=hi, origin="lower")
        _draw_marks(ax, truth, predicted, by_name, colours, "xy", z * tomo.voxel_spacing, tomo.voxel_spacing)
        ax.set_title(f"xy slice z={z}")
        ax.set_axis_off()
    y = vol.shape[1] // 2
    side.imshow(vol[:, y, :], cmap="gray", vmin=lo, vmax=hi, origin="lower")
    _draw_marks(side, truth, predicted, by_name, colours, "xz", y * tomo.voxel_spacing, tomo.voxel_spacing)
    side.set_title(f"xz slice y={y} (the missing wedge elongates along z)")
    side.set_axis_off()

    handles = _legend_handles(classes, colours, picks, matchings)
    ncol = len(classes) if matchings is None else 4
    fig.legend(
        handles=handles,
        loc="outside lower center",  # below the slices
        ncol=ncol,
        frameon=False,
        handler_map={Circle: HandlerPatch(patch_func=_legend_ring)},
    )
    heading = title or f"{tomo.name}: {vol.shape} voxels at {tomo.voxel_spacing:g} A"
    if matchings is not None:
        heading += (
            f"\nmatched as the metric does: within {distance_multiplier:g} x the class radius; FP = predictions - TP"
        )
    fig.suptitle(heading)
    with atomic_output(out) as tmp:
        fig.savefig(tmp, dpi=90, format=Path(out).suffix.lstrip(".") or "png")
    plt.close(fig)
    return matchings
