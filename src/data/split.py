"""The study's split: one common test set plus two independent samples, each with train and validation runs.

The paper splits 79 tomograms into 35 + 35 (samples 1 and 2) + 9 (common test set). The runs are shuffled with a
fixed seed, so the same project and params give the same split file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from src.atomic import atomic_output
from src.errors import UserError
from src.fields import OBJECT, TEXT, field, list_of, read_object
from src.params import SplitParams

SAMPLES = ("1", "2")


def make_split(runs: list[str], params: SplitParams) -> dict:
    """{"test": [...], "samples": {"1": {"train": [...], "val": [...]}, "2": {...}}, "unused": [...]}."""
    needed = params.test_runs + len(SAMPLES) * params.runs_per_sample
    if len(runs) < needed:
        raise UserError(
            f"the split needs {needed} runs ({params.test_runs} test + {len(SAMPLES)} x {params.runs_per_sample}), "
            f"but the project has {len(runs)}; lower split.test_runs or split.runs_per_sample"
        )
    n_val = int(round(params.val_fraction * params.runs_per_sample))
    if not 1 <= n_val < params.runs_per_sample:
        raise UserError(
            f"split.val_fraction {params.val_fraction} of {params.runs_per_sample} runs leaves no train or no "
            "validation run"
        )
    order = [str(r) for r in np.random.default_rng(params.seed).permutation(sorted(runs))]
    test, rest = order[: params.test_runs], order[params.test_runs :]
    samples = {}
    for i, sample in enumerate(SAMPLES):
        runs_i = rest[i * params.runs_per_sample : (i + 1) * params.runs_per_sample]
        samples[sample] = {"train": sorted(runs_i[n_val:]), "val": sorted(runs_i[:n_val])}
    return {"test": sorted(test), "samples": samples, "unused": sorted(rest[len(SAMPLES) * params.runs_per_sample :])}


def annotation_counts(split: dict, picks_per_run: dict[str, int]) -> dict:
    """Picks per part of the split, as the paper reports (e.g. sample 1: 4282 train / 1339 validation)."""
    counts = {"test": sum(picks_per_run[r] for r in split["test"])}
    for sample, parts in split["samples"].items():
        counts[sample] = {part: sum(picks_per_run[r] for r in runs) for part, runs in parts.items()}
    return counts


def write_split(path: str | Path, split: dict) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(split, indent=2) + "\n")


def read_split(path: str | Path) -> dict:
    """The split file, checked: a list of run names for the test set and for each sample's train and val parts (a
    DataError names the file and the field)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} not found: run `dvc repro split` first")
    split = read_object(path, "a split file (python -m src split writes it)")
    field(split, "test", list_of(TEXT), path)
    samples = field(split, "samples", OBJECT, path)
    for sample in SAMPLES:
        parts = field(samples, sample, OBJECT, path, prefix="samples.")
        for part in ("train", "val"):
            field(parts, part, list_of(TEXT), path, prefix=f"samples.{sample}.")
    return split
