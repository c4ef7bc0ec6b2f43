"""The README's example of `show --predictions`: benchmarks/results/show_predictions.png.

A one-run synthetic project (48 x 128 x 128 voxels), and predictions made from its picks so that every mark appears:
three quarters of the picks found (moved by up to about 0.15 x the class radius), one found twice (a duplicate), the
rest missed, and five predictions far from any pick of their class. The picture is saved with a palette of greys and
the class colours so that it stays small enough to commit (about 100 kB, against 250 kB as `show` writes it).

    python benchmarks/show_example.py            # about 10 s
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from src.classes import CLASS_PALETTE, CZII_CLASSES  # noqa: E402
from src.data.copick_io import CopickProject  # noqa: E402

OUT = REPO / "benchmarks" / "results" / "show_predictions.png"
RUN = "TS_SYN_000"


def cli(*args) -> None:
    subprocess.run([sys.executable, "-m", "src", *map(str, args)], cwd=REPO, check=True)


def example_predictions(picks: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Found picks (moved a little), one duplicate, and five strays; the remaining quarter of the picks is missed."""
    rng = np.random.default_rng(seed)
    radius = picks["particle_type"].map({c.name: c.radius for c in CZII_CLASSES}).to_numpy()
    keep = rng.random(len(picks)) > 0.25
    found = picks[keep].copy()
    found[["x", "y", "z"]] += rng.normal(0, 1, (len(found), 3)) * (0.15 * radius[keep])[:, None]
    duplicate = found.iloc[[0]].copy()
    duplicate[["x", "y"]] += 0.2 * radius[keep][0]
    strays = picks.sample(5, random_state=seed + 1).copy()
    strays[["x", "y"]] = rng.uniform(100, 1200, (5, 2))
    return pd.concat([found, duplicate, strays], ignore_index=True)


def small_png(path: Path, out: Path) -> None:
    """`path` re-saved with 64 greys and each class colour (plain, lightened and darkened for the anti-aliased edges):
    a generic 64-colour quantisation would spend its colours on the greys and lose the classes'."""
    colours = [(g, g, g) for g in range(0, 256, 4)]
    for c in CLASS_PALETTE:
        colours += [c, tuple(int(v / 2 + 127.5) for v in c), tuple(v // 2 for v in c)]
    palette = Image.new("P", (1, 1))
    palette.putpalette([v for c in colours for v in c] + [0] * (768 - 3 * len(colours)))
    image = Image.open(path).convert("RGB").quantize(palette=palette, dither=Image.Dither.NONE)
    image.save(out, optimize=True)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cli("synth", "--out", tmp / "project", "--runs", 1, "--shape", "48,128,128", "--seed", 0)
        picks = CopickProject(tmp / "project").picks(RUN)
        example_predictions(picks).to_csv(tmp / "submission.csv", index=False)
        cli("show", tmp / "project", "--run", RUN, "--predictions", tmp / "submission.csv", "--out", tmp / "hits.png")
        small_png(tmp / "hits.png", OUT)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1000:.0f} kB)")


if __name__ == "__main__":
    main()
