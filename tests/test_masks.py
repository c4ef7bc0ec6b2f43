import numpy as np
import pandas as pd
import pytest

from src.classes import CZII_CLASSES, by_name
from src.data.masks import label_mask

CLASSES = by_name(CZII_CLASSES)


def _picks(rows):
    return pd.DataFrame(rows, columns=["experiment", "particle_type", "x", "y", "z"])


@pytest.mark.parametrize("spacing", [10.012444, 20.0])
def test_sphere_radius_at_true_spacing(spacing):
    centre_zyx = np.array([20.3, 21.7, 19.2])
    x, y, z = centre_zyx[::-1] * spacing
    mask = label_mask((40, 44, 40), _picks([("r", "ribosome", x, y, z)]), CZII_CLASSES, spacing, 0.5)
    radius = 0.5 * 150.0 / spacing
    zz, yy, xx = np.indices(mask.shape)
    dist = np.sqrt((zz - centre_zyx[0]) ** 2 + (yy - centre_zyx[1]) ** 2 + (xx - centre_zyx[2]) ** 2)
    np.testing.assert_array_equal(mask == CLASSES["ribosome"].label, dist <= radius)
    assert abs((mask > 0).sum() - 4 / 3 * np.pi * radius**3) < 0.1 * 4 / 3 * np.pi * radius**3


def test_smaller_class_wins_where_spheres_overlap():
    spacing = 10.0
    rows = [("r", "ribosome", 200.0, 200.0, 200.0), ("r", "apo-ferritin", 230.0, 200.0, 200.0)]
    mask = label_mask((40, 40, 40), _picks(rows), CZII_CLASSES, spacing, 0.5)
    assert mask[20, 20, 23] == CLASSES["apo-ferritin"].label  # apo-ferritin centre, inside the ribosome sphere
    assert mask[20, 20, 17] == CLASSES["ribosome"].label
    assert (mask == CLASSES["apo-ferritin"].label).sum() == (
        label_mask((40, 40, 40), _picks(rows[1:]), CZII_CLASSES, spacing, 0.5) > 0
    ).sum()


def test_spheres_at_the_edge_are_clipped():
    mask = label_mask((10, 10, 10), _picks([("r", "ribosome", 0.0, 0.0, 0.0)]), CZII_CLASSES, 10.0, 0.5)
    assert mask[0, 0, 0] == CLASSES["ribosome"].label and mask[9, 9, 9] == 0
