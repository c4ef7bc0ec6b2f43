"""What predicting nothing and predicting everything score on the common test set, the floor a trained cell must beat.

    python benchmarks/trivial_baselines.py

"Everything" is, for each class, a cubic lattice of points over each test tomogram whose spacing (2r/sqrt 3, r the
match radius) puts a prediction within r of every possible particle centre: recall 1, precision as low as it gets.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.data.prepare import open_project  # noqa: E402
from src.data.split import read_split  # noqa: E402
from src.metric import fbeta_score  # noqa: E402
from src.params import load_params  # noqa: E402


def lattice(run: str, extent_xyz: np.ndarray, classes) -> pd.DataFrame:
    frames = []
    for c in classes:
        step = 2 * 0.5 * c.radius / np.sqrt(3)
        axes = [np.arange(step / 2, e, step) for e in extent_xyz]
        xyz = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
        frames.append(
            pd.DataFrame({"experiment": run, "particle_type": c.name, "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]})
        )
    return pd.concat(frames, ignore_index=True)


def main() -> None:
    p = load_params()
    project = open_project(p)
    runs = read_split(p.split.out)["test"]
    solution = pd.concat([project.picks(r) for r in runs], ignore_index=True)
    nothing = fbeta_score(solution, solution.iloc[:0], project.classes)
    everything = pd.concat(
        [lattice(r, project.tomogram(r, p.data.tomo_type, p.data.voxel_spacing).extent, project.classes) for r in runs],
        ignore_index=True,
    )
    every = fbeta_score(solution, everything, project.classes)
    print(f"test runs: {', '.join(runs)} ({len(solution)} particles)")
    print(f"predict nothing:    F4 = {nothing.score:.4f}")
    print(
        f"predict everything: F4 = {every.score:.4f} ({len(everything)} points; per class "
        + ", ".join(f"{k} {v.fbeta:.3f}" for k, v in every.classes.items())
        + ")"
    )


if __name__ == "__main__":
    main()
