import json
import subprocess
import sys

import numpy as np
import pytest

from src.classes import CZII_CLASSES
from src.data.portal import class_for_portal_object, portal_points_to_angstrom
from src.errors import DataError
from tests.conftest import REPO


def test_portal_points_are_converted_from_voxels_to_angstrom():
    lines = [
        {"type": "orientedPoint", "location": {"x": 10, "y": 20, "z": 3}, "xyz_rotation_matrix": np.eye(3).tolist()},
        {"type": "orientedPoint", "location": {"x": 0.5, "y": 1, "z": 2}},
    ]
    xyz, rot = portal_points_to_angstrom("\n".join(json.dumps(x) for x in lines) + "\n", 10.012444)
    np.testing.assert_allclose(xyz, np.array([[10, 20, 3], [0.5, 1, 2]]) * 10.012444)
    assert rot.shape == (2, 3, 3)
    with pytest.raises(DataError, match="line 1"):
        portal_points_to_angstrom('{"type": "point"}', 10.0)


def test_portal_object_names_map_to_classes():
    assert class_for_portal_object("ferritin complex", CZII_CLASSES) == "apo-ferritin"
    assert class_for_portal_object("cytosolic ribosome", CZII_CLASSES) == "ribosome"
    assert class_for_portal_object("beta-galactosidase", CZII_CLASSES) == "beta-galactosidase"
    assert class_for_portal_object("membrane", CZII_CLASSES) is None


def test_download_offline_fails_with_one_sentence(tmp_path):
    # A dataset id that does not exist: offline this cannot reach the portal, online the portal has no such runs;
    # either way one sentence and nothing written, and never a multi-gigabyte download from a test.
    result = subprocess.run(
        [sys.executable, "-m", "src", "download", "--dataset", "999999999", "--out", str(tmp_path / "portal")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith(("error: cannot reach the CryoET Data Portal", "error: the CryoET Data Portal has"))
    assert not (tmp_path / "portal").exists()


def test_download_broken_midway_keeps_nothing(tmp_path, monkeypatch):
    """The connection drops after the first run has been written: one clear error, and no half-written project."""
    import cryoet_data_portal

    from src.data.portal import PortalUnreachable, download_dataset

    class Spacing:
        voxel_spacing = 10.012
        tomograms = ()
        annotations = ()

    class Run:
        def __init__(self, name, broken):
            self.name, self.broken = name, broken

        @property
        def tomogram_voxel_spacings(self):
            if self.broken:
                raise ConnectionError("connection reset by peer")
            return [Spacing()]

    monkeypatch.setattr(cryoet_data_portal, "Client", lambda: None)
    monkeypatch.setattr(cryoet_data_portal.Run, "find", staticmethod(lambda *a, **k: [Run("a", False), Run("b", True)]))
    out = tmp_path / "portal"
    with pytest.raises(PortalUnreachable, match="ConnectionError.*nothing was kept"):
        download_dataset(10440, out, CZII_CLASSES, "denoised", 10.0)
    assert not out.exists() and list(tmp_path.iterdir()) == []
