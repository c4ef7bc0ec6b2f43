"""Benchmark: our slab-wise predict path vs the plain MONAI recipe on one synthetic tomogram (a script, not a test).

    python benchmarks/predict_vs_monai.py                      # full size 184 x 630 x 630 (minutes on a CPU)
    python benchmarks/predict_vs_monai.py --shape 64,160,160   # quick check

A model with fixed random weights (seed 0, unet c16, patch 32x128x128) is saved as a checkpoint, or `--model CKPT`
uses a trained one (e.g. models/unet-c16-p128-s1/model.pt after `dvc repro`), so the scores mean something. Each
path runs in its own subprocess, which reports its wall time, points and its own peak RSS (getrusage RUSAGE_SELF), so
peaks do not mix:
  (a) ours: `predict_tomogram` with params.yaml's predict settings, then `maps_to_points`;
  (b) plain: MONAI sliding_window_inference (overlap 0.25, float32, sw_batch_size 1) on the whole volume, full
      7-channel output, argmax, scipy.ndimage.label per class + center_of_mass -> points.
Random weights give scores near 0: then the scores only show that both paths run end to end. `--device cuda` (the
default where a GPU is seen) runs both on the GPU: ours with fp16 autocast, plain in float32.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PATCH = (32, 128, 128)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_ours(workdir: Path, device: str) -> dict:
    from src.data.copick_io import Tomogram
    from src.inference.checkpoint import load_checkpoint
    from src.inference.predict import points_of_maps, predict_tomogram
    from src.params import load_params

    params = load_params(REPO / "params.yaml")
    volume = np.load(workdir / "volume.npy")
    spacing = float(json.loads((workdir / "info.json").read_text())["spacing"])
    start = time.perf_counter()
    model, meta = load_checkpoint(workdir / "model.pt", device)
    maps = predict_tomogram(model, meta, Tomogram(volume, spacing, "bench"), params.predict, progress=False)
    inferred = time.perf_counter()
    points = points_of_maps(maps, meta, "bench", params)
    end = time.perf_counter()
    return {"seconds": end - start, "infer_seconds": inferred - start, "points_seconds": end - inferred}, points


def run_plain(workdir: Path, device: str) -> dict:
    from monai.inferers import sliding_window_inference
    from scipy import ndimage

    from src.data.copick_io import voxel_to_angstrom
    from src.inference.checkpoint import load_checkpoint

    volume = np.load(workdir / "volume.npy")
    spacing = float(json.loads((workdir / "info.json").read_text())["spacing"])
    start = time.perf_counter()
    model, meta = load_checkpoint(workdir / "model.pt", device)
    x = torch.from_numpy((volume - volume.mean()) / volume.std())[None, None].to(device)
    with torch.inference_mode():
        out = sliding_window_inference(x, tuple(meta["patch_size"]), 1, model, overlap=0.25, mode="gaussian")
        label = out[0].argmax(0).cpu().numpy().astype(np.uint8)
    del out
    inferred = time.perf_counter()
    rows = []
    for c in meta["classes"]:
        components, n = ndimage.label(label == c.label)
        if n == 0:
            continue
        centres = np.array(ndimage.center_of_mass(components > 0, components, range(1, n + 1))).reshape(-1, 3)
        frame = pd.DataFrame(voxel_to_angstrom(centres, spacing), columns=["x", "y", "z"])
        frame.insert(0, "particle_type", c.name)
        frame.insert(0, "experiment", "bench")
        rows.append(frame)
    points = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["experiment", "particle_type"])
    end = time.perf_counter()
    return {"seconds": end - start, "infer_seconds": inferred - start, "points_seconds": end - inferred}, points


def child(part: str, workdir: Path, device: str) -> None:
    """Run one path; peak RSS is read before scoring, so the (untimed) scoring does not count."""
    from src.classes import CZII_CLASSES
    from src.metric import fbeta_score

    result, points = (run_ours if part == "ours" else run_plain)(workdir, device)
    result["peak_rss_mb"] = peak_rss_mb()
    result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else 0.0
    result["n_points"] = len(points)
    picks = pd.read_csv(workdir / "picks.csv")
    result["score"] = fbeta_score(picks, points, CZII_CLASSES).score if len(points) else 0.0
    (workdir / f"{part}.json").write_text(json.dumps(result))


def prepare(workdir: Path, shape: tuple[int, int, int], checkpoint: Path | None) -> pd.DataFrame:
    from src.classes import CZII_CLASSES
    from src.data.copick_io import voxel_to_angstrom
    from src.data.synth import synthesize_run
    from src.inference.checkpoint import save_checkpoint
    from src.models import build_model
    from src.params import load_params

    s = load_params(REPO / "params.yaml").synth
    volumes, objects = synthesize_run(dataclasses.replace(s, shape=shape), 0, CZII_CLASSES)
    np.save(workdir / "volume.npy", volumes["denoised"].astype(np.float32))
    (workdir / "info.json").write_text(json.dumps({"spacing": s.voxel_spacing}))
    names = {c.name for c in CZII_CLASSES}
    mine = [o for o in objects if o.kind in names]
    xyz = voxel_to_angstrom(np.array([o.centre_zyx for o in mine]).reshape(-1, 3), s.voxel_spacing)
    picks = pd.DataFrame(xyz, columns=["x", "y", "z"])
    picks.insert(0, "particle_type", [o.kind for o in mine])
    picks.insert(0, "experiment", "bench")
    picks.to_csv(workdir / "picks.csv", index=False)
    if checkpoint is not None:
        shutil.copy(checkpoint, workdir / "model.pt")
        return picks
    torch.manual_seed(0)
    model = build_model("none", (16, 32, 64, 128))  # the baseline U-Net
    save_checkpoint(
        workdir / "model.pt",
        model,
        model_name="unet",
        classes=CZII_CLASSES,
        voxel_spacing=s.voxel_spacing,
        patch_size=PATCH,
        thresholds={c.name: 0.5 for c in CZII_CLASSES},
        extra={"note": "random weights, benchmark only"},
    )
    return picks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="184,630,630", help="D,H,W of the synthetic tomogram")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="where both paths run")
    parser.add_argument("--model", type=Path, help="a trained checkpoint (default: random weights)")
    parser.add_argument("--part", choices=["ours", "plain"], help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:
        child(args.part, args.workdir, args.device)
        return

    from src.params import load_params

    shape = tuple(int(v) for v in args.shape.split(","))
    p = load_params(REPO / "params.yaml").predict
    print(f"device {args.device}; ours: overlap {p.overlap}, sw_batch_size {p.sw_batch_size}, ", end="")
    print(f"slab_depth {p.slab_depth}, tta '{p.tta_flips}'")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        t0 = time.perf_counter()
        picks = prepare(workdir, shape, args.model)
        print(f"tomogram {shape}, {len(picks)} picks, synthesised in {time.perf_counter() - t0:.1f} s", flush=True)
        for part, label in (("plain", "(b) plain MONAI"), ("ours", "(a) ours")):
            cmd = [sys.executable, __file__, "--part", part, "--workdir", str(workdir), "--device", args.device]
            subprocess.run(cmd, check=True, cwd=REPO)
            r = results[part] = json.loads((workdir / f"{part}.json").read_text())
            print(
                f"{label:<16} wall {r['seconds']:7.1f} s (network {r['infer_seconds']:.1f}, points "
                f"{r['points_seconds']:.1f})  peak RSS {r['peak_rss_mb']:6.0f} MB  GPU {r['peak_gpu_mb']:6.0f} MB  "
                f"points {r['n_points']:8d}  "
                f"score {r['score']:.4f}",
                flush=True,
            )
    ratio = results["ours"]["seconds"] / results["plain"]["seconds"]
    rss = results["ours"]["peak_rss_mb"] / results["plain"]["peak_rss_mb"]
    print(f"ours / plain: time x{ratio:.2f}, peak RSS x{rss:.2f}")


if __name__ == "__main__":
    main()
