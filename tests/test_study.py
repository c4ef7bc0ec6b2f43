"""The study registry: one vocabulary for the DVC grid, the cells, the report, with clear errors."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess

import pytest
import yaml

from src.errors import UserError
from src.params import parse_params
from src.study import Study, size_label
from tests.conftest import REPO


@pytest.fixture
def study(params) -> Study:
    return Study.from_params(params)


def test_grid_is_every_combination_of_the_keys_in_table_order(study):
    cells = study.cells()
    assert len(cells) == len(study.models) * len(study.channels) * len(study.patches) * len(study.samples)
    assert len({c.name for c in cells}) == len(cells)
    assert [c.name for c in cells[:2]] == [
        f"{study.baseline}-{study.channel_keys[0]}-{study.patch_keys[0]}-{study.samples[0]}",
        f"{study.baseline}-{study.channel_keys[0]}-{study.patch_keys[1]}-{study.samples[0]}",
    ]
    for cell in cells:
        assert study.parse(cell.name) == cell
    assert study.baseline not in study.variants and set(study.variants) | {study.baseline} == set(study.models)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("unet_se-c16-p128", "model-channels-patch-sample"),
        ("unet_transformer-c16-p128-s1", "not one of the study's models"),
        ("unet-c64-p128-s1", "not one of the study's channels"),
        ("unet-c16-p256-s1", "not one of the study's patches"),
        ("unet-c16-p128-s3", "not one of the study's samples"),
    ],
)
def test_bad_cell_names_get_one_sentence(study, name, message):
    with pytest.raises(UserError, match=message):
        study.parse(name)


def test_trained_patch_scales_the_papers_and_refuses_sizes_the_network_cannot_take(study, params):
    assert study.trained_patch("p96", params.train.patch_scale, 8) == tuple(
        int(s * f) for s, f in zip(study.patches["p96"], params.train.patch_scale, strict=True)
    )
    assert study.trained_patch("p128", (1.0, 1.0, 1.0), 8) == study.patches["p128"]
    with pytest.raises(UserError, match="multiple of 8"):
        study.trained_patch("p96", (0.3, 0.5, 0.5), 8)


def test_bad_vocabulary_is_refused(params):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    bad_key = dict(raw["study"]["models"]["unet"])
    for change, message in [
        ({"baseline": "resnet"}, "study.baseline 'resnet'"),
        ({"models": {"u-net": bad_key}}, "lower-case letters"),
        ({"samples": ["a"]}, "s<number>"),
    ]:
        with pytest.raises(UserError, match=message):
            Study.from_params(dataclasses.replace(params.study, **{k: v for k, v in change.items()}))
    assert parse_params(raw).study == params.study


def test_size_labels_are_the_papers():
    assert size_label((32, 64, 64)) == "32x64x64" and size_label((16, 32, 64, 128), "-") == "16-32-64-128"


@pytest.mark.skipif(shutil.which("dvc") is None, reason="dvc not installed")
def test_dvc_grid_is_the_study_grid(study):
    listed = subprocess.run(["dvc", "stage", "list", "--name-only"], cwd=REPO, capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    stages = [s for s in listed.stdout.split() if s.startswith("train@")]
    assert sorted(stages) == sorted(f"train@{c.name}" for c in study.cells())
