"""Benchmark: one training step of every model x channel config at the paper's patch sizes, fp32 against bf16
mixed precision (and bf16 with channels-last 3-D memory), through the training code's own `train_step`.

    python benchmarks/train_step_speed.py                                   # all 8 configs x 3 paper patches (GPU)
    python benchmarks/train_step_speed.py --models unet --channels c16 --patches p64 --steps 3   # quick CPU check

Patches are drawn by the training stage's augmentation (`augment`, params.yaml's `train.augment`) from one synthetic
tomogram made by `src.data.synth`, so the CPU cost of augmentation is measured too (reported separately: on a GPU it
runs beside the model step and usually dominates). Same weights (seed 0) and same patches for every precision mode.
Per row: milliseconds per step (median of the timed steps after warm-up), peak GPU memory of the step, and seconds
per paper epoch = `--epoch-steps` x (augmentation + step), 26 steps being the paper profile's epoch.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from src.classes import CZII_CLASSES  # noqa: E402
from src.data.copick_io import CopickProject  # noqa: E402
from src.data.synth import synthesize_project  # noqa: E402
from src.models import build_model  # noqa: E402
from src.params import load_params  # noqa: E402
from src.study import Study, size_label  # noqa: E402
from src.training.train import draw_batch, train_step, training_loss, training_volumes  # noqa: E402
from src.training.transforms import augment  # noqa: E402

MODES = {"fp32": (False, False), "bf16": (True, False), "bf16+cl": (True, True)}


def synthetic_volumes(params, shape: tuple[int, int, int], workdir: Path):
    out = workdir / "project"
    settings = replace(params.synth, runs=1, shape=shape)
    synthesize_project(out, settings, CZII_CLASSES, params.data.voxel_spacing, progress=False)
    project = CopickProject(out / "copick_config.json")
    return training_volumes(project, project.run_names(), params)[0]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_steps(model, batches, device, use_amp: bool, warmup: int, params) -> tuple[float, float]:
    """(median ms per step over the batches after `warmup`, peak GPU MiB or nan)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=params.train.lr)
    loss_fn = training_loss(params.train)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i, (image, label) in enumerate(batches):
        _sync(device)
        start = time.perf_counter()
        train_step(model, optimizer, loss_fn, image, label, use_amp)
        _sync(device)
        if i >= warmup:
            times.append(1000 * (time.perf_counter() - start))
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else float("nan")
    return statistics.median(times), peak


def main() -> None:
    params = load_params(REPO / "params.yaml")
    study = Study.from_params(params)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(study.model_keys))
    ap.add_argument("--channels", default=",".join(study.channel_keys), help="keys of params.yaml's study.channels")
    ap.add_argument("--patches", default=",".join(study.patch_keys), help="keys of the paper's patches (study.patches)")
    ap.add_argument("--modes", default="fp32,bf16,bf16+cl", help=f"among {', '.join(MODES)} (bf16 needs a GPU)")
    ap.add_argument("--steps", type=int, default=15, help="timed steps per row")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--epoch-steps", type=int, default=26, help="steps of one epoch (paper profile: 26)")
    ap.add_argument("--shape", default="64,256,256", help="z,y,x of the synthetic tomogram patches come from")
    ap.add_argument("--csv", type=Path, help="also write the rows here (the report's report.step_times reads it)")
    args = ap.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    modes = args.modes.split(",")
    if device.type == "cpu":
        modes = [m for m in modes if m == "fp32"]  # autocast to bf16 is what the GPU path does; on CPU it is slow
    shape = tuple(int(v) for v in args.shape.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        volumes = synthetic_volumes(params, shape, Path(tmp))
    print(f"device: {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}, torch {torch.__version__}")

    rows = []
    n = len(CZII_CLASSES) + 1
    for patch_key in args.patches.split(","):
        patch = study.patches[patch_key]
        transforms = augment(patch, n, params.train.augment)
        transforms.set_random_state(seed=0)
        rng = np.random.default_rng(0)
        start = time.perf_counter()
        batches = [draw_batch(transforms, volumes, rng, 1, device) for _ in range(args.warmup + args.steps)]
        _sync(device)
        augment_ms = 1000 * (time.perf_counter() - start) / len(batches)
        for channel_key in args.channels.split(","):
            channels = study.channels[channel_key]
            for name in args.models.split(","):
                for mode in modes:
                    use_amp, channels_last = MODES[mode]
                    torch.manual_seed(0)
                    spec = study.models[name]
                    network = asdict(params.train.network)
                    model = build_model(spec.attention, channels, n, spec.attention_kwargs, **network).to(device)
                    data = batches
                    if channels_last:
                        model = model.to(memory_format=torch.channels_last_3d)
                        data = [(i.contiguous(memory_format=torch.channels_last_3d), lb) for i, lb in batches]
                    with contextlib.suppress(torch.OutOfMemoryError):
                        ms, peak = time_steps(model, data, device, use_amp, args.warmup, params)
                        rows.append(
                            dict(
                                patch=size_label(patch), channels=size_label(channels, "-"), model=name,
                                mode=mode, step_ms=ms, augment_ms=augment_ms, peak_gpu_mib=peak,
                                s_per_epoch=args.epoch_steps * (ms + augment_ms) / 1000,
                            )
                        )  # fmt: skip
                        print(
                            " ".join(
                                f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in rows[-1].items()
                            ),
                            flush=True,
                        )
                    del model
    df = pd.DataFrame(rows)
    print("\n" + df.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    if args.csv:
        device_name = torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu"
        df.assign(device=device_name, torch=torch.__version__).to_csv(args.csv, index=False)
    if {"fp32", "bf16"} <= set(df["mode"]):
        wide = df.pivot_table(index=["patch", "channels", "model"], columns="mode", values="step_ms")
        print("\nbf16 speed-up over fp32 (step only):")
        print((wide["fp32"] / wide["bf16"]).describe().to_string())


if __name__ == "__main__":
    main()
