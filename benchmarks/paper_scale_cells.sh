#!/usr/bin/env bash
# Real training cells at the paper's scale, on full-size synthetic tomograms, in a scratch workspace (a GPU job, or a
# CPU proof that the profile runs end to end).
#
#   benchmarks/paper_scale_cells.sh WORKDIR EPOCHS CELL [CELL ...]
#   benchmarks/paper_scale_cells.sh /tmp/paper 3 unet-c16-p64-s1 unet_cbam-c32-p128-s1
#
# The workspace gets params.yaml switched to the paper profile (paper patch sizes, 26 steps per epoch of one tomogram x
# 16 crops), with the data
# swapped for 5 synthetic 184 x 630 x 630 tomograms (1 common test run; each sample 1 train + 1 validation run),
# EPOCHS epochs validated at the last one, and its own MLflow store. Each cell runs `python -m src train` exactly as
# DVC does; then each cell's seconds per epoch (every epoch, and the mean after the first, which carries the warm-up),
# seconds per step, each validation's seconds and score, inference seconds per test tomogram, peak memory and test score
# are printed from models/<cell>/history.json and metrics/<cell>.json.
# SYNTH_SHAPE=48,160,160 makes smaller tomograms (a quick check); SYNTH_WORKERS=2 synthesises 2 at a time (default 5,
# about 3 GB each); TRAIN_DEVICE=cpu|cuda|cuda:N is passed to `train --device`.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$1
epochs=$2
shift 2
mkdir -p "$work"
cp "$repo/params.yaml" "$work/"
cp -r "$repo/profiles" "$work/"
cd "$work"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" CRYOET_MLRUNS="$work/mlruns"
python3 -m src profile paper
python3 - "$epochs" "${SYNTH_SHAPE:-184,630,630}" <<'EOF'
import sys

import yaml

raw = yaml.safe_load(open("params.yaml"))
raw["data"]["source"] = "synthetic"
raw["synth"]["runs"] = 5
raw["synth"]["shape"] = [int(v) for v in sys.argv[2].split(",")]
raw["split"].update(test_runs=1, runs_per_sample=2, val_fraction=0.5)
raw["train"].update(epochs=int(sys.argv[1]), val_every=int(sys.argv[1]))
yaml.safe_dump(raw, open("params.yaml", "w"), sort_keys=False)
EOF
python3 -m src data --workers "${SYNTH_WORKERS:-5}"
python3 -m src split
for cell in "$@"; do
    python3 -m src train --cell "$cell" ${TRAIN_DEVICE:+--device "$TRAIN_DEVICE"}
done
python3 - "$@" <<'EOF'
import json
import re
import sys

import yaml

train = yaml.safe_load(open("params.yaml"))["train"]
for cell in sys.argv[1:]:
    cell = cell if re.search(r"-r\d+$", cell) else f"{cell}-r0"  # a configuration name: its first seed's run
    history = json.load(open(f"models/{cell}/history.json"))
    metrics = json.load(open(f"metrics/{cell}.json"))
    epochs = [h["train_seconds"] for h in history]
    after_first = sum(epochs[1:]) / max(len(epochs) - 1, 1)
    validations = [(h["epoch"], h["val_seconds"], h["val_score"]) for h in history if "val_seconds" in h]
    print(
        f"{cell}: seconds per epoch {', '.join(f'{s:.1f}' for s in epochs)} (mean after the first {after_first:.1f}, "
        f"{after_first / train['steps_per_epoch']:.2f} s per step of {train['batch_size'] * train['crops_per_volume']} "
        f"crops); validation {', '.join(f'epoch {e}: {s:.1f} s, F4 {v:.3f}' for e, s, v in validations)}; "
        f"inference {metrics['inference_seconds_per_tomogram']:.1f} s per test tomogram; "
        f"peak RSS {metrics.get('peak_rss_mb', float('nan')):.0f} MB, GPU {metrics.get('peak_gpu_mb', 0):.0f} MB; "
        f"training {metrics['train_minutes']:.1f} min of which validation {metrics.get('validation_minutes', 0):.1f}; "
        f"test score {metrics['test_score']:.3f} (best validation {metrics['val_best_score']:.3f} at epoch "
        f"{metrics['best_epoch']})"
    )
EOF
