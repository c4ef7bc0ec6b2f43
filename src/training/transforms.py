"""MONAI dictionary transforms exactly as the paper lists them (docs/design.md section 1).

Preprocessing (once per tomogram): EnsureChannelFirstd, NormalizeIntensityd (z-score per volume), Orientationd (RAS).
Augmentation (per patch): RandCropByLabelClassesd (crops centred on labelled classes), RandFlipd (each axis),
RandRotate90d, RandAffined (small rotation and scaling), RandShiftIntensityd, RandStdShiftIntensityd,
RandGaussianNoised. Every probability and range is a param under `train.augment`.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import (
    ClassesToIndicesd,
    Compose,
    EnsureChannelFirstd,
    Lambdad,
    NormalizeIntensityd,
    Orientationd,
    RandAffined,
    RandCropByLabelClassesd,
    RandFlipd,
    RandGaussianNoised,
    RandRotate90d,
    RandShiftIntensityd,
    RandStdShiftIntensityd,
)

KEYS = ("image", "label")


def _copy(tensor):
    return tensor.clone()


def volume_item(image: np.ndarray, label: np.ndarray, voxel_spacing: float) -> dict:
    """A (z, y, x) tomogram and its label mask as MetaTensors whose affine carries the voxel spacing."""
    affine = torch.diag(torch.tensor([voxel_spacing, voxel_spacing, voxel_spacing, 1.0], dtype=torch.float64))
    return {
        "image": MetaTensor(torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)), affine=affine),
        "label": MetaTensor(torch.from_numpy(np.ascontiguousarray(label, dtype=np.uint8)), affine=affine),
    }


INDICES_KEY = "label_cls_indices"


def preprocess(num_classes: int) -> Compose:
    """The paper's preprocessing, plus the voxel indices of each class computed once (ClassesToIndicesd), so that
    RandCropByLabelClassesd does not rescan a whole tomogram for every patch."""
    return Compose(
        [
            EnsureChannelFirstd(keys=KEYS, channel_dim="no_channel"),
            NormalizeIntensityd(keys="image"),
            # labels given (the old default, same result): MONAI warns on every run when the default is used
            Orientationd(keys=KEYS, axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S"))),
            ClassesToIndicesd(keys="label", num_classes=num_classes),
        ]
    )


def augment(patch_size: tuple[int, int, int], num_classes: int, aug, crops: int = 1) -> Compose:
    """`crops` random patches of a tomogram and their augmentations; `aug` is params.train.augment. Rotations by 90
    degrees stay in the y-x plane, because patches are not cubic (32 deep, 64-128 wide) and z carries the missing
    wedge."""
    return Compose(
        [
            RandCropByLabelClassesd(
                keys=KEYS,
                label_key="label",
                indices_key=INDICES_KEY,
                spatial_size=patch_size,
                num_classes=num_classes,
                ratios=[aug.background_ratio] + [1.0] * (num_classes - 1),
                num_samples=crops,
                warn=False,
            ),
            # The crop is a view of the cached tomogram; the in-place intensity transforms below would otherwise
            # write into the cache and drift the training data from step to step.
            Lambdad(keys=KEYS, func=_copy),
            RandFlipd(keys=KEYS, prob=aug.flip_prob, spatial_axis=0),
            RandFlipd(keys=KEYS, prob=aug.flip_prob, spatial_axis=1),
            RandFlipd(keys=KEYS, prob=aug.flip_prob, spatial_axis=2),
            RandRotate90d(keys=KEYS, prob=aug.rotate90_prob, spatial_axes=(1, 2)),
            RandAffined(
                keys=KEYS,
                prob=aug.affine_prob,
                rotate_range=[np.deg2rad(aug.rotate_deg)] * 3,
                scale_range=[aug.scale] * 3,
                mode=("bilinear", "nearest"),
                padding_mode="zeros",
            ),
            RandShiftIntensityd(keys="image", offsets=aug.intensity_shift, prob=aug.intensity_prob),
            RandStdShiftIntensityd(keys="image", factors=aug.intensity_shift, prob=aug.intensity_prob),
            RandGaussianNoised(keys="image", std=aug.noise_std, prob=aug.noise_prob),
        ]
    )
