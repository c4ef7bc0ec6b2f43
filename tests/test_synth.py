import hashlib
import json
import os

import copick
import numpy as np
import pytest
import zarr

from src.classes import CZII_CLASSES
from src.data.copick_io import CopickProject, angstrom_to_voxel
from src.data.synth import PARTICLE_SHAPES, synthesize_run
from tests.conftest import TINY_SHAPE, make_project

SPACING = 10.012444


def _tree_digest(root):
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_layout_is_the_competition_one(tiny_project):
    config = json.loads((tiny_project / "copick_config.json").read_text())
    assert [o["name"] for o in config["pickable_objects"]] == [c.name for c in CZII_CLASSES]
    tomo = tiny_project / "static/ExperimentRuns/TS_SYN_000/VoxelSpacing10.000/denoised.zarr"
    group = zarr.open_group(str(tomo), mode="r")
    assert [group[level].shape for level in "012"] == [TINY_SHAPE, (16, 32, 32), (8, 16, 16)]
    multiscale = group.attrs["multiscales"][0]
    assert [a["name"] for a in multiscale["axes"]] == ["z", "y", "x"]
    scales = [d["coordinateTransformations"][0]["scale"] for d in multiscale["datasets"]]
    assert scales == [[SPACING] * 3, [2 * SPACING] * 3, [4 * SPACING] * 3]
    assert (tiny_project / "static/ExperimentRuns/TS_SYN_000/VoxelSpacing10.000/wbp.zarr").is_dir()
    picks = json.loads((tiny_project / "overlay/ExperimentRuns/TS_SYN_000/Picks/ribosome.json").read_text())
    assert picks["unit"] == "angstrom" and picks["pickable_object_name"] == "ribosome"
    assert picks["run_name"] == "TS_SYN_000" and len(picks["points"]) >= 1


def test_our_reader_reads_it_back(tiny_project):
    project = CopickProject(tiny_project / "copick_config.json")
    assert project.run_names() == ["TS_SYN_000", "TS_SYN_001"]
    tomo = project.tomogram("TS_SYN_000", "denoised", 10.0)
    assert tomo.data.shape == TINY_SHAPE and tomo.voxel_spacing == pytest.approx(SPACING)
    picks = project.picks("TS_SYN_000", tomo)
    assert len(picks) > 0 and set(picks.particle_type) <= {c.name for c in CZII_CLASSES}


def test_real_copick_reads_tomograms_and_copick_named_picks(tmp_path, params, monkeypatch):
    out = tmp_path / "proj"
    make_project(out, params, runs=1, picks_naming="copick")
    ours = CopickProject(out / "copick_config.json")
    monkeypatch.chdir(out)  # the config's roots are relative to the project folder
    root = copick.from_file(str(out / "copick_config.json"))
    run = root.get_run("TS_SYN_000")
    volume = run.get_voxel_spacing(10.0).get_tomograms("denoised")[0].numpy()
    np.testing.assert_array_equal(volume, ours.tomogram("TS_SYN_000", "denoised", 10.0).data)
    our_picks = ours.picks("TS_SYN_000")
    for cls in CZII_CLASSES:
        (picks,) = run.get_picks(object_name=cls.name, user_id="curation")
        positions, _ = picks.numpy()  # copick returns (N, 3) x, y, z in Angstrom and the transforms
        expected = our_picks.loc[our_picks.particle_type == cls.name, ["x", "y", "z"]].to_numpy()
        np.testing.assert_allclose(positions, expected, atol=1e-3)


def test_same_seed_same_bytes_other_seed_differs(tmp_path, params):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        make_project(tmp_path / name, params, runs=1, seed=seed)
    assert _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "b")
    assert _tree_digest(tmp_path / "a") != _tree_digest(tmp_path / "c")


def test_parallel_workers_write_the_same_bytes(tmp_path, params):
    serial = make_project(tmp_path / "serial", params, runs=3, seed=5)
    parallel = make_project(tmp_path / "parallel", params, runs=3, seed=5, workers=2)
    assert _tree_digest(tmp_path / "serial") == _tree_digest(tmp_path / "parallel")
    assert serial["particles"] == parallel["particles"]


def test_picks_sit_on_their_particles(params):
    """Noise-free, CTF-free: every solid particle's centre voxel is darker than the volume (protein is dark)."""
    s = params.synth
    imaging = params.synth.imaging.__class__(**{**params.synth.imaging.__dict__, "snr": 0.0, "ctf": False})
    volumes, objects = synthesize_run(1, 0, (48, 96, 96), SPACING, CZII_CLASSES, s.placement, s.distractors, imaging)
    volume = volumes["wbp"]
    background = np.median(volume)
    for obj in objects:
        if obj.kind in ("ribosome", "thyroglobulin", "beta-amylase"):
            z, y, x = np.round(obj.centre_zyx).astype(int)
            # thyroglobulin's two lobes meet at the centre; sample the lobe axis neighbourhood's minimum
            patch = volume[max(z - 2, 0) : z + 3, max(y - 2, 0) : y + 3, max(x - 2, 0) : x + 3]
            assert patch.min() < background - 1.0, obj.kind


def test_picks_round_trip_in_angstrom(tiny_project):
    """Pick coordinates in the JSON are voxel centres x spacing, in x, y, z order."""
    project = CopickProject(tiny_project / "copick_config.json")
    picks = project.picks("TS_SYN_001")
    zyx = angstrom_to_voxel(picks[["x", "y", "z"]].to_numpy(), SPACING)
    assert np.all(zyx >= 0) and np.all(zyx < np.array(TINY_SHAPE))
    raw = json.loads((tiny_project / "overlay/ExperimentRuns/TS_SYN_001/Picks/apo-ferritin.json").read_text())
    first = raw["points"][0]["location"]
    row = picks[picks.particle_type == "apo-ferritin"].iloc[0]
    assert (row.x, row.y, row.z) == (first["x"], first["y"], first["z"])


def test_every_czii_class_has_a_shape_within_its_radius():
    for cls in CZII_CLASSES:
        for lobe in PARTICLE_SHAPES[cls.name]:
            assert np.linalg.norm(lobe.centre) + max(lobe.semi_axes) <= 1.0 + 1e-9, cls.name


def test_interrupted_synthesis_leaves_nothing(tmp_path, params, monkeypatch):
    import src.data.synth as synth

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(synth, "write_picks_json", boom)
    with pytest.raises(RuntimeError):
        make_project(tmp_path / "proj", params, runs=1)
    assert os.listdir(tmp_path) == []
