"""`show --predictions`: predicted points drawn filled (at the metric's match radius) over the truth's rings."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from PIL import Image
from typer.testing import CliRunner

from src.classes import CZII_CLASSES, by_name
from src.data.show import _circles
from tests.conftest import REPO


def test_predictions_are_discs_of_half_the_rings_radius():
    classes = by_name(CZII_CLASSES)
    truth = pd.DataFrame({"particle_type": ["ribosome"], "x": [500.0], "y": [400.0], "z": [300.0]})
    predicted = truth.assign(x=530.0, z=340.0)  # 40 A off the plane z = 300
    fig, ax = plt.subplots()
    _circles(ax, truth, classes, "xy", 300.0, 10.0)
    _circles(ax, predicted, classes, "xy", 300.0, 10.0, filled=True)
    ring, disc = ax.patches
    plt.close(fig)
    assert not ring.get_fill() and disc.get_fill()
    assert ring.radius == classes["ribosome"].radius / 10.0
    assert np.isclose(disc.radius, 0.5 * np.sqrt(150.0**2 - 40.0**2) / 10.0)  # half its cross-section's radius
    assert disc.center == (53.0, 40.0)


def test_show_cli_draws_the_predictions_of_its_run(tiny_project, tmp_path, monkeypatch):
    from src.__main__ import app
    from src.data.copick_io import CopickProject

    monkeypatch.chdir(REPO)
    project = CopickProject(tiny_project)
    run = project.run_names()[0]
    picks = pd.concat([project.picks(r) for r in project.run_names()], ignore_index=True)
    picks.to_csv(tmp_path / "sub.csv", index=False)
    plain, overlay = tmp_path / "plain.png", tmp_path / "overlay.png"
    runner = CliRunner()
    assert runner.invoke(app, ["show", str(tiny_project), "--run", run, "--out", str(plain)]).exit_code == 0
    args = ["show", str(tiny_project), "--run", run, "--out", str(overlay), "--predictions", str(tmp_path / "sub.csv")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    n_run = int((picks["experiment"] == run).sum())
    assert f"{n_run} picks and {n_run} predicted points" in result.output  # only this run's predictions
    assert not np.array_equal(np.asarray(Image.open(plain)), np.asarray(Image.open(overlay)))
