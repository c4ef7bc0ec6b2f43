"""Does the synthetic data make the same classes easy and hard as the real CZII data?

Trains ONE fixed configuration on a fresh synthetic project until its validation score stops rising (or a time
budget ends), then prints the test F4 per class beside a strong real-data model's and the rank order of the classes.

    python benchmarks/synth_calibration.py                      # the fixed configuration, 30-minute budget (2 cores)
    python benchmarks/synth_calibration.py --minutes 5 --runs 8 # a quick look
    python benchmarks/synth_calibration.py --set imaging.snr=0.05 --set particles.protein_density=0.7

The fixed configuration: model unet (the study's baseline) with channels c16, patch 32 x 64 x 64 (deeper than the
largest particle, the VLP, 27 voxels across), Tversky loss and Adam 1e-3 from params.yaml, batch 1, epochs of
`--steps` patches, validated every `--val-every` epochs; training stops after `--patience` validations without a new
best. Data: `--runs` synthetic tomograms of `--shape` with the current `synth:` params (plus any `--set`), split into
`--test` test runs, one validation run per 4 training runs. It runs through the training cell's own steps
(src/training/train.py: setup_cell, fit_epoch, validate, select_and_tune, evaluate_test_set).

Target (issue "A default study that learns"): apo-ferritin, ribosome and VLP each >= 0.8 and above both hard classes
(thyroglobulin, beta-galactosidase); beta-amylase the lowest.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from src.data.prepare import prepare_data  # noqa: E402
from src.data.split import write_split  # noqa: E402
from src.params import parse_params  # noqa: E402
from src.study import Cell  # noqa: E402
from src.training.train import evaluate_test_set, fit_epoch, select_and_tune, setup_cell, validate  # noqa: E402

# The first-place CZII solution re-trained by the challenge hosts (F4 on the experimental data, ensemble of 3).
REAL = {
    "apo-ferritin": 0.917,
    "beta-amylase": 0.473,
    "beta-galactosidase": 0.666,
    "ribosome": 0.923,
    "thyroglobulin": 0.654,
    "virus-like-particle": 0.938,
}
EASY = ("apo-ferritin", "ribosome", "virus-like-particle")
HARD = ("thyroglobulin", "beta-galactosidase")


def _set(raw: dict, assignment: str) -> None:
    """`a.b.c=value` into raw["synth"]["a"]["b"]["c"] (value parsed as YAML)."""
    key, _, value = assignment.partition("=")
    node = raw["synth"]
    *parents, leaf = key.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = yaml.safe_load(value)


CALIBRATION_SPACING = 10.012444  # Angstrom, the CZII tomograms' (folder VoxelSpacing10.000)
CALIBRATION_COUNT_SCALE = 6.0  # particles x the volume-scaled paper counts, as when the defaults were calibrated


def calibration_params(workdir: Path, args) -> dict:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["data"].update(source="synthetic", copick_config=None, out=str(workdir / "project"))
    raw["synth"].update(runs=args.runs, shape=[int(v) for v in args.shape.split(",")], seed=args.seed)
    # Calibrated at the real data's own spacing and packing, whatever the demo profile bins to: the class order is a
    # property of the data at 10 A (the demo's 20 A binning makes apo-ferritin 3 voxels in radius).
    raw["synth"].update(voxel_spacing=CALIBRATION_SPACING, picks_naming="copick")
    raw["synth"]["placement"]["count_scale"] = CALIBRATION_COUNT_SCALE
    raw["data"]["voxel_spacing"] = 10.0
    for assignment in args.set:
        _set(raw, assignment)
    raw["split"]["out"] = str(workdir / "splits.json")
    raw["study"]["patches"]["p64"] = [32, 64, 64]
    raw["train"].update(
        patch_scale=[1.0, 1.0, 1.0],
        steps_per_epoch=args.steps,
        models_dir=str(workdir / "models"),
        metrics_dir=str(workdir / "metrics"),
    )
    return raw


def fixed_split(runs: list[str], test: int) -> dict:
    """Test runs first; of the rest, one validation run per 4 training runs (at least one)."""
    test_runs, rest = runs[:test], runs[test:]
    n_val = max(1, len(rest) // 5)
    part = {"train": rest[n_val:], "val": rest[:n_val]}
    return {"test": test_runs, "samples": {"1": part, "2": part}, "unused": []}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=12, help="synthetic tomograms (default 12: 4 test, 7 train, 1 val)")
    ap.add_argument("--test", type=int, default=4, help="of them, test runs")
    ap.add_argument("--shape", default="64,192,192", help="z,y,x voxels of each tomogram")
    ap.add_argument("--seed", type=int, default=1, help="synthetic data seed")
    ap.add_argument("--steps", type=int, default=40, help="patches per epoch")
    ap.add_argument("--val-every", type=int, default=2, help="validate every k epochs")
    ap.add_argument("--patience", type=int, default=3, help="stop after this many validations without a new best")
    ap.add_argument("--minutes", type=float, default=30.0, help="time budget for training (validation included)")
    ap.add_argument("--set", action="append", default=[], help="override a synth param: a.b=value (repeatable)")
    args = ap.parse_args()

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.environ.setdefault("CRYOET_MLRUNS", str(work / "mlruns"))
        raw = calibration_params(work, args)
        params = parse_params(raw)
        manifest = prepare_data(params, progress=False)
        runs = sorted(manifest["runs"])
        write_split(params.split.out, fixed_split(runs, args.test))
        made = time.perf_counter() - start
        session = setup_cell(Cell("unet", "c16", "p64", "s1"), params)
        best, since_best, epoch, history = -1.0, 0, 0, []
        while since_best < args.patience and time.perf_counter() - start < 60 * args.minutes:
            record = fit_epoch(session, epoch)
            epoch += 1
            if epoch % args.val_every == 0:
                val = validate(session, epoch - 1)
                history.append((epoch, record["train_loss"], val.score))
                print(f"epoch {epoch:3d}  loss {record['train_loss']:.4f}  validation F4 {val.score:.3f}", flush=True)
                best, since_best = (val.score, 0) if val.score > best else (best, since_best + 1)
        select_and_tune(session)
        test, _ = evaluate_test_set(session)
        counts = {c: sum(manifest["runs"][r]["picks"][c] for r in session.split["test"]) for c in REAL}

    s = params.synth
    print()
    print(
        f"data: {args.runs} synthetic tomograms of {args.shape} (seed {args.seed}), made in {made:.0f} s; test runs "
        f"{args.test}; particles: mass-scaled (protein density {s.particles.protein_density} Da/A^3), "
        f"snr {s.imaging.snr}, lookalikes {s.distractors.lookalikes}; overrides: {args.set or 'none'}"
    )
    print(
        f"model: unet c16, patch 32x64x64, {args.steps} patches per epoch, {epoch} epochs, best validation F4 "
        f"{best:.3f}, {(time.perf_counter() - start) / 60:.1f} min in all"
    )
    print()
    print(f"{'class':<20} {'synthetic F4':>12} {'real F4':>8} {'test particles':>15}")
    for name, real in REAL.items():
        print(f"{name:<20} {test.classes[name].fbeta:>12.3f} {real:>8.3f} {counts[name]:>15d}")
    print(f"{'weighted score':<20} {test.score:>12.3f} {0.774:>8.3f}")
    synthetic = {n: test.classes[n].fbeta for n in REAL}
    order = sorted(REAL, key=lambda n: -synthetic[n])
    print()
    print("synthetic order: " + " > ".join(order))
    print("real order:      " + " > ".join(sorted(REAL, key=lambda n: -REAL[n])))
    easy_ok = all(synthetic[e] >= 0.8 and synthetic[e] > max(synthetic[h] for h in HARD) for e in EASY)
    amylase_last = order[-1] == "beta-amylase"
    print(f"target met: easy classes >= 0.8 and above the hard ones: {easy_ok}; beta-amylase lowest: {amylase_last}")


if __name__ == "__main__":
    main()
