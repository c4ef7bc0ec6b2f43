"""A picture of a tomogram with its picks: look at the data before training on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from src.atomic import atomic_output
from src.classes import ParticleClass
from src.data.copick_io import Tomogram


def _circles(ax, picks: pd.DataFrame, classes: dict[str, ParticleClass], plane: str, depth_a: float, spacing: float):
    """Circle each pick whose sphere cuts the displayed plane, with the radius of its cross-section."""
    across = {"xy": "z", "xz": "y"}[plane]
    horizontal, vertical = "x", ("y" if plane == "xy" else "z")
    for name, group in picks.groupby("particle_type"):
        cls = classes[name]
        dz = group[across].to_numpy() - depth_a
        inside = np.abs(dz) < cls.radius
        r = np.sqrt(cls.radius**2 - dz[inside] ** 2) / spacing
        colour = np.array(cls.color[:3]) / 255
        for u, v, rr in zip(group[horizontal].to_numpy()[inside], group[vertical].to_numpy()[inside], r, strict=True):
            ax.add_patch(_circle((u / spacing, v / spacing), rr, colour))


def _circle(centre, radius, colour):
    from matplotlib.patches import Circle

    return Circle(centre, radius, fill=False, edgecolor=colour, linewidth=1.2)


def render_slices(
    tomo: Tomogram, picks: pd.DataFrame, classes: tuple[ParticleClass, ...], out: str | Path, title: str = ""
) -> None:
    """Three xy slices (a quarter, half and three quarters deep) and the central xz slice, picks circled by class."""
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
        ax.set_title(f"xy slice z={z}")
        ax.set_axis_off()
    y = vol.shape[1] // 2
    side.imshow(vol[:, y, :], cmap="gray", vmin=lo, vmax=hi, origin="lower")
    _circles(side, picks, by_name, "xz", y * tomo.voxel_spacing, tomo.voxel_spacing)
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
            label=f"{c.name} ({(picks.particle_type == c.name).sum()})",
        )
        for c in classes
    ]
    fig.legend(handles=handles, loc="lower center", ncol=len(classes), frameon=False)
    fig.suptitle(title or f"{tomo.name}: {vol.shape} voxels at {tomo.voxel_spacing:g} A")
    with atomic_output(out) as tmp:
        fig.savefig(tmp, dpi=90, format=Path(out).suffix.lstrip(".") or "png")
    plt.close(fig)
