"""Reading real-layout projects and single tomograms, and the clear errors on bad input."""

import json
import shutil
import subprocess
import sys

import mrcfile
import numpy as np
import pandas as pd
import pytest

from src.data.copick_io import (
    CopickProject,
    read_tomogram_file,
    write_picks_json,
    write_zarr_tomogram,
)
from src.errors import DataError
from tests.conftest import REPO

RUN = "TS_SYN_000"
TOMO = f"static/ExperimentRuns/{RUN}/VoxelSpacing10.000/denoised.zarr"
PICKS = f"overlay/ExperimentRuns/{RUN}/Picks"


@pytest.fixture
def project(tmp_path, tiny_project):
    copy = tmp_path / "project"
    shutil.copytree(tiny_project, copy)
    return copy


def _read(project_dir, with_tomogram=True):
    proj = CopickProject(project_dir / "copick_config.json")
    tomo = proj.tomogram(RUN, "denoised", 10.0) if with_tomogram else None
    return proj.picks(RUN, tomo)


def test_competition_and_copick_naming_read_the_same(project):
    before = _read(project)
    for f in (project / PICKS).glob("*.json"):
        f.rename(f.with_name(f"curation_0_{f.name}"))
    after = _read(project)
    pd.testing.assert_frame_equal(before, after)


def test_picks_user_filter(project):
    src = project / PICKS / "ribosome.json"
    shutil.copy(src, project / PICKS / "someone_1_ribosome.json")
    all_users = CopickProject(project / "copick_config.json").picks(RUN)
    only_curation = CopickProject(project / "copick_config.json", picks_user="curation").picks(RUN)
    n_ribo = (only_curation.particle_type == "ribosome").sum()
    assert (all_users.particle_type == "ribosome").sum() == 2 * n_ribo  # competition file + someone's copy
    assert len(only_curation) == len(all_users) - n_ribo


def test_missing_zarr(project):
    shutil.rmtree(project / TOMO)
    with pytest.raises(DataError, match="no 'denoised' tomogram.*available: \\['wbp.zarr'\\]"):
        _read(project)


def test_corrupt_zarr(project):
    (project / TOMO / "0" / ".zarray").write_text("{not json")
    with pytest.raises(DataError, match="cannot read the zarr tomogram"):
        _read(project)


def test_truncated_chunk_is_refused_before_decompression(project):
    """Blosc decompresses a truncated chunk past its end (a segfault about one time in three): refused first."""
    chunk = project / TOMO / "0" / "0" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[: chunk.stat().st_size // 2])
    with pytest.raises(DataError, match=r"0/0/0/0: chunk file truncated \(\d+ bytes, its Blosc header says \d+\)"):
        _read(project)
    chunk.write_bytes(b"abc")
    with pytest.raises(DataError, match="shorter than a Blosc header"):
        _read(project)


def test_missing_chunk_is_refused_not_read_as_zeros(project):
    (project / TOMO / "0" / "0" / "0" / "0").unlink()
    with pytest.raises(DataError, match="0/0/0/0: chunk file missing"):
        _read(project)


def test_missing_multiscales_spacing_is_an_error_unless_given(project):
    """Without .zattrs the folder's 10.000 A was used silently; the true spacing is 10.012 A."""
    (project / TOMO / ".zattrs").unlink()
    with pytest.raises(DataError, match="no voxel spacing in the zarr metadata.*'multiscales'"):
        _read(project)
    with pytest.raises(DataError, match="'multiscales'.*--voxel-spacing"):
        read_tomogram_file(project / TOMO)
    assert read_tomogram_file(project / TOMO, voxel_spacing=10.012444).voxel_spacing == 10.012444


def test_picks_file_not_json(project):
    (project / PICKS / "ribosome.json").write_text("<xml/>")
    with pytest.raises(DataError, match="ribosome.json: not a readable JSON picks file"):
        _read(project)


def test_points_outside_volume(project):
    write_picks_json(project / PICKS / "ribosome.json", "ribosome", RUN, np.array([[100.0, 100.0, 9000.0]]), 10.0)
    with pytest.raises(DataError, match="1 picks lie outside"):
        _read(project)


def test_unknown_class(project):
    write_picks_json(project / PICKS / "mystery.json", "mystery", RUN, np.array([[100.0, 100.0, 100.0]]), 10.0)
    with pytest.raises(DataError, match="unknown class 'mystery'"):
        _read(project, with_tomogram=False)


def test_spacing_disagrees_with_folder(project):
    write_zarr_tomogram(project / TOMO, np.zeros((32, 64, 64), np.float32), voxel_spacing=20.0)
    with pytest.raises(DataError, match="voxel spacing 20 A in the metadata disagrees with the expected 10 A"):
        _read(project)


def test_volume_of_nans(project):
    write_zarr_tomogram(project / TOMO, np.full((32, 64, 64), np.nan, np.float32), voxel_spacing=10.012444)
    with pytest.raises(DataError, match="131072 voxels are NaN"):
        _read(project)


def test_single_mrc_and_zarr_tomograms(tmp_path):
    volume = np.random.default_rng(0).normal(size=(8, 12, 16)).astype(np.float32)
    with mrcfile.new(tmp_path / "t.mrc") as mrc:
        mrc.set_data(volume)
        mrc.voxel_size = 13.48
    tomo = read_tomogram_file(tmp_path / "t.mrc")
    np.testing.assert_array_equal(tomo.data, volume)
    assert tomo.voxel_spacing == pytest.approx(13.48, abs=1e-3)
    write_zarr_tomogram(tmp_path / "t.zarr", volume, 13.48)
    tomo = read_tomogram_file(tmp_path / "t.zarr")
    np.testing.assert_array_equal(tomo.data, volume)
    assert tomo.voxel_spacing == 13.48
    with pytest.raises(DataError, match="unknown tomogram format"):
        read_tomogram_file(tmp_path / "t.tif")


def test_project_config_roots_relative_to_config(project, tmp_path):
    config = json.loads((project / "copick_config.json").read_text())
    assert config["static_root"] == "local://static"
    moved = tmp_path / "elsewhere"
    shutil.move(project, moved)
    assert len(_read(moved)) > 0


def test_competition_folder_without_a_config_reads_like_a_project(project, tmp_path, params):
    """Kaggle shipped train/ as overlay/ + static/ with no copick config: it reads as is; the data stage links it."""
    import dataclasses

    from src.data.prepare import open_project, prepare_data

    expected = _read(project)
    (project / "copick_config.json").unlink()
    folder = CopickProject(project)
    assert [c.name for c in folder.classes] == [c.name for c in CopickProject(project).classes]
    pd.testing.assert_frame_equal(folder.picks(RUN, folder.tomogram(RUN, "denoised", 10.0)), expected)

    data = dataclasses.replace(params.data, source="copick", copick_config=str(project), out=str(tmp_path / "linked"))
    linked = dataclasses.replace(params, data=data)
    manifest = prepare_data(linked, progress=False)
    assert RUN in manifest["runs"]
    pd.testing.assert_frame_equal(open_project(linked).picks(RUN), folder.picks(RUN))
    with pytest.raises(DataError, match="neither a copick config nor a folder"):
        CopickProject(tmp_path)


def test_cli_bad_input_is_one_sentence_not_a_traceback(project):
    (project / PICKS / "ribosome.json").write_text("{")
    result = subprocess.run(
        [sys.executable, "-m", "src", "show", str(project), "--run", RUN, "--out", str(project / "x.png")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("error: ") and "ribosome.json" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (project / "x.png").exists()


def test_predicted_picks_are_never_read_as_ground_truth(project):
    before = _read(project)
    src = project / PICKS / "ribosome.json"
    shutil.copy(src, project / PICKS / "predict_0_ribosome.json")
    pd.testing.assert_frame_equal(_read(project), before)
    with_predictions = CopickProject(project / "copick_config.json", picks_user="predict").picks(RUN)
    n = (before.particle_type == "ribosome").sum()
    assert (with_predictions.particle_type == "ribosome").sum() == 2 * n  # asked for by name, they are read


def test_a_tomogram_spacing_must_be_plausible_and_may_be_given_for_an_mrc_without_one(tmp_path):
    volume = np.random.default_rng(0).normal(size=(8, 12, 16)).astype(np.float32)
    with mrcfile.new(tmp_path / "t.mrc") as mrc:
        mrc.set_data(volume)  # no voxel size in the header (0)
    with pytest.raises(DataError, match="gives no voxel size; give it with --voxel-spacing"):
        read_tomogram_file(tmp_path / "t.mrc")
    assert read_tomogram_file(tmp_path / "t.mrc", voxel_spacing=7.84).voxel_spacing == 7.84
    write_zarr_tomogram(tmp_path / "nm.zarr", volume, 1.348)  # in nm: 10 x too small, still plausible
    assert read_tomogram_file(tmp_path / "nm.zarr").voxel_spacing == 1.348
    for bad in (0.0134, -13.48, 13480.0):
        write_zarr_tomogram(tmp_path / "odd.zarr", volume, bad)
        with pytest.raises(DataError, match=f"odd.zarr: spacing {bad:g} is not a plausible cryo-ET voxel spacing"):
            read_tomogram_file(tmp_path / "odd.zarr")
