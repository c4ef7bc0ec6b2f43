"""`dvc repro split` on a fresh copy of the repository builds the data and the splits from nothing."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO


def _fresh_copy(dest: Path) -> Path:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for rel in listed:
        if (REPO / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dest / rel)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    return dest


@pytest.mark.skipif(shutil.which("dvc") is None, reason="dvc not installed")
def test_dvc_repro_split_from_nothing(tmp_path):
    repo = _fresh_copy(tmp_path / "repo")
    assert not (repo / "data").exists()
    # A smaller synthetic project keeps the test quick; the stage code path is the default one.
    raw = yaml.safe_load((repo / "params.yaml").read_text())
    raw["synth"]["shape"] = [32, 64, 64]
    (repo / "params.yaml").write_text(yaml.safe_dump(raw))
    result = subprocess.run(["dvc", "repro", "split"], cwd=repo, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    split = json.loads((repo / "data/splits.json").read_text())
    manifest = json.loads((repo / "data/project/manifest.json").read_text())
    assert len(manifest["runs"]) == raw["synth"]["runs"]
    assert sorted(split["test"] + [r for s in split["samples"].values() for p in s.values() for r in p]) == sorted(
        manifest["runs"]
    )
    lock = (repo / "dvc.lock").read_text()
    assert "data/project" in lock and "data/splits.json" in lock
    # Unchanged params and code: nothing re-runs.
    again = subprocess.run(["dvc", "repro", "split"], cwd=repo, capture_output=True, text=True)
    assert "didn't change, skipping" in again.stdout
