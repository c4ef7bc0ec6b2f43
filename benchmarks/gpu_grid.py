"""Benchmark: the paper-scale training loop against the plain MONAI recipe, validation and predict, and the projected
wall time of the paper's 48-run grid on this device (a script, not a test).

    python benchmarks/gpu_grid.py                 # on a GPU where one is seen: full-size tomograms (< 8 min on an H100)
    python benchmarks/gpu_grid.py --device cpu    # CPU mode: small volumes, few steps (< 10 min on 2 cores)

Both loops train the same network from the same initial weights (seed 0) with the paper's batch (one tomogram, 16
crops by RandCropByLabelClassesd, then the paper's augmentations: `augment` and params.yaml's `train.augment`),
Tversky loss and Adam, on synthetic tomograms at the paper's 10 A:
  (a) plain: the CZII MONAI notebooks' loop. CacheDataset of the preprocessed tomograms, Dataset with the random
      transforms, DataLoader(batch_size=1, shuffle, --plain-workers workers), fp32. RandCropByLabelClassesd finds
      each class's voxels by scanning the whole label map at every step.
      ours: the training stage's loop (src/training/batches.py): class voxels indexed once per tomogram
      (ClassesToIndicesd), batches prepared `--prefetch` ahead in a thread, fp32 (and bf16 autocast on a GPU).
      Steps per second after `--warmup` steps, for the smallest and the largest cell of the grid.
  (b) one validation pass: the training stage's inference (sliding windows and points) on one tomogram, so the cost
      of validating 9 tomograms every `val_every` epochs is set against the training it interrupts;
  (c) predict of one tomogram: ours against plain MONAI sliding windows on the same weights
      (benchmarks/predict_vs_monai.py, each path in its own process);
  (d) the 48-run paper grid (200 epochs x 26 steps, validation every --val-every epochs on 9 tomograms, test on 9)
      projected from (a) and (b), every cell's step and inference time interpolated by its training FLOPs per crop
      (counted on the meta device) between the two measured cells; and the same for 3 seeds. With small volumes (the
      CPU mode) inference times are scaled to 184 x 630 x 630 by voxel count.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

PAPER = {"epochs": 200, "steps_per_epoch": 26, "crops_per_volume": 16, "val_tomograms": 9, "test_tomograms": 9}
FULL_SHAPE = (184, 630, 630)
SPACING = 10.012444


def synth_volumes(shape, count: int, params):
    """`count` synthetic tomograms of `shape` at the paper's spacing, with their label masks."""
    from src.classes import CZII_CLASSES
    from src.data.copick_io import voxel_to_angstrom
    from src.data.masks import label_mask
    from src.data.synth import synthesize_run

    s = dataclasses.replace(params.synth, shape=tuple(shape), voxel_spacing=SPACING)
    out = []
    for i in range(count):
        volumes, objects = synthesize_run(s, i, CZII_CLASSES)
        names = {c.name for c in CZII_CLASSES}
        mine = [o for o in objects if o.kind in names]
        import pandas as pd

        xyz = voxel_to_angstrom(np.array([o.centre_zyx for o in mine]).reshape(-1, 3), SPACING)
        picks = pd.DataFrame(xyz, columns=["x", "y", "z"]).assign(particle_type=[o.kind for o in mine])
        mask = label_mask(s.shape, picks, CZII_CLASSES, SPACING, params.masks.label_radius_fraction)
        out.append((volumes["denoised"].astype(np.float32), mask, picks))
    return out


def build(cell: str, params, device):
    """(model, patch) of a cell name such as unet_cbam-c32-p128, seeded as the training stage seeds seed 0."""
    from src.models import build_model

    model_key, channels, patch = cell.split("-")
    spec = params.study.models[model_key]
    torch.manual_seed(0)
    model = build_model(
        spec.attention,
        params.study.channels[channels],
        7,
        spec.attention_kwargs,
        **dataclasses.asdict(params.train.network),
    ).to(device)
    return model, tuple(params.study.patches[patch])


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plain_loop(cell, params, data, device, steps, warmup, workers) -> dict:
    """Steps per second of the CZII MONAI notebooks' loop (see the module doc, (a) plain)."""
    from monai.data import CacheDataset, DataLoader, Dataset
    from monai.transforms import ClassesToIndicesd, Compose

    from src.training.train import train_step, training_loss
    from src.training.transforms import augment, preprocess, volume_item

    model, patch = build(cell, params, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=params.train.lr)
    loss_fn = training_loss(params.train)
    # the stage's preprocessing, less its one-off class index: the plain crop scans the label map at every step
    pre = Compose([t for t in preprocess(7).transforms if not isinstance(t, ClassesToIndicesd)])
    items = [volume_item(img, mask, SPACING) for img, mask, _ in data]  # what LoadImaged gives: MetaTensors
    cached = CacheDataset(items, transform=pre, progress=False)
    random = augment(patch, 7, params.train.augment, crops=PAPER["crops_per_volume"])  # no indices: scans
    n = steps + warmup
    dataset = Dataset([cached[i % len(cached)] for i in range(n)], transform=random)
    loader = DataLoader(dataset, batch_size=1, shuffle=True, num_workers=workers)
    model.train()
    start = None
    for i, batch in enumerate(loader):
        if i == warmup:
            _sync(device)
            start = time.perf_counter()
        image, label = batch["image"].as_tensor().to(device), batch["label"].as_tensor().to(device)
        train_step(model, optimizer, loss_fn, image, label, use_amp=False)
    _sync(device)
    return {"steps_per_s": steps / (time.perf_counter() - start), "batch": int(image.shape[0])}


def our_loop(cell, params, data, device, steps, warmup, prefetch, amp) -> dict:
    """Steps per second of the training stage's loop (see the module doc, (a) ours)."""
    from src.training.batches import epoch_batches
    from src.training.train import train_step, training_loss
    from src.training.transforms import augment, preprocess, volume_item

    model, patch = build(cell, params, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=params.train.lr)
    loss_fn = training_loss(params.train)
    start_prep = time.perf_counter()
    volumes = [preprocess(7)(volume_item(img, mask, SPACING)) for img, mask, _ in data]
    prep = (time.perf_counter() - start_prep) / len(volumes)
    transforms = augment(patch, 7, params.train.augment, crops=PAPER["crops_per_volume"])
    transforms.set_random_state(seed=0)
    rng = np.random.default_rng(0)
    model.train()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = None
    batches = epoch_batches(transforms, volumes, rng, steps + warmup, 1, device, prefetch)
    for i, (image, label) in enumerate(batches):
        if i == warmup:
            _sync(device)
            start = time.perf_counter()
        train_step(model, optimizer, loss_fn, image, label, use_amp=amp)
    _sync(device)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return {
        "steps_per_s": steps / (time.perf_counter() - start),
        "batch": int(image.shape[0]),
        "prep_s_per_tomogram": prep,
        "peak_gpu_gib": peak,
        "model": model,
        "patch": patch,
    }


def validation_pass(model, patch, params, data, device) -> float:
    """Seconds of the training stage's validation inference (maps and points) on one tomogram."""
    from src.classes import CZII_CLASSES
    from src.data.copick_io import Tomogram
    from src.inference.checkpoint import load_checkpoint, save_checkpoint
    from src.inference.plan import plan_from_params
    from src.inference.predict import points_of_maps, predict_tomogram

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.pt"
        save_checkpoint(
            path,
            model,
            model_name="bench",
            classes=CZII_CLASSES,
            voxel_spacing=SPACING,
            patch_size=patch,
            thresholds={c.name: 0.5 for c in CZII_CLASSES},
            postprocess=plan_from_params(params).to_dict(),
        )
        loaded, meta = load_checkpoint(path, device)
    volume = data[0][0]
    _sync(device)
    start = time.perf_counter()
    maps = predict_tomogram(loaded, meta, Tomogram(volume, SPACING, "val"), params.predict, progress=False)
    points_of_maps(maps, meta, "val", params)
    _sync(device)
    return time.perf_counter() - start


def predict_comparison(shape, device, model: Path | None) -> str:
    cmd = [
        sys.executable,
        str(REPO / "benchmarks/predict_vs_monai.py"),
        "--shape",
        ",".join(map(str, shape)),
        "--device",
        str(device),
    ]
    if model:
        cmd += ["--model", str(model)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    return done.stdout + (done.stderr[-2000:] if done.returncode else "")


def project_grid(params, measured: dict, val_every: int, voxel_factor: float) -> tuple[float, dict]:
    """Projected seconds of the 48-run grid at the paper's scale on this device, and (training, inference, loading)
    seconds of one run of each measured cell. Step and inference times scale with a cell's training GFLOP per crop
    (proportionally from one measured cell, linearly through two or more); loading does not depend on the network."""
    from paper_batch import crop_gflop

    def gflop(cell):
        model_key, channels, patch = cell.split("-")
        spec = params.study.models[model_key]
        network = dataclasses.asdict(params.train.network)
        return crop_gflop(
            spec.attention, spec.attention_kwargs, params.study.channels[channels], params.study.patches[patch], network
        )

    points = sorted((gflop(c), m["step_s"], m["val_s"] * voxel_factor) for c, m in measured.items())
    prep = float(np.mean([m["prep_s"] for m in measured.values()])) * voxel_factor
    xs = [p[0] for p in points]

    def interp(x, i):
        ys = [p[i] for p in points]
        return ys[0] * x / xs[0] if len(points) == 1 else float(np.polyval(np.polyfit(xs, ys, 1), x))

    def run_seconds(x):
        train = PAPER["epochs"] * PAPER["steps_per_epoch"] * interp(x, 1)
        validations = PAPER["epochs"] // val_every
        infer = (validations * PAPER["val_tomograms"] + PAPER["test_tomograms"]) * interp(x, 2)
        return train, infer, (PAPER["steps_per_epoch"] + PAPER["val_tomograms"]) * prep

    total, per_cell = 0.0, {}
    for model_key in params.study.models:
        for channels in params.study.channels:
            for patch in params.study.patches:
                cell = f"{model_key}-{channels}-{patch}"
                train, infer, loading = run_seconds(gflop(cell))
                total += 2 * (train + infer + loading)  # two samples
                if cell in measured:
                    per_cell[cell] = (train, infer, loading)
    return total, per_cell


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--shape", help="D,H,W of the synthetic tomograms (GPU: 184,630,630; CPU: 64,192,192)")
    parser.add_argument(
        "--cells", default="unet-c16-p64,unet_cbam-c32-p128", help="model-channels-patch, comma-separated"
    )
    parser.add_argument("--steps", type=int, help="timed steps per loop (GPU 20, CPU 2)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (GPU 5, CPU 1)")
    parser.add_argument("--plain-workers", type=int, help="DataLoader workers of the plain loop (GPU 4, CPU 0)")
    parser.add_argument("--prefetch", type=int, default=2, help="our batches prepared ahead")
    parser.add_argument(
        "--val-every", type=int, help="validate every k epochs in the projection (default: paper profile's)"
    )
    parser.add_argument("--model", type=Path, help="a trained checkpoint for (c) (default: random weights)")
    parser.add_argument("--skip-predict", action="store_true", help="leave out (c)")
    args = parser.parse_args()

    from src import repro
    from src.hardware import pick_device
    from src.params import load_params

    device = pick_device(args.device)
    gpu = device.type == "cuda"
    shape = tuple(int(v) for v in args.shape.split(",")) if args.shape else FULL_SHAPE if gpu else (64, 192, 192)
    steps = args.steps or (20 if gpu else 2)
    warmup = args.warmup if args.warmup is not None else (5 if gpu else 1)
    workers = args.plain_workers if args.plain_workers is not None else (4 if gpu else 0)
    import yaml

    val_every = args.val_every or yaml.safe_load((REPO / "profiles/paper.yaml").read_text())["train"]["val_every"]
    repro.pin_threads()
    params = load_params(REPO / "params.yaml")
    card = torch.cuda.get_device_name(device) if gpu else platform.processor() or platform.machine()
    print(
        f"device {device} ({card}); torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} cores; tomograms {shape} at {SPACING} A; batch 1 tomogram x "
        f"{PAPER['crops_per_volume']} crops; {steps} timed steps after {warmup}",
        flush=True,
    )
    t0 = time.perf_counter()
    data = synth_volumes(shape, 2, params)
    print(f"synthesised 2 tomograms in {time.perf_counter() - t0:.0f} s", flush=True)

    measured = {}
    print("\n(a) training loop, steps per second (batch of 16 crops)")
    for cell in args.cells.split(","):
        plain = plain_loop(cell, params, data, device, steps, warmup, workers)
        ours = our_loop(cell, params, data, device, steps, warmup, args.prefetch, amp=False)
        line = (
            f"  {cell:20s} plain {plain['steps_per_s']:7.3f} (workers {workers})  ours fp32 "
            f"{ours['steps_per_s']:7.3f} (prefetch {args.prefetch})  x{ours['steps_per_s'] / plain['steps_per_s']:.2f}"
        )
        best = ours
        if gpu:
            bf16 = our_loop(cell, params, data, device, steps, warmup, args.prefetch, amp=True)
            line += f"  ours bf16 {bf16['steps_per_s']:7.3f} x{bf16['steps_per_s'] / plain['steps_per_s']:.2f}"
            line += f"  peak {ours['peak_gpu_gib']:.1f} GiB fp32, {bf16['peak_gpu_gib']:.1f} GiB bf16"
            best = bf16 if bf16["steps_per_s"] > ours["steps_per_s"] else ours
        print(line, flush=True)
        val = validation_pass(ours["model"], ours["patch"], params, data, device)
        measured[cell] = {
            "step_s": 1 / best["steps_per_s"],
            "val_s": val,
            "prep_s": ours["prep_s_per_tomogram"],
            "plain_step_s": 1 / plain["steps_per_s"],
        }

    voxels = float(np.prod(shape))
    factor = float(np.prod(FULL_SHAPE)) / voxels
    print(f"\n(b) one validation pass (maps and points of one {shape} tomogram)")
    for cell, m in measured.items():
        epoch_s = PAPER["steps_per_epoch"] * m["step_s"]
        val_s = PAPER["val_tomograms"] * m["val_s"] * factor
        share = val_s / (val_every * epoch_s)
        print(
            f"  {cell:20s} {m['val_s']:6.2f} s per tomogram here, {m['val_s'] * factor:7.1f} s at full size; "
            f"9 tomograms every {val_every} epochs = {100 * share:5.1f} % of training time"
        )

    if not args.skip_predict:
        print(f"\n(c) predict of one {shape} tomogram, ours against plain MONAI (benchmarks/predict_vs_monai.py)")
        print("  " + predict_comparison(shape, device, args.model).strip().replace("\n", "\n  "), flush=True)

    total, per_cell = project_grid(params, measured, val_every, factor)
    print(
        f"\n(d) the paper grid on this device (200 epochs x 26 steps of 16 crops, validation every {val_every} "
        "epochs on 9 tomograms, test on 9; 184 x 630 x 630)"
    )
    for cell, (train, infer, prep) in per_cell.items():
        print(
            f"  {cell:20s} one run: training {train / 3600:6.2f} h, inference {infer / 3600:5.2f} h, "
            f"loading {prep / 60:4.1f} min"
        )
    print(
        f"  48 runs: {total / 3600:.1f} h; 3 seeds (144 runs): {3 * total / 3600:.1f} h "
        f"(the paper: 159 h for 48 runs on 2 x T4)"
    )
    print(f"\ntotal benchmark time {time.perf_counter() - t0:.0f} s")
    print(json.dumps({c: {k: round(v, 4) for k, v in m.items()} for c, m in measured.items()}))


if __name__ == "__main__":
    main()
