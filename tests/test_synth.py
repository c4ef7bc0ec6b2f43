import dataclasses
import hashlib
import json
import os
import re

import copick
import numpy as np
import pytest
import zarr

from src.classes import CZII_CLASSES
from src.data.copick_io import CopickProject, angstrom_to_voxel
from src.data.synth import PARTICLE_SHAPES, synthesize_project, synthesize_run
from src.errors import UserError
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
    imaging = dataclasses.replace(s.imaging, snr=float("inf"), ctf=False)
    settings = dataclasses.replace(s, seed=1, shape=(48, 96, 96), voxel_spacing=SPACING, imaging=imaging)
    volumes, objects = synthesize_run(settings, 0, CZII_CLASSES)
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


def _stamped(lobes, radius_vox: float, size: int = 64) -> np.ndarray:
    from src.data.synth import PlacedObject, _stamp

    volume = np.zeros((size, size, size), dtype=np.float32)
    centre = np.full(3, size / 2 - 0.5)
    _stamp(volume, PlacedObject("x", centre, radius_vox, np.eye(3)), lobes)
    return volume


def test_overlapping_lobes_form_a_union_never_a_sum():
    """beta-galactosidase's four lobes overlap in the middle: no voxel may hold more than one lobe's density."""
    from src.data.synth import Lobe

    lobes = PARTICLE_SHAPES["beta-galactosidase"]
    assert _stamped(lobes, 9.0).max() <= 1.0 + 1e-6
    twice = (Lobe((0, 0, 0), (0.8, 0.8, 0.8)), Lobe((0.1, 0, 0), (0.8, 0.8, 0.8)))
    once = (Lobe((0, 0, 0), (0.8, 0.8, 0.8)),)
    assert _stamped(twice, 9.0).max() <= 1.0 + 1e-6
    assert _stamped(twice, 9.0).sum() < 1.2 * _stamped(once, 9.0).sum()  # a sum would be about twice


@pytest.mark.parametrize("name", [c.name for c in CZII_CLASSES])
def test_integrated_density_is_proportional_to_molecular_mass(params, name):
    """Integrated density x voxel volume = (mass + cargo) / protein density, to 3 % (the sub-voxel position)."""
    from src.data.synth import PlacedObject, _object_parts, class_lobes, protein_volume

    s = dataclasses.replace(params.synth, voxel_spacing=10.0)
    particles = s.particles
    radius = {c.name: c.radius for c in CZII_CLASSES}[name] / s.voxel_spacing
    obj = PlacedObject(name, np.zeros(3), radius, np.eye(3))
    parts = _object_parts(obj, class_lobes(CZII_CLASSES, particles, s.voxel_spacing), s, np.random.default_rng(0))
    integrated = sum(float(_stamped(lobes, radius, size=40).sum()) for lobes in parts) * s.voxel_spacing**3
    expected = protein_volume(particles.mass_kda[name] + particles.cargo_kda.get(name, 0.0), particles)
    assert integrated == pytest.approx(expected, rel=0.03), name


def test_vlp_cargo_is_granules_inside_the_cavity_without_overlap(params):
    from src.data.synth import cargo_granules, class_lobes

    spacing = 10.0
    (shell,) = class_lobes(CZII_CLASSES, params.synth.particles, spacing)["virus-like-particle"]
    radius = 13.5
    granules = cargo_granules(np.random.default_rng(1), shell, radius, 1000.0, 2.5)
    centres = np.array([g.centre for g in granules]) * radius
    sizes = np.array([g.semi_axes[0] for g in granules]) * radius
    assert np.all(np.linalg.norm(centres, axis=1) + sizes <= shell.hollow * radius)
    gaps = np.linalg.norm(centres[:, None] - centres[None], axis=-1) + np.eye(len(centres)) * 1e9
    assert gaps.min() >= 2 * sizes.max() - 1e-9
    assert len(granules) == round(1000.0 / (4 / 3 * np.pi * 2.5**3))


def test_masses_order_the_classes_contrast(params):
    """Heavier classes carry more integrated density: the ribosome most, beta-amylase least."""
    from src.data.synth import class_lobes

    spacing = 10.0
    lobes = class_lobes(CZII_CLASSES, params.synth.particles, spacing)
    radius = {c.name: c.radius for c in CZII_CLASSES}
    totals = {n: float(_stamped(lobes[n], radius[n] / spacing, size=40).sum()) for n in lobes}
    assert max(totals, key=totals.get) == "ribosome" and min(totals, key=totals.get) == "beta-amylase"


def test_shells_keep_their_outer_radius_and_get_the_wall_their_mass_fills(params):
    from src.data.synth import class_lobes

    lobes = class_lobes(CZII_CLASSES, params.synth.particles, 10.012444)
    (ferritin,) = lobes["apo-ferritin"]
    assert ferritin.semi_axes == (1.0, 1.0, 1.0) and 0.6 < ferritin.hollow < 0.75  # 12 nm outer, ~8 nm inner
    (vlp,) = lobes["virus-like-particle"]
    assert 0.85 < vlp.hollow < 0.93  # a thin capsid


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"particles": {"mass_kda": {"ribosome": -5.0}}},
            "synth.particles.mass_kda.ribosome = -5.0 (must be in (0, inf))",
        ),
        ({"particles": {"protein_density": 0.0}}, "synth.particles.protein_density = 0.0 (must be in (0, inf))"),
        ({"particles": {"mass_kda": {"apo-ferritin": 5000.0}}}, "apo-ferritin: its mass fills"),
        ({"imaging": {"snr": 0.0}}, "synth.imaging.snr = 0 (must be > 0, .inf for no noise)"),
        (
            {"distractors": {"lookalike_mass_kda": (700.0, 150.0)}},
            "synth.distractors.lookalike_mass_kda = [700.0, 150.0] (must be [min, max] with min <= max)",
        ),
        ({"particles": {"cargo_kda": {"ribosome": 100.0}}}, "only a shell class can hold cargo"),
        ({"particles": {"cargo_kda": {"apo-ferritin": 900.0}}}, "more than half of its cavity"),
        (
            {"particles": {"cargo_granule_radius": 0.0}},
            "synth.particles.cargo_granule_radius = 0.0 (must be in (0, inf))",
        ),
        (
            {"placement": {"unannotated": {"beta-amylase": 1.0}}},
            "synth.placement.unannotated.beta-amylase = 1.0 (must be in [0, 1))",
        ),
    ],
)
def test_bad_realism_params_are_one_sentence_before_any_work(tmp_path, params, change, message):
    s = params.synth
    section, values = next(iter(change.items()))
    current = getattr(s, section)
    for key in ("mass_kda", "cargo_kda"):
        if key in values:
            values = {key: {**getattr(current, key), **values[key]}}
    settings = dataclasses.replace(s, runs=1, shape=TINY_SHAPE, **{section: dataclasses.replace(current, **values)})
    with pytest.raises(UserError, match=re.escape(message)):
        synthesize_project(tmp_path / "p", settings, CZII_CLASSES, 10.0, progress=False)
    assert not (tmp_path / "p").exists()


def test_unannotated_particles_are_in_the_volume_but_not_in_the_picks(tmp_path, params):
    """Incomplete annotation, as in the real data: some particles of a class get no pick."""
    s = params.synth
    placement = dataclasses.replace(s.placement, unannotated={"ribosome": 0.5}, count_scale=6.0)  # enough ribosomes
    settings = dataclasses.replace(s, runs=1, shape=(48, 96, 96), placement=placement)
    _, objects = synthesize_run(settings, 0, CZII_CLASSES)
    ribosomes = [o for o in objects if o.kind == "ribosome"]
    missed = [o for o in ribosomes if not o.annotated]
    assert 0 < len(missed) < len(ribosomes)
    synthesize_project(tmp_path / "p", settings, CZII_CLASSES, 10.0, progress=False)
    picks = CopickProject(tmp_path / "p").picks("TS_SYN_000")
    assert (picks.particle_type == "ribosome").sum() == len(ribosomes) - len(missed)
