import numpy as np
import torch

from src.training.transforms import augment, preprocess, volume_item


def _volume():
    rng = np.random.default_rng(0)
    image = rng.normal(5.0, 2.0, size=(24, 40, 40)).astype(np.float32)
    label = np.zeros(image.shape, np.uint8)
    label[10:14, 18:22, 18:22] = 3
    return preprocess(7)(volume_item(image, label, 10.0))


def test_preprocessing_normalises_and_keeps_spacing():
    v = _volume()
    assert v["image"].shape == (1, 24, 40, 40)
    assert abs(float(v["image"].mean())) < 1e-5 and abs(float(v["image"].std()) - 1) < 1e-3
    np.testing.assert_allclose(np.diag(v["image"].affine.numpy())[:3], [10.0, 10.0, 10.0])


def test_augmentation_gives_patches_and_never_writes_into_the_cached_volume(params):
    v = _volume()
    image, label = v["image"].clone(), v["label"].clone()
    transforms = augment((16, 32, 32), 7, params.train.augment)
    transforms.set_random_state(0)
    seen = set()
    for _ in range(20):
        patch = transforms(v)[0]
        assert patch["image"].shape == (1, 16, 32, 32) and patch["label"].shape == (1, 16, 32, 32)
        seen |= set(np.unique(patch["label"].numpy()).tolist())
    assert torch.equal(v["image"], image) and torch.equal(v["label"], label)
    assert seen <= {0, 3} and 3 in seen  # crops centred on the labelled class do occur; labels stay integers
