"""The paper's batch and epoch, derived from its own training minutes (a script, not a test; about 30 s on a CPU).

    python benchmarks/paper_batch.py                 # the fit and the crops per epoch it implies
    python benchmarks/paper_batch.py --measure-scan  # also time the plain recipe's per-step class scan here

The paper reports minutes per run (200 epochs on 2 x T4) for all 48 cells (src/report/published_results.csv). Its
text says "batch size 1" and nothing of what one epoch is. Two readings:
  (a) an epoch is one crop from each of the 26 training tomograms of a sample;
  (b) the CZII MONAI notebooks' recipe, which the paper follows: a step loads ONE tomogram and
      RandCropByLabelClassesd(num_samples=16) draws 16 crops from it, so a "batch of 1" trains on 16 crops and an
      epoch over 26 tomograms on 416.
The training FLOPs of one crop (forward + backward, batch 1) are counted exactly for every cell with
torch.utils.flop_counter on the meta device (no arithmetic runs). Fitting minutes = a + k x GFLOP-per-crop over the
48 cells separates the cost that grows with the network and patch (k) from the cost per run that does not (a).
k = 200 epochs x C crops per epoch / R, so C = k R / 200 for an effective throughput R of the two T4s. Reading (a)
needs R of a few tens of GFLOP/s, under 1 % of two T4s' fp32 peak (2 x 8.1 TFLOP/s); reading (b) needs about
1-2 TFLOP/s, what cuDNN's fp32 3-D convolutions plausibly sustain on a T4. The intercept a is compared with what the
plain recipe spends per epoch regardless of the network: RandCropByLabelClassesd without precomputed indices scans
the whole 184 x 630 x 630 label map of the tomogram it loads at every step (`--measure-scan` times that here).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

EPOCHS = 200  # the paper's
TRAIN_TOMOGRAMS = 26  # of a sample's 35 (the paper profile's split: 26 train + 9 validation)
T4_FP32_PEAK = 8.1e12  # FLOP/s per card (NVIDIA's data sheet); the paper trained on two
FULL_SHAPE = (184, 630, 630)


def crop_gflop(attention: str, attention_kwargs: dict, channels, patch, network: dict) -> float:
    """Training FLOPs of one crop (forward and backward, batch 1), in GFLOP, counted on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    from src.models import build_model

    model = build_model(attention, channels, 7, attention_kwargs, **network).to("meta")
    x = torch.zeros((1, 1, *patch), device="meta")
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    return counter.get_total_flops() / 1e9


def paper_cells() -> pd.DataFrame:
    """The published minutes per run beside each cell's GFLOP per crop."""
    from dataclasses import asdict

    from src.params import load_params

    p = load_params(REPO / "params.yaml")
    published = pd.read_csv(REPO / "src/report/published_results.csv")
    keys = {size: key for key, size in p.study.channels.items()}
    rows = []
    for r in published.itertuples():
        channels = tuple(int(c) for c in r.channels.split("-"))
        patch = tuple(int(s) for s in r.patch_size.split("x"))
        spec = p.study.models[r.model]
        gflop = crop_gflop(spec.attention, spec.attention_kwargs, channels, patch, asdict(p.train.network))
        rows.append(
            dict(
                sample=r.sample,
                model=r.model,
                channels=keys[channels],
                patch=r.patch_size,
                minutes=r.train_minutes,
                gflop_per_crop=gflop,
            )
        )
    return pd.DataFrame(rows)


def fit(cells: pd.DataFrame) -> tuple[float, float, float]:
    """Least squares minutes = a + k x GFLOP-per-crop: (a minutes, k minutes per GFLOP per crop, R^2)."""
    x, y = cells["gflop_per_crop"].to_numpy(), cells["minutes"].to_numpy(dtype=float)
    k, a = np.polyfit(x, y, 1)
    r2 = 1 - np.sum((y - (a + k * x)) ** 2) / np.sum((y - y.mean()) ** 2)
    return float(a), float(k), float(r2)


def class_scan_seconds() -> float:
    """Seconds of MONAI's map_classes_to_indices over one 184 x 630 x 630 label map with 160 particles (what
    RandCropByLabelClassesd does at every step when no indices are precomputed)."""
    from monai.transforms.utils import map_classes_to_indices

    rng = np.random.default_rng(0)
    label = np.zeros((1, *FULL_SHAPE), np.uint8)
    zz, yy, xx = np.ogrid[-6:7, -6:7, -6:7]
    ball = zz**2 + yy**2 + xx**2 <= 36
    for _ in range(160):
        z, y, x = (int(rng.integers(10, s - 10)) for s in FULL_SHAPE)
        label[0, z - 6 : z + 7, y - 6 : y + 7, x - 6 : x + 7][ball] = rng.integers(1, 7)
    start = time.perf_counter()
    map_classes_to_indices(torch.from_numpy(label), 7)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--measure-scan", action="store_true", help="time the plain recipe's per-step class scan")
    args = parser.parse_args()
    cells = paper_cells()
    print("cells (paper minutes per run of 200 epochs on 2 x T4; GFLOP of one training crop):")
    summary = cells.groupby(["model", "channels", "patch"], sort=False).agg(
        minutes=("minutes", "mean"), gflop_per_crop=("gflop_per_crop", "first")
    )
    print(summary.round(1).to_string())
    print("\nfit minutes = a + k x GFLOP-per-crop:")
    groups = {
        "all 48 cells": cells,
        **{f"{c} cells": cells[cells.channels == c] for c in sorted(cells.channels.unique())},
    }
    fits = {}
    for name, group in groups.items():
        a, k, r2 = fit(group)
        fits[name] = (a, k)
        print(
            f"  {name:14s} a = {a:6.1f} min ({60 * a / EPOCHS:5.1f} s per epoch), k = {k:5.2f} min per GFLOP, "
            f"R^2 = {r2:.2f}"
        )
    print("\ncrops per epoch C = k R / 200 for an effective throughput R of the two T4s:")
    rates = [0.5e12, 1e12, 2e12, 4e12]
    print("  " + " " * 14 + "".join(f"{r / 1e12:>9.1f} TF/s" for r in rates))
    for name, (_, k) in fits.items():
        crops = [k * 60 * r / (EPOCHS * 1e9) for r in rates]
        print(f"  {name:14s}" + "".join(f"{c:>14.0f}" for c in crops))
    print("\nthe throughput each reading needs (percent of two T4s' fp32 peak, 16.2 TF/s):")
    for label, crops in (("(a) 26 single crops", TRAIN_TOMOGRAMS), ("(b) 26 x 16 crops", TRAIN_TOMOGRAMS * 16)):
        needs = [EPOCHS * crops * 1e9 / (k * 60) for _, k in fits.values()]
        print(
            f"  {label:20s} "
            + ", ".join(f"{r / 1e12:.2f} TF/s ({100 * r / (2 * T4_FP32_PEAK):.1f} %)" for r in needs)
            + "  ["
            + ", ".join(fits)
            + "]"
        )
    a = fits["all 48 cells"][0]
    print(f"\nthe intercept: {60 * a / EPOCHS:.1f} s per epoch that do not grow with network or patch")
    if args.measure_scan:
        scan = class_scan_seconds()
        print(
            f"  the plain recipe's class scan of one {FULL_SHAPE} label map: {scan:.2f} s here, x "
            f"{TRAIN_TOMOGRAMS} steps = {TRAIN_TOMOGRAMS * scan:.0f} s per epoch (one scan per loaded tomogram)"
        )


if __name__ == "__main__":
    main()
