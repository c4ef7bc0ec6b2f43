"""The GPU benchmark's code paths on the CPU: the same functions `benchmarks/gpu_grid.py` runs on a GPU, device cpu,
tiny volumes and one step (its numbers are not checked here: benchmarks print, tests do not time)."""

from __future__ import annotations

import math
import sys

import torch

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))

import gpu_grid  # noqa: E402


def test_the_gpu_benchmark_runs_its_loops_validation_and_projection_on_a_cpu(params):
    device = torch.device("cpu")
    data = gpu_grid.synth_volumes((32, 80, 80), 2, params)
    assert all(img.shape == mask.shape == (32, 80, 80) and mask.max() > 0 for img, mask, _ in data)
    cell = "unet-c16-p64"
    plain = gpu_grid.plain_loop(cell, params, data, device, steps=1, warmup=0, workers=0)
    ours = gpu_grid.our_loop(cell, params, data, device, steps=1, warmup=0, prefetch=2, amp=False)
    assert plain["batch"] == ours["batch"] == gpu_grid.PAPER["crops_per_volume"]  # the paper's batch, both loops
    assert plain["steps_per_s"] > 0 and ours["steps_per_s"] > 0 and math.isnan(ours["peak_gpu_gib"])
    seconds = gpu_grid.validation_pass(ours["model"], ours["patch"], params, data, device)
    assert seconds > 0
    measured = {cell: {"step_s": 1.0, "val_s": 2.0, "prep_s": 0.5}}
    total, per_cell = gpu_grid.project_grid(params, measured, val_every=10, voxel_factor=1.0)
    train, infer, prep = per_cell[cell]
    assert train == 200 * 26 * 1.0 and infer == (20 * 9 + 9) * 2.0 and prep == (26 + 9) * 0.5
    # every other cell scales with its training FLOPs per crop: c32 at p128 costs far more than the measured cell
    assert total > 2 * 48 * (train + infer + prep)
