"""Pixel size: `predict --rescale` finds a known particle in tomograms at other pixel sizes than the model's, in the
original tomogram's Angstrom; `--voxel-spacing` replaces a wrong header."""

from __future__ import annotations

import dataclasses

import mrcfile
import numpy as np
import pandas as pd
import pytest
import torch

from src.classes import CZII_CLASSES
from src.data.copick_io import Tomogram
from src.errors import UserError
from src.inference.predict import points_of_maps, predict_tomogram
from src.inference.rescale import resample_tomogram, resampled_shape
from tests.conftest import REPO

MODEL_SPACING = 10.012444  # the CZII data's, which the checkpoints are trained at
EXTENT = np.array([300.0, 420.0, 400.0])  # Angstrom along z, y, x
CENTRE = np.array([137.3, 211.9, 186.4])  # x, y, z Angstrom: on no grid's voxel
SIGMA = 25.0  # Angstrom: its half-maximum ball (radius 29 A) is about an apo-ferritin label sphere (30 A)


def blob_tomogram(spacing: float) -> Tomogram:
    """A Gaussian blob at CENTRE sampled at voxel i -> i * spacing Angstrom, as a microscope at `spacing` would."""
    shape = tuple(int(e // spacing) + 1 for e in EXTENT)
    z, y, x = (np.arange(n) * spacing for n in shape)
    d2 = (x[None, None] - CENTRE[0]) ** 2 + (y[None, :, None] - CENTRE[1]) ** 2 + (z[:, None, None] - CENTRE[2]) ** 2
    return Tomogram(np.exp(-d2 / (2 * SIGMA**2)).astype(np.float32), spacing, "blob")


class BrightIsApoFerritin(torch.nn.Module):
    """A stand-in for a trained network: voxels brighter than `level` (in z-scores) are apo-ferritin (label 1)."""

    def __init__(self, level: float = 8.0):
        super().__init__()
        self.level = torch.nn.Parameter(torch.tensor(level), requires_grad=False)

    def forward(self, x):
        logits = torch.full((x.shape[0], len(CZII_CLASSES) + 1, *x.shape[2:]), -20.0)
        logits[:, 0] = 0.0
        logits[:, 1] = 4.0 * (x[:, 0] - self.level)
        return logits


META = {
    "voxel_spacing": MODEL_SPACING,
    "patch_size": (16, 32, 32),
    "classes": CZII_CLASSES,
    "thresholds": {c.name: 0.5 for c in CZII_CLASSES},
}


def predicted_centre(tomo: Tomogram, params, rescale: bool) -> np.ndarray:
    p = dataclasses.replace(params, predict=dataclasses.replace(params.predict, tta_flips=""))
    maps = predict_tomogram(BrightIsApoFerritin(), META, tomo, p.predict, progress=False, rescale=rescale)
    points = points_of_maps(maps, META, tomo.name, p)
    assert list(points["particle_type"]) == ["apo-ferritin"]  # one blob, one point
    return points[["x", "y", "z"]].to_numpy()[0]


@pytest.mark.parametrize("spacing", [7.84, 13.48])
def test_rescaled_prediction_lands_within_one_original_voxel(spacing, params):
    tomo = blob_tomogram(spacing)
    with pytest.raises(UserError, match="--rescale"):
        predict_tomogram(BrightIsApoFerritin(), META, tomo, params.predict, progress=False)
    found = predicted_centre(tomo, params, rescale=True)
    assert np.linalg.norm(found - CENTRE) < spacing
    # Without resampling (a header claiming the model's spacing), the same voxels put the particle elsewhere: the
    # check above is not met by any answer.
    wrong = predicted_centre(Tomogram(tomo.data, MODEL_SPACING, "blob"), params, rescale=False)
    assert np.linalg.norm(wrong - CENTRE) > spacing


@pytest.mark.parametrize("spacing", [7.84, 13.48])
def test_resampled_grid_keeps_the_frame(spacing):
    tomo = blob_tomogram(spacing)
    out = resample_tomogram(tomo, MODEL_SPACING)
    assert out.voxel_spacing == MODEL_SPACING
    assert out.data.shape == resampled_shape(tomo.data.shape, spacing, MODEL_SPACING)
    last = (np.array(out.data.shape) - 1) * MODEL_SPACING
    assert (last <= (np.array(tomo.data.shape) - 1) * spacing + 1e-6).all()  # within the original's extent
    assert (last + MODEL_SPACING > (np.array(tomo.data.shape) - 1) * spacing).all()  # and covering it
    # The brightest resampled voxel is the one nearest the blob's centre (linear interpolation of a smooth blob).
    peak = np.array(np.unravel_index(np.argmax(out.data), out.data.shape))[::-1] * MODEL_SPACING
    assert np.abs(peak - CENTRE).max() <= MODEL_SPACING / 2 + 1e-6


def test_cli_voxel_spacing_overrides_header_and_rescale_exports(tmp_path, monkeypatch):
    import starfile
    from typer.testing import CliRunner

    from src.__main__ import app
    from src.inference.checkpoint import save_checkpoint
    from src.models import build_model

    monkeypatch.chdir(REPO)
    torch.manual_seed(0)
    ckpt = tmp_path / "model.pt"
    save_checkpoint(
        ckpt,
        build_model("none", (4, 8, 16, 32)).eval(),
        model_name="unet",
        classes=CZII_CLASSES,
        voxel_spacing=MODEL_SPACING,
        patch_size=(16, 32, 32),
        thresholds={c.name: 0.3 for c in CZII_CLASSES},
    )
    tomo = blob_tomogram(7.84)
    mrc = tmp_path / "blob.mrc"
    with mrcfile.new(mrc) as f:
        f.set_data(tomo.data)
        f.voxel_size = MODEL_SPACING  # a wrong header: the data are at 7.84 A
    out = tmp_path / "picks.csv"
    args = ["predict", "--model", ckpt, "--tomogram", mrc, "--out", out, "--voxel-spacing", 7.84]
    refused = CliRunner().invoke(app, [str(a) for a in args])
    assert isinstance(refused.exception, UserError) and "--rescale" in str(refused.exception)
    result = CliRunner().invoke(app, [str(a) for a in [*args, "--rescale", "--format", "star"]])
    assert result.exit_code == 0, result.output
    points = pd.read_csv(out)
    assert (points[["x", "y", "z"]].to_numpy() <= EXTENT[::-1] + 1e-6).all()
    star = starfile.read(out.with_suffix(".star"))
    assert star["optics"]["rlnImagePixelSize"].tolist() in ([], [7.84])
    assert len(star["particles"]) == len(points)
