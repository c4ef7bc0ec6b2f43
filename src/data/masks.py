"""Label masks: a sphere per pick, `label_radius_fraction` x the class radius, at the tomogram's true voxel spacing.

Overlap rule: classes are painted from the largest radius to the smallest, so where spheres of different classes
overlap the voxel takes the smaller particle's label (a small particle's sphere would otherwise vanish inside a large
neighbour's); where spheres of one class overlap, they merge.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from src.classes import ParticleClass
from src.data.copick_io import angstrom_to_voxel
from src.metric import COORDS


def label_radius_voxels(particle_class: ParticleClass, voxel_spacing: float, label_radius_fraction: float) -> float:
    """A class's label-sphere radius in voxels: `label_radius_fraction` x its radius (A) at the true spacing (A)."""
    return label_radius_fraction * particle_class.radius / voxel_spacing


def paint_spheres(mask: np.ndarray, centres_zyx: np.ndarray, radius_vox: float, label: int) -> None:
    """Set voxels within `radius_vox` of each (fractional) centre to `label`, in place, clipped to the volume."""
    reach = int(np.ceil(radius_vox))
    for centre in np.asarray(centres_zyx, dtype=float).reshape(-1, 3):
        lo = np.maximum(np.floor(centre).astype(int) - reach, 0)
        hi = np.minimum(np.floor(centre).astype(int) + reach + 2, mask.shape)
        if np.any(hi <= lo):
            continue
        z, y, x = np.ogrid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        inside = (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= radius_vox**2
        mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]][inside] = label


def label_mask(
    shape: tuple[int, int, int],
    picks: pd.DataFrame,
    classes: tuple[ParticleClass, ...],
    voxel_spacing: float,
    radius_fraction: float,
) -> np.ndarray:
    """A uint8 (z, y, x) mask: 0 background, each class's label in a sphere around each of its picks."""
    mask = np.zeros(shape, dtype=np.uint8)
    for cls in sorted(classes, key=lambda c: -c.radius):
        points = picks.loc[picks.particle_type == cls.name, COORDS].to_numpy()
        if len(points):
            radius_vox = label_radius_voxels(cls, voxel_spacing, radius_fraction)
            paint_spheres(mask, angstrom_to_voxel(points, voxel_spacing), radius_vox, cls.label)
    return mask
