#!/usr/bin/env bash
# Real training cells at the paper's scale, on full-size synthetic tomograms, in a scratch workspace (a GPU job).
#
#   benchmarks/paper_scale_cells.sh WORKDIR EPOCHS CELL [CELL ...]
#   benchmarks/paper_scale_cells.sh /tmp/paper 3 unet-c16-p64-s1 unet_cbam-c32-p128-s1
#
# The workspace gets params.yaml switched to the paper profile (paper patch sizes, 26 steps per epoch), with the data
# swapped for 5 synthetic 184 x 630 x 630 tomograms (1 common test run; each sample 1 train + 1 validation run),
# EPOCHS epochs validated at the last one, and its own MLflow store. Each cell runs `python -m src train` exactly as
# DVC does; then each cell's seconds per epoch (every epoch, and the mean after the first, which carries the warm-up),
# inference seconds per tomogram and test score are printed from models/<cell>/history.json and metrics/<cell>.json.
# SYNTH_SHAPE=48,160,160 makes smaller tomograms (a quick check on a CPU).
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
python3 -m src data --workers 5
python3 -m src split
for cell in "$@"; do
    python3 -m src train --cell "$cell"
done
python3 - "$@" <<'EOF'
import json
import sys

for cell in sys.argv[1:]:
    history = json.load(open(f"models/{cell}/history.json"))
    metrics = json.load(open(f"metrics/{cell}.json"))
    epochs = [h["train_seconds"] for h in history]
    after_first = sum(epochs[1:]) / max(len(epochs) - 1, 1)
    print(
        f"{cell}: seconds per epoch {', '.join(f'{s:.1f}' for s in epochs)} (mean after the first {after_first:.1f}); "
        f"inference {metrics['inference_seconds_per_tomogram']:.1f} s per tomogram; test score {metrics['test_score']:.3f}"
    )
EOF
