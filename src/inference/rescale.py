"""Resampling a tomogram to the pixel size a model was trained at (`predict --rescale`).

The resampled grid keeps the original's physical frame: its voxel j lies at j * new spacing Angstrom, as the
original's voxel i lies at i * old spacing (the competition's convention, origin at voxel 0). So points found on the
resampled volume are already in the original tomogram's Angstrom, with no coordinate conversion after. The new
grid covers the original's extent: its last voxel is the last one not beyond the original's last voxel centre.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from src.data.copick_io import Tomogram


def resampled_shape(shape: tuple[int, ...], old_spacing: float, new_spacing: float) -> tuple[int, ...]:
    """Voxels per axis of the same extent at `new_spacing`: positions 0, s, 2s, ... up to the last original centre."""
    return tuple(int(np.floor((n - 1) * old_spacing / new_spacing + 1e-9)) + 1 for n in shape)


def resample_tomogram(tomo: Tomogram, spacing: float) -> Tomogram:
    """`tomo` on a grid of `spacing` Angstrom in the same frame (linear interpolation). Shrinking is smoothed first,
    as scikit-image's anti-aliasing does (Gaussian sigma = (factor - 1) / 2 voxels), so fine noise does not alias into
    particle-sized structure."""
    factor = spacing / tomo.voxel_spacing  # > 1: fewer, larger voxels
    volume = tomo.data.astype(np.float32, copy=False)
    if factor > 1:
        volume = ndimage.gaussian_filter(volume, sigma=(factor - 1) / 2, mode="nearest")
    out = ndimage.affine_transform(
        volume,
        np.full(3, factor),  # output voxel j samples input coordinate j * factor
        output_shape=resampled_shape(tomo.data.shape, tomo.voxel_spacing, spacing),
        order=1,
        mode="nearest",
    )
    return Tomogram(out.astype(np.float32, copy=False), float(spacing), tomo.name)
