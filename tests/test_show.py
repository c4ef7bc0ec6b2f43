"""`show --predictions`: the metric's own matching drawn (TP solid ring + dot, FN dashed ring, FP x), counts in the
legend equal to the scorer's, classes in the one colour-blind-safe palette."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from PIL import Image
from typer.testing import CliRunner

from src.classes import CLASS_PALETTE, CZII_CLASSES, by_name, display_colors
from src.data.show import (
    FOUND,
    MISSED,
    REACHING,
    STATE,
    STRAY,
    _draw_predictions,
    _draw_truth,
    class_label,
    mark_matches,
    match_classes,
)
from src.metric import fbeta_score
from tests.conftest import REPO

RUN = "TS_1"


def points(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["particle_type", "x", "y", "z"]).assign(experiment=RUN)


# ribosome radius 150 A: match radius 75 A. Two ribosomes, one found twice (a duplicate), one missed; a stray
# ribosome prediction; an apo-ferritin prediction on the found ribosome (its class has no truth there: FP).
TRUTH = points([("ribosome", 500.0, 400.0, 300.0), ("ribosome", 900.0, 400.0, 300.0)])
PREDICTED = points(
    [
        ("ribosome", 530.0, 400.0, 300.0),
        ("ribosome", 500.0, 460.0, 300.0),  # the duplicate
        ("ribosome", 200.0, 200.0, 300.0),  # far from any truth
        ("apo-ferritin", 500.0, 400.0, 300.0),
    ]
)


def test_marks_are_the_scorers_matching_and_counts():
    matchings = match_classes(TRUTH, PREDICTED, CZII_CLASSES)
    truth, predicted = mark_matches(TRUTH, PREDICTED, matchings)
    assert list(truth[STATE]) == [FOUND, MISSED]
    assert list(predicted[STATE]) == [REACHING, REACHING, STRAY, STRAY]
    scored = fbeta_score(TRUTH, PREDICTED, CZII_CLASSES).per_tomogram[RUN]
    assert matchings["ribosome"].counts() == scored["ribosome"] == (1, 2, 1)  # the duplicate is an FP too
    assert matchings["apo-ferritin"].counts() == (0, 1, 0)
    assert class_label("ribosome", TRUTH, matchings["ribosome"]) == "ribosome: TP 1  FP 2  FN 1"


def test_a_wider_match_radius_finds_what_the_scorer_would():
    far = PREDICTED.assign(x=PREDICTED["x"] + 100.0)  # 100 A off: out of 0.5 x 150, within 0.8 x 150
    assert match_classes(TRUTH, far, CZII_CLASSES)["ribosome"].counts()[0] == 0
    wide = match_classes(TRUTH, far, CZII_CLASSES, distance_multiplier=0.8)["ribosome"]
    scored = fbeta_score(TRUTH, far, CZII_CLASSES, distance_multiplier=0.8).per_tomogram[RUN]["ribosome"]
    assert wide.counts() == scored and wide.counts()[0] >= 1


def test_found_and_missed_rings_differ_in_line_style_and_predictions_in_marker():
    classes = by_name(CZII_CLASSES)
    colours = display_colors(CZII_CLASSES)
    truth, predicted = mark_matches(TRUTH, PREDICTED, match_classes(TRUTH, PREDICTED, CZII_CLASSES))
    fig, ax = plt.subplots()
    _draw_truth(ax, truth, classes, colours, "xy", 340.0, 10.0)  # 40 A off the particles' plane
    _draw_predictions(ax, predicted, classes, colours, "xy", 340.0, 10.0)
    rings = {ring.center: ring for ring in ax.patches}
    markers = sorted((line.get_marker(), tuple(line.get_xdata())) for line in ax.lines)
    plt.close(fig)
    found, missed = rings[(50.0, 40.0)], rings[(90.0, 40.0)]
    assert found.get_linestyle() == "solid" and missed.get_linestyle() not in ("solid", "-")  # dashed
    assert np.isclose(found.radius, np.sqrt(150.0**2 - 40.0**2) / 10.0)  # the sphere's cross-section
    assert tuple(found.get_edgecolor()[:3]) == colours["ribosome"]
    assert markers == [("o", (53.0, 50.0)), ("x", (20.0,)), ("x", (50.0,))]  # dots reach a truth, x's do not


def test_palette_is_one_colour_blind_safe_set_and_tells_the_classes_apart():
    colours = display_colors(CZII_CLASSES)
    assert len(set(colours.values())) == len(CZII_CLASSES)  # six different colours
    assert set(colours.values()) <= {tuple(v / 255 for v in c) for c in CLASS_PALETTE}
    assert colours["ribosome"] != colours["thyroglobulin"] and colours["beta-amylase"] != colours["virus-like-particle"]


def test_show_cli_draws_the_predictions_of_its_run_with_the_scorers_counts(tiny_project, tmp_path, monkeypatch):
    from src.__main__ import app
    from src.data.copick_io import CopickProject

    monkeypatch.chdir(REPO)
    project = CopickProject(tiny_project)
    run = project.run_names()[0]
    picks = pd.concat([project.picks(r) for r in project.run_names()], ignore_index=True)
    of_run = picks[picks["experiment"] == run]
    # this run's picks, one of them missed and one moved far off: TP n-2, FP 1, FN 2
    predicted = pd.concat([of_run.iloc[2:], of_run.iloc[[1]].assign(x=-5000.0)], ignore_index=True)
    pd.concat([predicted, picks[picks["experiment"] != run]]).to_csv(tmp_path / "sub.csv", index=False)
    plain, overlay = tmp_path / "plain.png", tmp_path / "overlay.png"
    runner = CliRunner()
    assert runner.invoke(app, ["show", str(tiny_project), "--run", run, "--out", str(plain)]).exit_code == 0
    args = ["show", str(tiny_project), "--run", run, "--out", str(overlay), "--predictions", str(tmp_path / "sub.csv")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    n_run = len(of_run)
    assert f"{n_run} picks and {n_run - 1} predicted points" in result.output  # only this run's predictions
    scored = fbeta_score(of_run, predicted, project.classes).classes
    tp, fp, fn = (sum(getattr(c, k) for c in scored.values()) for k in ("tp", "fp", "fn"))
    assert (tp, fp, fn) == (n_run - 2, 1, 2)
    assert f"TP {tp}, FP {fp}, FN {fn}" in result.output
    assert not np.array_equal(np.asarray(Image.open(plain)), np.asarray(Image.open(overlay)))


def test_show_refuses_a_negative_distance_multiplier(tiny_project, tmp_path, monkeypatch):
    from src.__main__ import app
    from src.errors import UserError

    monkeypatch.chdir(REPO)
    args = ["show", str(tiny_project), "--run", "x", "--out", str(tmp_path / "a.png"), "--distance-multiplier", "-1"]
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, UserError) and "--distance-multiplier" in str(result.exception)
