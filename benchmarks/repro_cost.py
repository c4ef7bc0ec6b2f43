"""Benchmark: what exact reproduction costs. One demo cell trained end to end (`python -m src train`, a process each,
as `dvc repro` runs it) under the portable settings (params.yaml `repro: {cpu_threads: 2, cpu_isa: avx2}`) against
the same thread count with every library free to pick its fastest kernels (`cpu_isa: native`), in turn A B A B ...,
so that a drift of the machine's speed hits both alike.

    python benchmarks/repro_cost.py                       # 2 cells x 3 pairs, about 10 minutes on a 2-core CPU
    python benchmarks/repro_cost.py --cells unet_cbam-c16-p64-s1 --pairs 1

Needs the demo's `data/` and `data/splits.json` (`dvc repro split`). Each run trains in a scratch folder with its own
MLflow store, so the committed study is not touched. Prints per cell the median wall seconds of each setting and the
median of the pairwise ratios portable / native.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {"portable": {"cpu_threads": 2, "cpu_isa": "avx2"}, "native": {"cpu_threads": 2, "cpu_isa": "native"}}


def workspace(root: Path, repro: dict) -> Path:
    """A scratch folder with the repository's params (repro replaced) and links to its data and split."""
    root.mkdir(parents=True)
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["repro"] = repro
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    (root / "data").symlink_to(REPO / "data")
    return root


def train_seconds(ws: Path, cell: str) -> float:
    for folder in ("models", "metrics"):
        shutil.rmtree(ws / folder, ignore_errors=True)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "src", "train", "--cell", cell],
        cwd=ws,
        env={**os.environ, "PYTHONPATH": str(REPO), "CRYOET_MLRUNS": str(ws / "mlruns")},
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", default="unet-c16-p64-s1,unet_cbam-c32-p128-s1", help="configurations, comma-separated")
    ap.add_argument("--pairs", type=int, default=3, help="A/B pairs per cell")
    args = ap.parse_args()
    if not (REPO / "data" / "splits.json").exists():
        sys.exit("no data/splits.json: run `dvc repro split` first")
    print(f"{os.cpu_count()} cores; {args.pairs} pairs per cell; wall seconds of `python -m src train --cell ...`")
    print("| cell | portable (s) | native (s) | portable / native |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        spaces = {name: workspace(Path(tmp) / name, repro) for name, repro in SETTINGS.items()}
        for cell in args.cells.split(","):
            seconds = {name: [] for name in SETTINGS}
            for _ in range(args.pairs):
                for name, ws in spaces.items():
                    seconds[name].append(train_seconds(ws, cell))
            ratios = [a / b for a, b in zip(seconds["portable"], seconds["native"], strict=True)]
            p, n = (statistics.median(seconds[k]) for k in SETTINGS)
            print(f"| {cell} | {p:.1f} | {n:.1f} | {statistics.median(ratios):.3f} |", flush=True)


if __name__ == "__main__":
    main()
