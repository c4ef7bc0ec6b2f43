"""Detection post-processing (issue 14): per-class probabilities against argmax, peak finding, the plan in the
checkpoint, and tuning on the validation pass's own maps."""

from __future__ import annotations

import dataclasses
import itertools
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.spatial.distance import cdist

from src import tracking
from src.classes import CZII_CLASSES, by_name
from src.data.masks import label_mask, label_radius_voxels, paint_spheres
from src.inference.checkpoint import load_checkpoint, save_checkpoint
from src.inference.plan import PostprocessPlan, plan_for
from src.inference.points import PROB_SCALE, class_centres, maps_to_points, peak_candidates, quantised
from src.inference.predict import ClassMaps, points_of_maps
from src.inference.thresholds import threshold_grid, threshold_sweep, tune_extractor
from src.metric import fbeta_score
from tests.conftest import REPO
from tests.test_inference import tiny_model

SPACING = 10.012444
CLASSES = CZII_CLASSES
TABLE = by_name(CLASSES)


def plan_of(extractor: str, threshold: float = 0.5, **changes) -> PostprocessPlan:
    fields = dict(label_radius_fraction=0.5, min_blob_fraction=0.1, max_blob_fraction=8.0)
    fields.update(peak_radius_fraction=0.5, tta_flips="", **changes)
    return PostprocessPlan(extractor, {extractor: {c.name: threshold for c in CLASSES}}, **fields)


def solution_of(run: str, name: str, centres_zyx) -> pd.DataFrame:
    xyz = np.asarray(centres_zyx, float).reshape(-1, 3)[:, ::-1] * SPACING
    return pd.DataFrame({"experiment": run, "particle_type": name, "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]})


def gaussian_blobs(shape, centres, sigma: float, peak: float = 0.95) -> np.ndarray:
    """A uint8 probability map: the maximum of isotropic Gaussians of height `peak` at `centres` (z, y, x)."""
    grid = np.indices(shape, dtype=float)
    prob = np.zeros(shape)
    for c in centres:
        d2 = sum((g - x) ** 2 for g, x in zip(grid, c, strict=True))
        prob = np.maximum(prob, peak * np.exp(-d2 / (2 * sigma**2)))
    return np.round(prob * PROB_SCALE).astype(np.uint8)


# --- per-class probabilities recover what argmax misses --------------------------------------------------------


def test_a_rare_class_below_background_is_found_by_its_own_probability_not_by_argmax():
    """A thyroglobulin at probability 0.3 where background has 0.5 (argmax: background everywhere) and a clear
    ribosome: argmax finds only the ribosome at every threshold; the class's own probability finds both."""
    thyro, ribo = TABLE["thyroglobulin"], TABLE["ribosome"]
    shape = (24, 48, 80)
    thyro_centre, ribo_centre = (12.0, 24.0, 20.0), (12.0, 24.0, 58.0)
    lab = np.zeros(shape, np.uint8)
    paint_spheres(lab, np.array([ribo_centre]), label_radius_voxels(ribo, SPACING, 0.5), ribo.label)
    probs = np.zeros((len(CLASSES), *shape), np.uint8)
    probs[ribo.label - 1][lab == ribo.label] = round(0.9 * PROB_SCALE)
    sphere = np.zeros(shape, np.uint8)
    paint_spheres(sphere, np.array([thyro_centre]), label_radius_voxels(thyro, SPACING, 0.5), 1)
    probs[thyro.label - 1][sphere > 0] = round(0.3 * PROB_SCALE)  # background keeps the argmax there (0.5 > 0.3)
    maps = ClassMaps(lab, probs, SPACING)
    references = [solution_of("r", "thyroglobulin", [thyro_centre]), solution_of("r", "ribosome", [ribo_centre])]
    solution = pd.concat(references, ignore_index=True)

    grid = threshold_grid((0.05, 0.95, 0.05))
    _, argmax_scores = tune_extractor({"r": maps}, solution, CLASSES, grid, plan_of("argmax"))
    tuned, own_scores = tune_extractor({"r": maps}, solution, CLASSES, grid, plan_of("components"))
    assert argmax_scores == {"thyroglobulin": 0.0, "ribosome": 1.0}
    assert own_scores == {"thyroglobulin": 1.0, "ribosome": 1.0}
    assert tuned["thyroglobulin"] <= 0.3

    own = maps_to_points(maps, CLASSES, plan_of("components", 0.25), "r")
    argmax = maps_to_points(maps, CLASSES, plan_of("argmax", 0.05), "r")
    assert sorted(own.particle_type) == ["ribosome", "thyroglobulin"] and list(argmax.particle_type) == ["ribosome"]
    got = own.loc[own.particle_type == "thyroglobulin", ["x", "y", "z"]].to_numpy()[0] / SPACING
    np.testing.assert_allclose(got, thyro_centre[::-1], atol=0.5)
    # the metric agrees: argmax loses thyroglobulin (weight 2), per-class probability scores it
    assert fbeta_score(solution, own, CLASSES).classes["thyroglobulin"].tp == 1
    assert fbeta_score(solution, argmax, CLASSES).classes["thyroglobulin"].tp == 0


def test_the_tuning_sweep_finds_the_same_points_as_prediction_at_every_threshold():
    """The sweep shares work across thresholds (blobs of the lowest threshold swept alone; peaks filtered by level);
    at each threshold it must give exactly the centres `class_centres` gives on the whole maps."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    shape = (24, 48, 48)
    smooth = [gaussian_filter(rng.random(shape), 2.0) for _ in range(len(CLASSES) + 1)]
    logits = np.stack(smooth) * 40.0
    softmax = np.exp(logits - logits.max(axis=0)) / np.exp(logits - logits.max(axis=0)).sum(axis=0)
    probs = np.round(softmax[1:] * PROB_SCALE).astype(np.uint8)
    maps = ClassMaps(softmax.argmax(axis=0).astype(np.uint8), probs, SPACING)
    grid = threshold_grid((0.05, 0.95, 0.1))
    for extractor, c in itertools.product(("argmax", "components", "peaks"), CLASSES):
        plan = plan_of(extractor, min_blob_fraction=0.02)
        sweep = threshold_sweep(maps, c, plan, grid)
        found = 0
        for t in grid:
            direct = np.asarray(sorted(map(tuple, class_centres(maps, c, plan, float(t)))))
            swept = np.asarray(sorted(map(tuple, sweep(float(t)))))
            np.testing.assert_allclose(swept.reshape(-1, 3), direct.reshape(-1, 3), atol=1e-9)
            found += len(direct)
        assert found > 0, (extractor, c.name)  # the maps hold blobs of every class at low thresholds


# --- peaks ------------------------------------------------------------------------------------------------------


def test_peaks_place_one_point_per_separated_particle_and_none_within_the_radius():
    """Ribosome-like Gaussian heatmaps: two particles whose blobs touch at the threshold (components merge them)
    each get a peak; two closer than the peak radius get one; a saturated plateau gets one at its centre."""
    ribo = TABLE["ribosome"]
    radius = label_radius_voxels(ribo, SPACING, 0.5)  # 7.49 voxels
    touching = [(16.0, 20.0, 20.0), (16.0, 20.0, 33.0)]  # 13 voxels apart: separated particles, touching blobs
    close = [(16.0, 50.0, 20.0), (16.0, 50.0, 25.0)]  # 5 voxels apart: within the radius, one particle
    lone = [(16.0, 50.0, 60.0)]
    shape = (32, 72, 80)
    prob = gaussian_blobs(shape, touching + close + lone, sigma=4.0)
    level = quantised(0.2)
    centres, levels = peak_candidates(prob, radius, level)

    assert len(centres) == 4
    distances = cdist(centres, centres) + np.eye(len(centres)) * 1e9
    assert distances.min() > radius  # no two kept peaks within the radius
    for particle in touching + lone:  # each separated particle: exactly one peak, on its centre
        near = np.linalg.norm(centres - np.array(particle), axis=1)
        assert (near < 1.0).sum() == 1
    assert (cdist(centres, np.array(close)).min(axis=1) <= 5.0).sum() == 1  # the close pair: one peak
    assert (np.diff(levels.astype(int)) <= 0).all()  # strongest first

    # components merge the touching pair into one blob at this threshold: the case peaks exist for
    probs = np.zeros((len(CLASSES), *shape), np.uint8)
    probs[ribo.label - 1] = prob
    maps = ClassMaps(np.zeros(shape, np.uint8), probs, SPACING)
    blobs = maps_to_points(maps, CLASSES, plan_of("components", 0.2, max_blob_fraction=100.0), "r")
    peaks = maps_to_points(maps, CLASSES, plan_of("peaks", 0.2), "r")
    assert len(blobs) == 3 and len(peaks) == 4

    # peaks at a higher threshold are the same peaks filtered by level (threshold tuning relies on it)
    for t in (0.3, 0.6, 0.9):
        higher, _ = peak_candidates(prob, radius, quantised(t))
        np.testing.assert_array_equal(higher, centres[levels >= quantised(t)])

    # a saturated flat-topped particle (uint8 plateau) is one peak at its centre, not one per plateau voxel
    flat = np.zeros(shape, np.uint8)
    paint_spheres(flat, np.array([(15.5, 30.5, 40.5)]), 5.0, PROB_SCALE)
    one, _ = peak_candidates(flat, radius, level)
    assert len(one) == 1
    np.testing.assert_allclose(one[0], (15.5, 30.5, 40.5), atol=0.51)


def test_peaks_on_painted_picks_of_a_tiny_project_score_like_the_reference(tiny_project, params):
    """Label masks painted from a synthetic project's picks, used as per-class probabilities: peaks recover the
    picks (F4 near 1 by the competition metric), and no two peaks of a class lie within its peak radius."""
    from src.data.copick_io import CopickProject

    project = CopickProject(tiny_project / "copick_config.json")
    frames, solution = [], []
    for run in project.run_names():
        tomo = project.tomogram(run, "denoised", params.data.voxel_spacing)
        picks = project.picks(run, tomo)
        solution.append(picks)
        lab = label_mask(tomo.data.shape, picks, project.classes, tomo.voxel_spacing, 0.5)
        probs = np.stack([np.where(lab == c.label, PROB_SCALE, 0).astype(np.uint8) for c in project.classes])
        points = maps_to_points(ClassMaps(lab, probs, tomo.voxel_spacing), project.classes, plan_of("peaks"), run)
        frames.append(points)
        for c in project.classes:
            xyz = points.loc[points.particle_type == c.name, ["x", "y", "z"]].to_numpy() / tomo.voxel_spacing
            if len(xyz) > 1:
                assert (cdist(xyz, xyz) + np.eye(len(xyz)) * 1e9).min() > label_radius_voxels(c, SPACING, 0.5)
    result = fbeta_score(pd.concat(solution), pd.concat(frames), project.classes)
    assert result.score > 0.95


# --- the plan in the checkpoint ---------------------------------------------------------------------------------


def test_the_plan_round_trips_through_the_checkpoint_and_predict_applies_it(tmp_path, params, capsys):
    plan = PostprocessPlan(
        extractor="peaks",
        thresholds={
            "peaks": {c.name: 0.15 + 0.1 * i for i, c in enumerate(CLASSES)},
            "components": {"ribosome": 0.4},
            "argmax": {},
        },
        label_radius_fraction=0.4,
        min_blob_fraction=0.2,
        max_blob_fraction=5.0,
        peak_radius_fraction=0.6,
        tta_flips="zx",
    )
    path = tmp_path / "model.pt"
    meta_fields = dict(model_name="unet", classes=CLASSES, voxel_spacing=SPACING, patch_size=(16, 32, 32))
    save_checkpoint(path, tiny_model(), **meta_fields, thresholds={}, postprocess=plan.to_dict())
    _, meta = load_checkpoint(path)
    assert PostprocessPlan.from_dict(meta["postprocess"]) == plan
    assert plan_for(meta, params) == plan  # predict applies the checkpoint's plan, whatever params say
    assert capsys.readouterr().err == ""

    # A model moved to a project with other masks/predict params still predicts the same points ...
    other = dataclasses.replace(
        params,
        masks=dataclasses.replace(params.masks, label_radius_fraction=0.9),
        predict=dataclasses.replace(params.predict, extractor="argmax", peak_radius_fraction=0.1, tta_flips=""),
    )
    ribo = TABLE["ribosome"]
    shape = (32, 48, 64)
    probs = np.zeros((len(CLASSES), *shape), np.uint8)
    probs[ribo.label - 1] = gaussian_blobs(shape, [(16.0, 24.0, 20.0), (16.0, 24.0, 33.0)], sigma=4.0)
    maps = ClassMaps(np.zeros(shape, np.uint8), probs, SPACING)
    mine = points_of_maps(maps, meta, "r", params)
    assert len(mine) == 2
    pd.testing.assert_frame_equal(points_of_maps(maps, meta, "r", other), mine)
    # ... unless asked to use params: then params' extractor (argmax: background wins everywhere, no points)
    asked = dataclasses.replace(other, predict=dataclasses.replace(other.predict, plan_source="params"))
    overridden = plan_for(meta, asked)
    assert overridden.extractor == "argmax" and overridden.label_radius_fraction == 0.9
    assert overridden.thresholds == plan.thresholds  # the tuned thresholds stay
    assert points_of_maps(maps, meta, "r", asked).empty

    # A checkpoint from before plans: params' settings, its thresholds as argmax ones, and a one-line notice
    old = tmp_path / "old.pt"
    save_checkpoint(old, tiny_model(), **meta_fields, thresholds={"ribosome": 0.7})
    _, old_meta = load_checkpoint(old)
    assert "postprocess" not in old_meta
    legacy = plan_for(old_meta, params)
    notice = capsys.readouterr().err.strip().splitlines()
    assert len(notice) == 1 and notice[0].startswith("notice:") and "no post-processing plan" in notice[0]
    assert legacy.extractor == "argmax" and legacy.thresholds == {"argmax": {"ribosome": 0.7}}
    assert legacy.label_radius_fraction == params.masks.label_radius_fraction
    assert legacy.tta_flips == params.predict.tta_flips


# --- one inference pass: tuning reuses validation's maps --------------------------------------------------------


def test_training_tunes_on_the_validation_pass_and_runs_no_second_inference(tmp_path, monkeypatch):
    """A real tiny cell: every tomogram inference is counted. Validation infers each validation run once per
    validation; tuning infers nothing more; the test set once. The stored plan holds every extractor's thresholds."""
    import src.inference.predict as predict_module
    from src.params import load_params
    from src.study import Study
    from src.training.train import train_cell
    from tests.test_train import _env, tiny_params

    ws = tmp_path / "ws"
    ws.mkdir()
    raw = tiny_params(yaml.safe_load((REPO / "params.yaml").read_text()), epochs=2)
    (ws / "params.yaml").write_text(yaml.safe_dump(raw))
    for stage in ("data", "split"):
        subprocess.run([sys.executable, "-m", "src", stage], cwd=ws, env=_env(ws / "mlruns"), check=True)
    monkeypatch.chdir(ws)
    monkeypatch.setenv(tracking.ENV_STORE, str(tmp_path / "mlruns"))

    inferred = []
    real = predict_module.predict_tomogram

    def counting(model, meta, tomo, settings, progress=True):
        inferred.append(tomo.name)
        return real(model, meta, tomo, settings, progress)

    monkeypatch.setattr(predict_module, "predict_tomogram", counting)
    params = load_params(ws / "params.yaml")
    cell = Study.from_params(params).parse("unet-c16-p64-s1")
    record = train_cell(cell, params, progress=False)

    split = json.loads((ws / params.split.out).read_text())
    val, test = split["samples"][cell.sample_number]["val"], split["test"]
    validations = sum(1 for e in range(1, 3) if e % raw["train"]["val_every"] == 0 or e == 2)
    assert sorted(inferred) == sorted(val * validations + test)

    _, meta = load_checkpoint(ws / params.train.models_dir / cell.run_name / "model.pt")
    plan = PostprocessPlan.from_dict(meta["postprocess"])
    assert set(plan.thresholds) == {"argmax", "components", "peaks"} and plan.extractor in ("components", "peaks")
    assert record["thresholds"] == plan.class_thresholds(CLASSES, params.predict.default_threshold)
    grid = set(np.round(threshold_grid(params.predict.threshold_grid), 6))
    assert all(round(v, 6) in grid for v in itertools.chain(*(t.values() for t in plan.thresholds.values())))


def test_an_unknown_extractor_or_plan_source_is_one_sentence():
    from src.params import ParamsError, parse_params

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["predict"].update(extractor="blobs", plan_source="yaml")
    with pytest.raises(ParamsError) as err:
        parse_params(raw)
    message = str(err.value)
    assert "predict.extractor = blobs (must be one of auto, argmax, components, peaks)" in message
    assert "predict.plan_source = yaml (must be one of checkpoint, params)" in message and "\n" not in message
