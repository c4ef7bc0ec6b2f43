"""Exports of picks: each format written by `python -m src export` and read back with the format's own library."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest
import zarr

from src.classes import CZII_CLASSES, by_name
from src.data.copick_io import CopickProject
from src.errors import UserError
from src.exports import points_with_spacing, read_picks
from tests.conftest import REPO


def run_cli(*args):
    from typer.testing import CliRunner

    from src.__main__ import app

    return CliRunner().invoke(app, [str(a) for a in args])


def zarr_spacing(project_dir, run) -> float:
    """A run's voxel spacing read straight from its zarr's OME-NGFF metadata (not through the project's reader)."""
    group = zarr.open(str(project_dir / "static" / "ExperimentRuns" / run / "VoxelSpacing10.000" / "denoised.zarr"))
    return float(group.attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"][-1])


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


def test_star_reads_back_with_starfile_in_tomogram_pixels(solution_csv, tiny_project, tmp_path):
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
    labels = {c.name: c.label for c in CZII_CLASSES}
    assert list(particles["rlnClassNumber"]) == [labels[t] for t in truth["particle_type"]]


def test_tbl_reads_back_with_dynamotable_one_based_with_table_map(solution_csv, tmp_path):
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


def test_napari_csv_has_its_reader_columns_in_zyx_pixels(solution_csv, tmp_path):
    out = tmp_path / "points.csv"
    result = run_cli("export", solution_csv, "--to", "napari", "--voxel-spacing", 10.0, "--out", out)
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out)
    # napari's built-in points reader: an "index" column, coordinates in "axis-<i>" (data order), the rest features.
    assert list(frame.columns[:4]) == ["index", "axis-0", "axis-1", "axis-2"]
    truth = pd.read_csv(solution_csv)
    np.testing.assert_allclose(
        frame[["axis-2", "axis-1", "axis-0"]].to_numpy() * 10.0, truth[["x", "y", "z"]], atol=0.01
    )
    assert list(frame["particle_type"]) == list(truth["particle_type"])


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
