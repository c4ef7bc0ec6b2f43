"""copick itself opens the projects we write, from any folder (issue 25, item 3)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import copick
import pytest
import zarr
from copick.util.ome import get_voxel_size_from_zarr

from src.classes import CZII_CLASSES
from tests.conftest import REPO


def _cli(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "src", *args], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def _digest(folder) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """One small run from `synth` at params.yaml's spacing (20.024888 A in folder VoxelSpacing20.000)."""
    out = tmp_path_factory.mktemp("copick") / "project"
    _cli("synth", "--out", str(out), "--runs", "1", "--shape", "32,64,64")
    return out


def test_copick_config_opens_from_another_folder(project, tmp_path, monkeypatch):
    before = _digest(project)
    said = _cli("copick-config", str(project))
    written = project.with_name("project.copick.json")
    assert f"wrote {written}" in said and "reads 1 runs" in said
    assert _digest(project) == before  # nothing inside the project (a DVC output) changes
    assert json.loads(written.read_text())["overlay_root"] == f"local://{project.resolve()}/overlay"

    monkeypatch.chdir(tmp_path)  # neither the repository nor the project
    root = copick.from_file(str(written))
    (run,) = root.runs
    assert run.name == "TS_SYN_000"
    picks = {p.pickable_object_name: p for p in run.picks}
    assert sorted(picks) == sorted(c.name for c in CZII_CLASSES)
    assert all(p.user_id == "curation" and len(p.points) >= 1 for p in picks.values())
    (spacing,) = run.voxel_spacings
    assert sorted(t.tomo_type for t in spacing.tomograms) == ["denoised", "wbp"]
    tomogram = spacing.get_tomograms("denoised")[0]
    assert tomogram.numpy().shape == (32, 64, 64)
    # copick's spacing is the folder's name; the true one is in the zarr metadata, which copick reads too.
    assert spacing.voxel_size == 20.0
    assert get_voxel_size_from_zarr(zarr.open_group(tomogram.zarr(), mode="r")) == pytest.approx(20.024888)


def test_the_projects_own_config_is_relative(project, tmp_path, monkeypatch):
    """Why the command exists: the committed layout's relative roots open only from the project's folder."""
    config = project / "copick_config.json"
    assert json.loads(config.read_text())["static_root"] == "local://static"
    monkeypatch.chdir(tmp_path)
    assert copick.from_file(str(config)).runs == []
    monkeypatch.chdir(project)
    assert [r.name for r in copick.from_file(str(config)).runs] == ["TS_SYN_000"]


def test_copick_config_of_no_project_is_one_sentence(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "src", "copick-config", str(tmp_path / "none")], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr
