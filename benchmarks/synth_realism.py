"""Time one synthetic tomogram and compare its crowding with the real CZII run TS_73_6.

    python benchmarks/synth_realism.py [--shape 184,630,630] [--count-scale 1.0]

Prints seconds for the tomogram, then per class: particles, and the median nearest-neighbour distance (Angstrom,
to any particle of any class) for the synthetic tomogram and for TS_73_6's real ground truth (217 picks).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial import KDTree

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.classes import CZII_CLASSES  # noqa: E402
from src.data.copick_io import voxel_to_angstrom  # noqa: E402
from src.data.synth import synthesize_run  # noqa: E402
from src.params import load_params  # noqa: E402

REAL = Path(__file__).resolve().parents[1] / "tests" / "data" / "ts_73_6_ground_truth.csv"


def crowding(frame: pd.DataFrame) -> pd.DataFrame:
    xyz = frame[["x", "y", "z"]].to_numpy()
    dist, _ = KDTree(xyz).query(xyz, k=2)
    frame = frame.assign(nn=dist[:, 1])
    return frame.groupby("particle_type").agg(n=("nn", "size"), nn_median=("nn", "median"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="184,630,630")
    parser.add_argument("--count-scale", type=float, default=1.0)
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    p = load_params()
    s = p.synth
    placement = dataclasses.replace(s.placement, count_scale=args.count_scale)
    start = time.perf_counter()
    _, objects = synthesize_run(dataclasses.replace(s, shape=shape, placement=placement), 0, CZII_CLASSES)
    seconds = time.perf_counter() - start
    names = {c.name for c in CZII_CLASSES}
    particles = [o for o in objects if o.kind in names]
    xyz = voxel_to_angstrom(np.array([o.centre_zyx for o in particles]), s.voxel_spacing)
    synthetic = pd.DataFrame(xyz, columns=["x", "y", "z"]).assign(particle_type=[o.kind for o in particles])
    real = pd.read_csv(REAL)
    table = crowding(synthetic).add_suffix("_synthetic").join(crowding(real).add_suffix("_TS_73_6"))
    print(f"one {shape} tomogram (density, CTF, wedge, noise, denoise; no zarr writing): {seconds:.1f} s")
    kinds = [o.kind for o in objects]
    print(f"distractors: {kinds.count('vesicle')} vesicles, {kinds.count('blob')} blobs")
    print(table.round(1).to_string())


if __name__ == "__main__":
    main()
