"""Shared fixtures: tiny synthetic copick projects made by the project's own generator."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import NoReturn

import pytest

from src.classes import CZII_CLASSES
from src.data.synth import synthesize_project
from src.params import load_params

REPO = Path(__file__).resolve().parents[1]
TINY_SHAPE = (32, 64, 64)
# The tests' tiny world is at the CZII data's own spacing (folder VoxelSpacing10.000), whatever the demo bins to: its
# particles are as many voxels across as in the real data, and tests read the same paths on every profile.
TINY_SPACING = 10.012444
TINY_FOLDER = 10.0


@pytest.fixture(scope="session")
def repo_params():
    """params.yaml as committed (the demo profile)."""
    return load_params(REPO / "params.yaml")


@pytest.fixture(scope="session")
def params(repo_params):
    """params.yaml in the tests' tiny world: its voxel spacing (see TINY_SPACING)."""
    return dataclasses.replace(
        repo_params,
        data=dataclasses.replace(repo_params.data, voxel_spacing=TINY_FOLDER),
        synth=dataclasses.replace(repo_params.synth, voxel_spacing=TINY_SPACING),
    )


def make_project(
    out: Path, params, runs: int = 2, seed: int = 0, picks_naming: str = "competition", workers: int = 1, **imaging
):
    """A TINY_SHAPE project of params.yaml's synthetic settings with a few of them changed; `imaging` overrides
    fields of `synth.imaging` (e.g. snr=float("inf") for no noise)."""
    s = params.synth
    settings = dataclasses.replace(
        s,
        runs=runs,
        shape=TINY_SHAPE,
        seed=seed,
        picks_naming=picks_naming,
        # A 32 x 64 x 64 volume holds one of each class without the label spheres of crowded neighbours merging.
        placement=dataclasses.replace(s.placement, min_per_class=1),
        imaging=dataclasses.replace(s.imaging, **imaging),
    )
    return synthesize_project(out, settings, CZII_CLASSES, params.data.voxel_spacing, progress=False, workers=workers)


@pytest.fixture(scope="session")
def tiny_project(tmp_path_factory, params) -> Path:
    """Two 32 x 64 x 64 runs in the competition's layout."""
    out = tmp_path_factory.mktemp("synth") / "project"
    make_project(out, params)
    return out


def unavailable(reason: str) -> NoReturn:
    """A service or tool a test needs is missing: skip, saying why; under CI=true fail instead (.ci/run starts every
    service, so a skip there would hide a scale-out that never ran)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: a test may not skip for want of a service)", pytrace=False)
    pytest.skip(reason)
