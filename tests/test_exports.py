"""Exports of picks: each format written by `python -m src export` and read back with the format's own library."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest
import zarr

from src.classes import CZII_CLASSES, by_name, display_colors
from src.data.copick_io import CopickProject
from src.errors import UserError
from src.exports import NAPARI_COLUMNS, points_with_spacing, read_picks
from tests.conftest import REPO


def run_cli(*args):
    from typer.testing import CliRunner

    from src.__main__ import app

    return CliRunner().invoke(app, [str(a) for a in args])


def zarr_group(project_dir, run):
    return zarr.open(str(project_dir / "static" / "ExperimentRuns" / run / "VoxelSpacing10.000" / "denoised.zarr"))


def zarr_spacing(project_dir, run) -> float:
    """A run's voxel spacing read straight from its zarr's OME-NGFF metadata (not through the project's reader)."""
    group = zarr_group(project_dir, run)
    return float(group.attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"][-1])


def zarr_size_xyz(project_dir, run) -> np.ndarray:
    """A run's tomogram size in pixels along x, y, z, read straight from its zarr's level 0."""
    group = zarr_group(project_dir, run)
    return np.array(group[group.attrs["multiscales"][0]["datasets"][0]["path"]].shape[::-1], dtype=float)


@pytest.fixture(scope="module")
def solution_csv(tiny_project, tmp_path_factory):
    """The tiny project's picks as a submission-style CSV (Angstrom), with more than one run and class."""
    project = CopickProject(tiny_project)
    frame = pd.concat([project.picks(r) for r in project.run_names()], ignore_index=True)
    frame.insert(0, "id", range(len(frame)))
    path = tmp_path_factory.mktemp("exports") / "picks.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    monkeypatch.chdir(REPO)  # params.yaml is read from the working directory


def test_star_reads_back_with_starfile_in_tomogram_pixels_and_relion5_centred_angstrom(
    solution_csv, tiny_project, tmp_path
):
    import starfile

    out = tmp_path / "particles.star"
    result = run_cli("export", solution_csv, "--to", "star", "--copick", tiny_project, "--out", out)
    assert result.exit_code == 0, result.output
    star = starfile.read(out)
    optics, particles = star["optics"], star["particles"]
    truth = pd.read_csv(solution_csv)
    assert len(particles) == len(truth)
    assert list(particles["rlnTomoName"].astype(str)) == list(truth["experiment"])
    pixel = particles["rlnOpticsGroup"].map(optics.set_index("rlnOpticsGroup")["rlnImagePixelSize"]).to_numpy()
    expected = np.array([zarr_spacing(tiny_project, r) for r in truth["experiment"]])
    np.testing.assert_allclose(pixel, expected, rtol=1e-6)
    xyz = particles[["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]].to_numpy() * pixel[:, None]
    np.testing.assert_allclose(xyz, truth[["x", "y", "z"]].to_numpy(), atol=0.001 * expected.max())
    # RELION 5's own: Angstrom from the tomogram's centre, which is size / 2 pixels (particle_set.cpp)
    centred = particles[[f"rlnCenteredCoordinate{a}Angst" for a in "XYZ"]].to_numpy()
    centre = np.array([zarr_size_xyz(tiny_project, r) for r in truth["experiment"]]) / 2 * expected[:, None]
    np.testing.assert_allclose(centred + centre, truth[["x", "y", "z"]].to_numpy(), atol=0.001)
    assert (np.abs(centred) < centre + 1e-6).all()  # inside the tomogram, both signs about its centre
    labels = {c.name: c.label for c in CZII_CLASSES}
    assert list(particles["rlnClassName"]) == list(truth["particle_type"])
    assert list(particles["rlnClassNumber"]) == [labels[t] for t in truth["particle_type"]]


def test_star_without_tomogram_sizes_has_pixels_only_and_says_so(solution_csv, tmp_path):
    import starfile

    out = tmp_path / "particles.star"
    result = run_cli("export", solution_csv, "--to", "star", "--voxel-spacing", 10.0, "--out", out)
    assert result.exit_code == 0, result.output
    assert "--copick" in result.output
    particles = starfile.read(out)["particles"]
    assert not [c for c in particles.columns if c.startswith("rlnCentered")]
    truth = pd.read_csv(solution_csv)
    np.testing.assert_allclose(particles["rlnCoordinateX"] * 10.0, truth["x"], atol=0.001)
    assert particles.groupby("rlnClassName").size().to_dict() == truth.groupby("particle_type").size().to_dict()


def test_tbl_reads_back_with_dynamotable_one_based_with_table_and_class_maps(solution_csv, tmp_path):
    import dynamotable

    out = tmp_path / "picks.tbl"
    result = run_cli("export", solution_csv, "--to", "tbl", "--voxel-spacing", 7.84, "--out", out)
    assert result.exit_code == 0, result.output
    table = dynamotable.read(str(out), str(out.with_suffix(".doc")))
    truth = pd.read_csv(solution_csv)
    assert len(table) == len(truth)
    np.testing.assert_allclose(table["apix"], 7.84)
    xyz = (table[["x", "y", "z"]].to_numpy() - 1.0) * 7.84  # Dynamo counts pixels from 1
    np.testing.assert_allclose(xyz, truth[["x", "y", "z"]].to_numpy(), atol=0.01)
    assert list(table["tomo_file"].astype(str)) == list(truth["experiment"])
    assert table["tomo"].min() == 1
    class_map = pd.read_csv(out.with_suffix(".classes.csv"))
    assert list(class_map.columns) == ["class", "particle_type"]
    assert sorted(class_map["particle_type"]) == sorted(set(truth["particle_type"]))  # only the classes present
    names = table["class"].astype(int).map(class_map.set_index("class")["particle_type"])
    assert list(names) == list(truth["particle_type"])


def test_napari_folder_has_one_layer_file_per_run_and_class_in_zyx_pixels(solution_csv, tmp_path):
    out = tmp_path / "points.napari"
    result = run_cli("export", solution_csv, "--to", "napari", "--voxel-spacing", 10.0, "--out", out)
    assert result.exit_code == 0, result.output
    truth = pd.read_csv(solution_csv)
    files = sorted(out.glob("*/*.csv"))
    expected = truth.groupby(["experiment", "particle_type"]).size()
    assert [(f.parent.name, f.stem) for f in files] == list(expected.index)  # one file (napari layer) each
    for path in files:
        frame = pd.read_csv(path)
        # napari's built-in points reader: "index" first (skipped), coordinates in "axis-<i>" (data order), the
        # rest are point features; it makes one layer per file, named after the file.
        assert list(frame.columns) == [*NAPARI_COLUMNS, "experiment", "particle_type"]
        assert list(frame["index"]) == list(range(len(frame)))
        assert set(frame["particle_type"]) == {path.stem} and set(frame["experiment"]) == {path.parent.name}
        want = truth[(truth["experiment"] == path.parent.name) & (truth["particle_type"] == path.stem)]
        assert len(frame) == expected[(path.parent.name, path.stem)]
        zyx = frame[["axis-0", "axis-1", "axis-2"]].to_numpy()
        np.testing.assert_allclose(zyx[:, ::-1] * 10.0, want[["x", "y", "z"]].to_numpy(), atol=0.01)
    again = run_cli("export", solution_csv, "--to", "napari", "--voxel-spacing", 20.0, "--out", out)
    assert again.exit_code == 0, again.output  # a folder this program made is replaced
    assert sorted(out.glob("*/*.csv")) == files


def test_napari_refuses_to_replace_a_folder_it_did_not_make(solution_csv, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    result = run_cli("export", solution_csv, "--to", "napari", "--voxel-spacing", 10.0, "--out", out)
    assert isinstance(result.exception, UserError)
    assert (out / "notes.txt").read_text() == "keep me" and not list(out.glob("*/*.csv"))
    forced = run_cli("export", solution_csv, "--to", "napari", "--voxel-spacing", 10.0, "--out", out, "--force")
    assert forced.exit_code == 0, forced.output
    assert list(out.glob("*/*.csv")) and not (out / "notes.txt").exists()


def test_chimerax_markers_in_angstrom_with_class_radius(solution_csv, tmp_path):
    out = tmp_path / "markers.cmm"
    result = run_cli("export", solution_csv, "--to", "chimerax", "--voxel-spacing", 10.0, "--out", out)
    assert result.exit_code == 0, result.output
    root = ET.parse(out).getroot()
    assert root.tag == "marker_sets"
    truth = pd.read_csv(solution_csv)
    classes = by_name(CZII_CLASSES)
    seen = []
    for marker_set in root.findall("marker_set"):
        run, name = marker_set.get("name").split(" ")
        for m in marker_set.findall("marker"):
            assert float(m.get("radius")) == classes[name].radius
            colour = tuple(float(m.get(k)) for k in "rgb")
            np.testing.assert_allclose(colour, display_colors(CZII_CLASSES)[name], atol=0.001)  # show's palette
            seen.append((run, name, float(m.get("x")), float(m.get("y")), float(m.get("z"))))
    got = pd.DataFrame(seen, columns=["experiment", "particle_type", "x", "y", "z"])
    key = ["experiment", "particle_type", "x", "y", "z"]
    want = truth[key].sort_values(key).reset_index(drop=True)
    got = got.sort_values(key).reset_index(drop=True)
    assert list(got["particle_type"]) == list(want["particle_type"])
    np.testing.assert_allclose(got[["x", "y", "z"]], want[["x", "y", "z"]], atol=0.01)


def test_copick_json_states_its_own_pixel_size(tiny_project, tmp_path):
    import starfile

    picks = sorted((tiny_project / "overlay" / "ExperimentRuns").glob("*/Picks/ribosome.json"))[0]
    payload = json.loads(picks.read_text())
    out = tmp_path / "ribosome.star"
    result = run_cli("export", picks, "--to", "star", "--out", out)
    assert result.exit_code == 0, result.output
    star = starfile.read(out)
    assert star["optics"]["rlnImagePixelSize"].tolist() == pytest.approx([payload["voxel_spacing"]])
    x = [p["location"]["x"] + p["transformation_"][0][3] for p in payload["points"]]
    np.testing.assert_allclose(star["particles"]["rlnCoordinateX"] * payload["voxel_spacing"], x, atol=0.02)


def test_csv_without_pixel_size_is_refused_in_one_sentence(solution_csv, tmp_path):
    result = run_cli("export", solution_csv, "--to", "star", "--out", tmp_path / "x.star")
    assert result.exit_code != 0
    assert isinstance(result.exception, UserError)
    assert "--voxel-spacing" in str(result.exception)
    assert not (tmp_path / "x.star").exists()
    with pytest.raises(UserError, match="0 is not a plausible cryo-ET voxel spacing"):
        points_with_spacing(read_picks([solution_csv]), voxel_spacing=0.0)
    bad = run_cli("export", solution_csv, "--to", "pdb", "--voxel-spacing", 10)
    assert isinstance(bad.exception, UserError) and "pdb" in str(bad.exception)


def test_predict_reads_each_runs_tomogram_size_and_pixel_size_from_metadata(tiny_project):
    from src.__main__ import _run_volumes

    project = CopickProject(tiny_project)
    runs = project.run_names()
    volumes = _run_volumes(project, runs, None, trained=10.0)
    for run in runs:
        assert volumes[run].voxel_spacing == pytest.approx(zarr_spacing(tiny_project, run))
        assert volumes[run].shape[::-1] == tuple(zarr_size_xyz(tiny_project, run))
