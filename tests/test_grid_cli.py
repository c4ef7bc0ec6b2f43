"""`grid run --help` and `grid status --help` in the house style of tests/test_cli.py: params' values shown with their
keys, choices as <a|b>, click's plain layout, and the key named where params.yaml does not load."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import REPO


def _help(*args: str, cwd: Path = REPO) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "src", "grid", *args, "--help"], cwd=cwd, env=env, capture_output=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.decode()


def _flat(text: str) -> str:
    return " ".join(text.split())  # click wraps help at the terminal's width


def test_grid_help_shows_params_values_and_their_keys():
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    slurm, threads = raw["grid"]["slurm"], raw["repro"]["cpu_threads"]
    run = _help("run")
    assert run.startswith("Usage: python -m src grid run [OPTIONS] [cells]...") and not re.search("[╭│─]", run)
    run = _flat(run)
    assert "--executor <local|slurm>" in run and "[default: local]" in run
    assert f"[default: {slurm['time']}, from params: grid.slurm.time]" in run
    assert f"[default: {slurm['mem']}, from params: grid.slurm.mem]" in run
    assert f"[default: {slurm['cpus_per_task']}, from params: grid.slurm.cpus_per_task]" in run
    partition = slurm["partition"] or "the cluster's"
    assert f"[default: {partition}, from params: grid.slurm.partition]" in run
    gpus = f"[default: none locally, {slurm['gpus_per_task']} per SLURM job, from params: grid.slurm.gpus_per_task]"
    assert gpus in run and f"[default: --gpus, else cores // {threads}, from params: repro.cpu_threads]" in run
    every = "[default: every train@, replicate@ and rerun@ stage, as dvc repro]"
    assert every in run and every in _flat(_help("status")) and "grid.log_dir" in _flat(_help("status"))


def test_grid_help_without_params_names_the_keys(tmp_path):
    (tmp_path / "params.yaml").write_text("grid: [unclosed\n")
    run = _flat(_help("run", cwd=tmp_path))
    for key in ("grid.slurm.time", "grid.slurm.mem", "grid.slurm.gpus_per_task", "repro.cpu_threads"):
        assert f"[from params: {key}]" in run
