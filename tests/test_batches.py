"""Training batches at the paper's kind of batch: crops of one tomogram, prepared ahead of the step."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from monai.transforms import Compose, RandCropByLabelClassesd
from scipy.stats import chi2_contingency

from src.training.batches import epoch_batches
from src.training.transforms import augment, preprocess, volume_item

PATCH = (8, 16, 16)


def _volumes() -> list[dict]:
    """Two small tomograms, each with a blob of every class 1-6, far enough from the borders that a crop centred on
    it is not shifted."""
    volumes = []
    for seed in (0, 1):
        rng = np.random.default_rng(seed)
        image = rng.normal(size=(16, 48, 48)).astype(np.float32)
        label = np.zeros(image.shape, np.uint8)
        for cls in range(1, 7):
            z, y, x = 8, 6 + 5 * cls, int(rng.integers(10, 38))
            label[z - 2 : z + 2, y - 2 : y + 2, x - 2 : x + 2] = cls
        volumes.append(preprocess(7)(volume_item(image, label, 10.0)))
    return volumes


def _epoch(transforms, volumes, prefetch: int, steps: int = 5, batch_size: int = 2):
    transforms.set_random_state(seed=7)
    rng = np.random.default_rng(7)
    return list(epoch_batches(transforms, volumes, rng, steps, batch_size, "cpu", prefetch))


def test_prefetched_batches_are_the_inline_batches(params):
    volumes = _volumes()
    transforms = augment(PATCH, 7, params.train.augment, crops=4)
    inline, ahead = _epoch(transforms, volumes, 0), _epoch(transforms, volumes, 3)
    assert len(inline) == len(ahead) == 5
    for (a_img, a_lab), (b_img, b_lab) in zip(inline, ahead, strict=True):
        assert a_img.shape == (2 * 4, 1, *PATCH) and a_lab.shape == (2 * 4, 1, *PATCH)
        assert torch.equal(a_img, b_img) and torch.equal(a_lab, b_lab)
    assert not torch.equal(inline[0][0], inline[1][0])  # the steps differ: the stream moves on


def test_a_failure_while_preparing_a_batch_reaches_the_training_loop(params):
    volumes = _volumes()
    transforms = augment(PATCH, 7, params.train.augment)
    calls = 0

    def failing(item):
        nonlocal calls
        calls += 1
        if calls == 3:
            raise ValueError("bad crop")
        return transforms(item)

    batches = epoch_batches(failing, volumes, np.random.default_rng(0), 6, 1, "cpu", prefetch=2)
    with pytest.raises(ValueError, match="bad crop"):
        list(batches)


def _centre_labels(crops) -> list[int]:
    c = [s // 2 for s in PATCH]
    return [int(crop["label"][0, c[0], c[1], c[2]]) for crop in crops]


def test_prepared_crops_follow_the_plain_recipes_class_ratios(params):
    """Ours (class indices computed once per tomogram) against MONAI's plain RandCropByLabelClassesd, which scans the
    label map at every call: same crop shapes, and the same distribution of the class at the crop centre (one crop
    in 7 per class, fewer where a crop near a border is shifted), different seeds."""
    volumes = _volumes()
    still = dataclasses.replace(
        params.train.augment, flip_prob=0.0, rotate90_prob=0.0, affine_prob=0.0, intensity_prob=0.0, noise_prob=0.0
    )
    ours = augment(PATCH, 7, still, crops=16)
    ours.set_random_state(seed=1)
    plain = Compose(
        [
            RandCropByLabelClassesd(
                keys=("image", "label"),
                label_key="label",
                spatial_size=PATCH,
                num_classes=7,
                ratios=[still.background_ratio] + [1.0] * 6,
                num_samples=16,
                warn=False,
            )
        ]
    )
    plain.set_random_state(seed=2)
    bare = [{k: v[k] for k in ("image", "label")} for v in volumes]  # no precomputed indices
    counts = []
    for transforms, data in ((ours, volumes), (plain, bare)):
        labels = []
        for step in range(40):
            crops = transforms(data[step % 2])
            assert len(crops) == 16 and all(c["image"].shape == (1, *PATCH) for c in crops)
            labels += _centre_labels(crops)
        counts.append(np.bincount(labels, minlength=7))
    assert counts[0].sum() == counts[1].sum() == 640
    assert (np.array(counts) > 50).all(), counts  # every class is a crop centre about 1/7 of the time (91 of 640)
    assert chi2_contingency(np.array(counts)).pvalue > 0.001, counts
