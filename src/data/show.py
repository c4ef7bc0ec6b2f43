"""A picture of a tomogram with its picks: look at the data before training on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from src.atomic import atomic_output
from src.classes import ParticleClass
from src.data.copick_io import Tomogram


def _circles(
    ax,
    picks: pd.DataFrame,
    classes: dict[str, ParticleClass],
    plane: str,
    depth_a: float,
    spacing: float,
    filled: bool = False,
):
    """Mark each point whose sphere cuts the displayed plane: truth as a ring of the cross-section's radius; with
    `filled`, a prediction as a disc of half that radius (the metric's match radius), so a hit is a disc in a ring."""
    across = {"xy": "z", "xz": "y"}[plane]
    horizontal, vertical = "x", ("y" if plane == "xy" else "z")
    for name, group in picks.groupby("particle_type"):
        cls = classes.get(name)
        if cls is None:
            continue  # a class the project does not list: nothing to compare it with
        dz = group[across].to_numpy() - depth_a
        inside = np.abs(dz) < cls.radius
        r = np.sqrt(cls.radius**2 - dz[inside] ** 2) / spacing * (0.5 if filled else 1.0)
        colour = np.array(cls.color[:3]) / 255
        for u, v, rr in zip(group[horizontal].to_numpy()[inside], group[vertical].to_numpy()[inside], r, strict=True):
            ax.add_patch(_circle((u / spacing, v / spacing), rr, colour, filled))


def _circle(centre, radius, colour, filled: bool = False):
    from matplotlib.patches import Circle

    if filled:
        return Circle(centre, radius, facecolor=(*colour, 0.5), edgecolor="white", linewidth=0.5)
    return Circle(centre, radius, fill=False, edgecolor=colour, linewidth=1.2)


def _legend_label(name: str, picks: pd.DataFrame, predictions: pd.DataFrame | None) -> str:
    truth = int((picks.particle_type == name).sum())
    if predictions is None:
        return f"{name} ({truth})"
    return f"{name} ({truth}, {int((predictions.particle_type == name).sum())} predicted)"


def render_slices(
    tomo: Tomogram,
    picks: pd.DataFrame,
    classes: tuple[ParticleClass, ...],
    out: str | Path,
    title: str = "",
    predictions: pd.DataFrame | None = None,
) -> None:
    """Three xy slices (a quarter, half and three quarters deep) and the central xz slice, picks circled by class;
    `predictions` (same columns) drawn filled over them, so hits and misses show."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    by_name = {c.name: c for c in classes}
    vol = tomo.data
    lo, hi = np.percentile(vol, [1, 99])
    depths = [vol.shape[0] // 4, vol.shape[0] // 2, (3 * vol.shape[0]) // 4]
    aspect = vol.shape[1] / vol.shape[2]
    fig, axes = plt.subplots(
        2, 3, figsize=(15, 5 * aspect + 15 * vol.shape[0] / vol.shape[2] + 1), layout="constrained"
    )
    gs = axes[1, 0].get_gridspec()
    for ax in axes[1]:
        ax.remove()
    side = fig.add_subplot(gs[1, :])
    for ax, z in zip(axes[0], depths, strict=True):
        ax.imshow(vol[z], cmap="gray", vmin=lo, vmax=hi, origin="lower")
        _circles(ax, picks, by_name, "xy", z * tomo.voxel_spacing, tomo.voxel_spacing)
        if predictions is not None:
            _circles(ax, predictions, by_name, "xy", z * tomo.voxel_spacing, tomo.voxel_spacing, filled=True)
        ax.set_title(f"xy slice z={z}")
        ax.set_axis_off()
    y = vol.shape[1] // 2
    side.imshow(vol[:, y, :], cmap="gray", vmin=lo, vmax=hi, origin="lower")
    _circles(side, picks, by_name, "xz", y * tomo.voxel_spacing, tomo.voxel_spacing)
    if predictions is not None:
        _circles(side, predictions, by_name, "xz", y * tomo.voxel_spacing, tomo.voxel_spacing, filled=True)
    side.set_title(f"xz slice y={y} (the missing wedge elongates along z)")
    side.set_axis_off()
    handles = [
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            markerfacecolor="none",
            markeredgecolor=np.array(c.color[:3]) / 255,
            label=_legend_label(c.name, picks, predictions),
        )
        for c in classes
    ]
    if predictions is not None:
        ring = dict(marker="o", linestyle="", markeredgecolor="k")
        handles.append(Line2D([], [], markerfacecolor="none", label="ring: truth", **ring))
        handles.append(Line2D([], [], markerfacecolor="k", label="disc: predicted (match radius)", **ring))
    ncol = len(classes) if predictions is None else (len(handles) + 1) // 2
    fig.legend(handles=handles, loc="outside lower center", ncol=ncol, frameon=False)  # below the slices
    fig.suptitle(title or f"{tomo.name}: {vol.shape} voxels at {tomo.voxel_spacing:g} A")
    with atomic_output(out) as tmp:
        fig.savefig(tmp, dpi=90, format=Path(out).suffix.lstrip(".") or "png")
    plt.close(fig)
