"""Inference: checkpoints, slab-wise sliding-window prediction, points, threshold tuning and the predict command."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from src.classes import CZII_CLASSES, by_name
from src.data.copick_io import CopickProject
from src.data.masks import label_mask, paint_spheres
from src.errors import DataError, UserError
from src.inference.checkpoint import load_checkpoint, save_checkpoint, update_postprocess
from src.inference.plan import PostprocessPlan
from src.inference.points import PROB_SCALE, blob_size_bounds, maps_to_points
from src.inference.predict import (
    SUBMISSION_COLUMNS,
    ClassMaps,
    plan_slabs,
    predict_runs,
    predict_tomogram,
    predict_volume,
    write_submission,
)
from src.inference.thresholds import threshold_grid, tune_extractor
from src.metric import fbeta_score
from src.params import load_params
from tests.conftest import REPO, TINY_SHAPE

SPACING = 10.012444
PATCH = (16, 32, 32)
CLASSES = CZII_CLASSES


def tiny_model(seed: int = 0):
    torch.manual_seed(seed)
    from src.models import build_model

    return build_model("none", (4, 8, 16, 32)).eval()


def save_tiny_checkpoint(path, **fields) -> None:
    """An untrained tiny model's checkpoint at the tests' spacing and patch, every threshold 0.3; `fields` add to or
    replace the checkpoint's own (e.g. extra=...)."""
    meta = dict(model_name="unet", classes=CLASSES, voxel_spacing=SPACING, patch_size=PATCH)
    save_checkpoint(path, tiny_model(), **meta, thresholds={c.name: 0.3 for c in CLASSES}, **fields)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_tiny_checkpoint(path, extra={"epochs": 1})
    return path


def predict_params(params, **changes):
    return dataclasses.replace(params.predict, **changes)


# --- checkpoint ------------------------------------------------------------------------------------------------


def test_checkpoint_round_trip(checkpoint, tmp_path):
    model = tiny_model()
    loaded, meta = load_checkpoint(checkpoint)
    x = torch.randn(1, 1, *PATCH)
    with torch.inference_mode():
        assert torch.equal(model(x), loaded(x))
    assert not loaded.training
    assert meta["model_name"] == "unet" and meta["model_config"] == model.config
    assert meta["classes"] == CLASSES and meta["patch_size"] == PATCH
    assert meta["voxel_spacing"] == SPACING and meta["normalization"] == "zscore per volume"
    assert meta["thresholds"] == {c.name: 0.3 for c in CLASSES} and meta["extra"] == {"epochs": 1}

    copy = tmp_path / "copy.pt"
    copy.write_bytes(checkpoint.read_bytes())
    plan = PostprocessPlan("peaks", {"peaks": {"ribosome": 0.7}}, 0.5, 0.1, 8.0, 0.5, "").to_dict()
    update_postprocess(copy, plan)
    assert load_checkpoint(copy)[1]["postprocess"] == plan
    assert load_checkpoint(copy)[1]["thresholds"] == meta["thresholds"]  # everything else kept

    bad = tmp_path / "bad.pt"
    bad.write_bytes(checkpoint.read_bytes()[:1000])
    with pytest.raises(DataError, match="not a readable checkpoint"):
        load_checkpoint(bad)
    with pytest.raises(DataError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


# --- sliding-window inference ---------------------------------------------------------------------------------


def test_slab_plan_covers_every_row():
    slabs = plan_slabs(184, 32, 0.25, 64)
    assert [s[2:] for s in slabs] == [(0, 64), (64, 128), (128, 184)]
    for a, b, c0, c1 in slabs:
        assert a <= c0 - 0 and b >= c1 and b - a >= 32
    assert plan_slabs(20, 32, 0.25, 8) == [(0, 20, 0, 20)]


def test_predict_volume_slabs_match_single_pass(params):
    rng = np.random.default_rng(0)
    volume = rng.normal(3.0, 2.0, size=(48, 40, 40)).astype(np.float32)
    model = tiny_model()
    slabbed = predict_volume(model, volume, PATCH, SPACING, predict_params(params, slab_depth=8), progress=False)
    whole = predict_volume(model, volume, PATCH, SPACING, predict_params(params, slab_depth=100), progress=False)
    assert slabbed.label.shape == volume.shape and slabbed.label.dtype == np.uint8
    assert slabbed.probs.shape == (len(CLASSES), *volume.shape) and slabbed.probs.dtype == np.uint8
    assert (slabbed.label == whole.label).mean() >= 0.999
    assert np.abs(slabbed.probs.astype(int) - whole.probs.astype(int)).max() <= 1  # one uint8 level of rounding
    # the argmax label's own probability is the largest of the classes' (where it is not background)
    fg = slabbed.label > 0
    own = np.take_along_axis(slabbed.probs, (slabbed.label.astype(int) - 1).clip(0)[None], axis=0)[0]
    assert (own[fg] >= slabbed.probs.max(axis=0)[fg]).all()

    flipped = predict_volume(model, volume, PATCH, SPACING, predict_params(params, tta_flips="zx"), progress=False)
    assert flipped.label.shape == volume.shape and not np.array_equal(flipped.probs, whole.probs)
    with pytest.raises(UserError, match="tta_flips"):
        predict_volume(model, volume, PATCH, SPACING, predict_params(params, tta_flips="q"), progress=False)


def test_spacing_mismatch_is_an_error(checkpoint, params):
    from src.data.copick_io import Tomogram

    model, meta = load_checkpoint(checkpoint)
    tomo = Tomogram(np.zeros((16, 32, 32), np.float32), 13.48, "x")
    with pytest.raises(UserError, match=r"13\.48 A .* 10\.0124"):
        predict_tomogram(model, meta, tomo, params.predict, progress=False)


def test_a_constant_tomogram_is_refused_not_picked(checkpoint, params):
    """Z-scored, a constant volume is all zeros, where the biases alone gave thousands of picks."""
    from src.data.copick_io import Tomogram

    model, meta = load_checkpoint(checkpoint)
    tomo = Tomogram(np.full((16, 32, 32), 3.5, np.float32), SPACING, "blank")
    with pytest.raises(DataError, match="tomogram 'blank' is constant \\(every voxel is 3.5\\)"):
        predict_tomogram(model, meta, tomo, params.predict, progress=False)


# --- points ---------------------------------------------------------------------------------------------------


def maps_of_labels(lab, prob=0.9, spacing=SPACING):
    """Maps whose argmax is `lab`; each class's own probability is `prob` on its voxels and 0 elsewhere."""
    probs = np.zeros((len(CLASSES), *lab.shape), np.uint8)
    for c in CLASSES:
        probs[c.label - 1][lab == c.label] = round(prob * PROB_SCALE)
    return ClassMaps(lab, probs, spacing)


def sphere_maps(shape, centres, radius, label, prob=0.9, spacing=SPACING):
    lab = np.zeros(shape, np.uint8)
    paint_spheres(lab, np.array(centres, float), radius, label)
    return maps_of_labels(lab, prob, spacing)


def plan_of(extractor="argmax", threshold=0.5, max_blob_fraction=8.0, **changes):
    thresholds = {extractor: {c.name: threshold for c in CLASSES}}
    fields = dict(label_radius_fraction=0.5, min_blob_fraction=0.1, max_blob_fraction=max_blob_fraction)
    fields.update(peak_radius_fraction=0.5, tta_flips="")
    return PostprocessPlan(extractor=extractor, thresholds=thresholds, **{**fields, **changes})


def bounds(spacing=SPACING, classes=CLASSES, params=None):
    return blob_size_bounds(classes, spacing, 0.5, 0.1, 8.0)


def test_known_blob_gives_its_centre_in_angstrom():
    ribo = by_name(CLASSES)["ribosome"]  # label sphere radius 0.5 * 150 / 10.01 = 7.5 voxels
    centre = (10.3, 20.6, 15.2)
    maps = sphere_maps((24, 40, 36), [centre], 7.5, ribo.label)
    plan = plan_of("argmax", 0.5)
    points = maps_to_points(maps, CLASSES, plan, "run")
    assert list(points.columns) == ["experiment", "particle_type", "x", "y", "z"]
    assert len(points) == 1 and points.particle_type[0] == "ribosome"
    expected = np.array(centre[::-1]) * SPACING
    got = points[["x", "y", "z"]].to_numpy()[0]
    assert np.all(np.abs(got - expected) < SPACING)
    # the spacing used is the maps' true spacing: a voxel centroid c maps to c * spacing
    lab = np.zeros((24, 40, 36), np.uint8)
    lab[5:16, 10:21, 20:31] = ribo.label  # a cube, centroid exactly (10, 15, 25)
    cube = maps_to_points(maps_of_labels(lab, 1.0), CLASSES, plan, "r")
    assert cube.x[0] == pytest.approx(25 * SPACING) and cube.y[0] == pytest.approx(15 * SPACING)
    assert cube.z[0] == pytest.approx(10 * SPACING)

    # too small, two blobs, below threshold
    small = sphere_maps((24, 40, 36), [centre], 1.0, ribo.label)
    assert maps_to_points(small, CLASSES, plan, "run").empty
    two = sphere_maps((24, 60, 36), [(11, 12, 15), (11, 45, 15)], 7.5, ribo.label)
    assert len(maps_to_points(two, CLASSES, plan, "run")) == 2
    weak = sphere_maps((24, 40, 36), [centre], 7.5, ribo.label, prob=0.4)
    assert maps_to_points(weak, CLASSES, plan, "run").empty


class BrightBlobDetector(torch.nn.Module):
    """A fixed 1x1x1 convolution: where the z-scored input is positive, the ribosome logit beats background's."""

    def __init__(self, label: int, n_out: int = len(CLASSES) + 1):
        super().__init__()
        self.conv = torch.nn.Conv3d(1, n_out, 1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.bias.fill_(-5.0)
            self.conv.bias[0] = 0.0
            self.conv.weight[label] = 5.0
            self.conv.bias[label] = 0.0

    def forward(self, x):
        return self.conv(x)


def test_a_known_blob_through_sliding_windows_slabs_and_score_lands_on_its_centre(tmp_path):
    """The whole inference path (z-score, slab-wise Gaussian sliding windows, argmax map, components, Angstrom) on a
    bright sphere, then the CSV through the `score` command: one ribosome found exactly, so the score is 1/7."""
    ribo = by_name(CLASSES)["ribosome"]
    centre = (19.4, 30.7, 26.2)  # z, y, x voxels: off the voxel grid and across a slab boundary (slab_depth 16)
    volume = np.zeros((40, 64, 64), np.float32)
    paint_spheres(volume, np.array([centre]), 7.5, 1)
    params = load_params(REPO / "params.yaml").predict
    slabs = dataclasses.replace(params, slab_depth=16)
    maps = predict_volume(BrightBlobDetector(ribo.label), volume, PATCH, SPACING, slabs, progress=False)
    assert maps.label.shape == volume.shape and maps.voxel_spacing == SPACING
    points = maps_to_points(maps, CLASSES, plan_of("argmax", 0.5), "TS_1")
    assert len(points) == 1 and points.particle_type[0] == "ribosome"
    offset = points[["x", "y", "z"]].to_numpy()[0] / SPACING - np.array(centre[::-1])
    assert np.all(np.abs(offset) < 1.0), offset  # within one voxel of the true centre on every axis

    write_submission(points, tmp_path / "submission.csv")
    xyz = np.array(centre[::-1]) * SPACING
    pd.DataFrame([{"experiment": "TS_1", "particle_type": "ribosome", "x": xyz[0], "y": xyz[1], "z": xyz[2]}]).to_csv(
        tmp_path / "solution.csv", index=False
    )
    result = run_cli("score", str(tmp_path / "solution.csv"), str(tmp_path / "submission.csv"), "--json")
    assert result.returncode == 0, result.stderr
    scored = json.loads(result.stdout)
    assert scored["classes"]["ribosome"]["tp"] == 1 and scored["classes"]["ribosome"]["fp"] == 0
    assert scored["score"] == pytest.approx(1 / 7)  # weight 1 of the sum of all weights, 7


def test_painted_picks_round_trip_through_the_metric(tiny_project, params, tmp_path):
    project = CopickProject(tiny_project / "copick_config.json")
    frames = []
    solution = []
    for run in project.run_names():
        tomo = project.tomogram(run, "denoised", params.data.voxel_spacing)
        picks = project.picks(run, tomo)
        solution.append(picks)
        lab = label_mask(tomo.data.shape, picks, project.classes, tomo.voxel_spacing, 0.5)
        maps = maps_of_labels(lab, 1.0, tomo.voxel_spacing)
        # neighbours of one class may touch and merge; do not drop them here
        frames.append(maps_to_points(maps, project.classes, plan_of("argmax", 0.5, max_blob_fraction=np.inf), run))
    points = pd.concat(frames, ignore_index=True)
    write_submission(points, tmp_path / "sub.csv")
    csv = pd.read_csv(tmp_path / "sub.csv")
    assert list(csv.columns) == SUBMISSION_COLUMNS
    result = fbeta_score(pd.concat(solution), csv, project.classes)
    assert result.score > 0.99


def test_threshold_tuning_picks_a_separating_threshold():
    ribo = by_name(CLASSES)["ribosome"]
    shape = (24, 40, 100)
    true_centres = [(11, 12, 15), (11, 28, 40)]
    false_centres = [(11, 12, 70), (11, 28, 85)]
    lab = np.zeros(shape, np.uint8)
    paint_spheres(lab, np.array(true_centres + false_centres, float), 6.0, ribo.label)
    fake = np.zeros(shape, np.uint8)
    paint_spheres(fake, np.array(false_centres, float), 6.0, 1)
    maps = maps_of_labels(lab, 0.8)
    maps.prob(ribo.label)[fake > 0] = round(0.3 * PROB_SCALE)
    xyz = np.array(true_centres, float)[:, ::-1] * SPACING
    solution = pd.DataFrame({"experiment": "r", "particle_type": "ribosome", "x": xyz[:, 0], "y": xyz[:, 1]})
    solution["z"] = xyz[:, 2]
    grid = threshold_grid((0.05, 0.95, 0.05))
    for extractor in ("argmax", "components", "peaks"):
        chosen, scores = tune_extractor({"r": maps}, solution, CLASSES, grid, plan_of(extractor))
        assert set(chosen) == {"ribosome"}  # only a class with reference points is tuned
        assert chosen["ribosome"] == pytest.approx(0.35)  # ties go to the lower threshold
        assert scores["ribosome"] == 1.0
        # the tuned score is the competition's score of the points at that threshold
        plan = plan_of(extractor, 0.35)
        result = fbeta_score(solution, maps_to_points(maps, CLASSES, plan, "r"), CLASSES)
        assert result.classes["ribosome"].fbeta == scores["ribosome"]
    untuned = dataclasses.replace(plan_of("argmax"), thresholds={"argmax": chosen})
    assert untuned.class_thresholds(CLASSES, 0.5)["beta-amylase"] == 0.5  # no reference points: the default


# --- predict_runs and the CLI ---------------------------------------------------------------------------------


def test_predict_runs_on_tiny_project(checkpoint, tiny_project, params):
    project = CopickProject(tiny_project / "copick_config.json")
    runs = project.run_names()
    p = dataclasses.replace(params, predict=predict_params(params, slab_depth=16))
    points = predict_runs(checkpoint, project, runs, "denoised", params.data.voxel_spacing, p, progress=False)
    assert list(points.columns) == ["experiment", "particle_type", "x", "y", "z"]
    assert set(points.experiment) <= set(runs)
    extent = np.array(TINY_SHAPE[::-1]) * SPACING
    assert (points[["x", "y", "z"]].to_numpy() <= extent).all()


def run_cli(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "src", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_cli_needs_exactly_one_source(checkpoint, tiny_project, tmp_path):
    for extra in ([], ["--copick", str(tiny_project), "--tomogram", "x.mrc"]):
        result = run_cli("predict", "--model", str(checkpoint), "--out", str(tmp_path / "s.csv"), *extra)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert lines == ["error: give exactly one of --copick and --tomogram"]


def test_cli_predict_writes_submission_and_picks(checkpoint, tiny_project, tmp_path, monkeypatch):
    import shutil

    from typer.testing import CliRunner

    from src.__main__ import app

    monkeypatch.chdir(REPO)  # params.yaml is read from the working directory
    runner = CliRunner()
    project_dir = tmp_path / "project"
    shutil.copytree(tiny_project, project_dir)
    out = tmp_path / "sub.csv"
    args = ["predict", "--model", str(checkpoint), "--copick", str(project_dir), "--out", str(out), "--picks-to-copick"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert list(pd.read_csv(out).columns) == SUBMISSION_COLUMNS
    picks = sorted((project_dir / "overlay" / "ExperimentRuns").glob("*/Picks/predict_0_*.json"))
    assert len(picks) == 2 * len(CLASSES)

    run = sorted(p.name for p in (project_dir / "static" / "ExperimentRuns").iterdir())[0]
    zarr_path = project_dir / "static" / "ExperimentRuns" / run / "VoxelSpacing10.000" / "denoised.zarr"
    result = runner.invoke(
        app, ["predict", "--model", str(checkpoint), "--tomogram", str(zarr_path), "--out", str(out), "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    assert set(pd.read_csv(out).experiment) == {run}  # the run a copick zarr belongs to, so the CSV can be scored
    assert "(model on cpu)" in result.output


def test_cli_thresholds_tunes_and_stores_them(checkpoint, tiny_project, tmp_path, monkeypatch):
    import shutil

    from typer.testing import CliRunner

    from src.__main__ import app
    from src.inference.thresholds import threshold_grid

    monkeypatch.chdir(REPO)
    ckpt = tmp_path / "model.pt"
    shutil.copy(checkpoint, ckpt)
    runner = CliRunner()
    result = runner.invoke(
        app, ["thresholds", "--model", str(ckpt), "--copick", str(tiny_project), "--runs", "TS_SYN_000"]
    )
    assert result.exit_code == 0, result.output
    _, meta = load_checkpoint(ckpt)
    plan = PostprocessPlan.from_dict(meta["postprocess"])
    grid = set(np.round(threshold_grid(load_params().predict.threshold_grid), 6))
    assert set(plan.thresholds) == {"argmax", "components", "peaks"} and plan.extractor in ("components", "peaks")
    for tuned in plan.thresholds.values():
        assert all(round(v, 6) in grid for v in tuned.values())
    bad = runner.invoke(app, ["thresholds", "--model", str(ckpt), "--copick", str(tiny_project), "--runs", "nope"])
    assert bad.exit_code != 0
