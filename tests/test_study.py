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
    cells = [c for c in study.cells() if not c.replicate]
    assert len({c.run_name for c in study.cells()}) == len(study.cells())
    assert len(cells) == len(study.models) * len(study.channels) * len(study.patches) * len(study.samples) * len(
        study.seeds
    )
    first = f"{study.baseline}-{study.channel_keys[0]}-{study.patch_keys[0]}-{study.samples[0]}"
    assert cells[0].name == first and cells[0].run_name == f"{first}-r{study.seeds[0]}"
    for cell in cells:
        assert study.parse(cell.run_name) == cell
    assert study.baseline not in study.variants and set(study.variants) | {study.baseline} == set(study.models)


def test_the_replicate_block_adds_seeds_to_its_configurations_only(study, params):
    block = params.train.replicates
    extra = [c for c in study.cells() if c.replicate]
    assert len(extra) == len(study.models) * len(block.channels) * len(block.patches) * len(block.samples) * len(
        block.seeds
    )
    for cell in extra:
        assert cell.seed in block.seeds and cell.stage.startswith("replicate@") and study.parse(cell.run_name).replicate
    outside = next(c for c in study.cells() if not c.replicate and c.channels not in block.channels)
    with pytest.raises(UserError, match="not one of train.seeds"):
        study.parse(f"{outside.name}-r{block.seeds[0]}")
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert (
        dvc["replicate"]["do"]["cmd"] == dvc["train"]["do"]["cmd"]
        and dvc["replicate"]["do"]["deps"] == dvc["train"]["do"]["deps"]
    )


def test_the_rerun_block_trains_runs_of_the_study_again_with_other_threads(study, params):
    block = params.train.reruns
    again = study.rerun_cells()
    assert len(again) == len(study.models) * len(block.channels) * len(block.patches) * len(block.samples) * len(
        block.seeds
    )
    grid = study.cells()
    for cell in again:
        assert cell.rerun_threads == block.threads != params.repro.cpu_threads
        assert dataclasses.replace(cell, rerun_threads=0) in grid and cell not in grid
        assert cell.stage.startswith("rerun@") and cell.mlflow_name == f"{cell.run_name}-t{block.threads}"
        assert study.rerun_of(study.parse(cell.run_name)) == cell
    outside = next(c for c in grid if c.channels not in block.channels)
    with pytest.raises(UserError, match="not in the rerun block"):
        study.rerun_of(outside)
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert dvc["rerun"]["do"]["cmd"] == dvc["train"]["do"]["cmd"].replace(" train ", " train --rerun ", 1)
    assert dvc["rerun"]["do"]["deps"] == dvc["train"]["do"]["deps"]
    assert set(dvc["train"]["do"]["params"]) < set(dvc["rerun"]["do"]["params"])


@pytest.mark.parametrize(
    ("reruns", "message"),
    [
        ({"threads": 2}, "must differ from repro.cpu_threads"),
        ({"seeds": [0, 7]}, "must be seeds the study trains at those keys"),
        ({"channels": ["c16", "c32"]}, "must be seeds the study trains"),  # seeds 1, 2 exist at c16-p64 only
        ({"patches": ["p999"]}, "train.reruns.patches"),
        ({"seeds": [0, 0]}, "must be distinct"),
    ],
)
def test_a_rerun_block_of_runs_the_study_lacks_is_refused(reruns, message):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["train"]["reruns"] |= reruns
    with pytest.raises(UserError, match=message):
        parse_params(raw)
    raw["train"]["reruns"]["seeds"] = []  # no block: nothing to check
    parse_params(raw | {"repro": raw["repro"] | {"cpu_threads": raw["train"]["reruns"]["threads"]}})


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("unet_se-c16-p128", "model-channels-patch-sample"),
        ("unet_transformer-c16-p128-s1", "not one of the study's models"),
        ("unet-c64-p128-s1", "not one of the study's channels"),
        ("unet-c16-p256-s1", "not one of the study's patches"),
        ("unet-c16-p128-s3", "not one of the study's samples"),
        ("unet-c16-p128-s1-r7", "not one of train.seeds"),
        ("unet-c16-p128-s1-7", "model-channels-patch-sample"),
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


def test_bad_vocabulary_is_refused_where_params_are_read(params):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    bad_key = dict(raw["study"]["models"]["unet"])
    for change, message in [
        ({"baseline": "resnet"}, r"study.baseline = resnet \(must be one of study.models: unet, "),
        ({"models": {"u-net": bad_key}, "baseline": "u-net"}, "study.models key 'u-net' .*lower-case letters"),
        ({"samples": ["a"]}, "study.samples entry 'a' .*s<number>"),
    ]:
        with pytest.raises(UserError, match=message):
            parse_params(raw | {"study": raw["study"] | change})
    assert parse_params(raw).study == params.study


def test_size_labels_are_the_papers():
    assert size_label((32, 64, 64)) == "32x64x64" and size_label((16, 32, 64, 128), "-") == "16-32-64-128"


@pytest.mark.skipif(shutil.which("dvc") is None, reason="dvc not installed")
def test_dvc_grid_is_the_study_grid(study):
    listed = subprocess.run(["dvc", "stage", "list", "--name-only"], cwd=REPO, capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    stages = [s for s in listed.stdout.split() if s.startswith(("train@", "replicate@"))]
    assert sorted(stages) == sorted(c.stage for c in study.cells())


def test_seeds_are_a_grid_axis_of_replicates(params):
    study = Study.from_params(dataclasses.replace(params, train=dataclasses.replace(params.train, seeds=(0, 5))))
    cells = [c for c in study.cells() if not c.replicate]
    assert len(cells) == 2 * len([c for c in Study.from_params(params).cells() if not c.replicate])
    assert cells[0].name == cells[1].name and (cells[0].seed, cells[1].seed) == (0, 5)
    assert study.parse(cells[1].run_name) == cells[1] and cells[1].run_name.endswith("-r5")
    assert study.parse(cells[1].name).seed == 0  # without -r<seed>: the first seed
