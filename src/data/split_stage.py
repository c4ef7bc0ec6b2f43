"""The `split` stage (`python -m src split`): the common test set and samples 1 and 2 (train, validation) from the
runs of the project's manifest (data.out), with the picks of each part, written to split.out. The split itself is
src/data/split.py, which training reads too; this module is the stage around it."""

from __future__ import annotations

from pathlib import Path

from src.data.prepare import MANIFEST_NAME, read_manifest
from src.data.split import annotation_counts, make_split, write_split
from src.params import Params


def split_stage(p: Params) -> dict:
    """Split the runs of `p.data.out`'s manifest by `p.split` and write the split file `p.split.out`; returns it."""
    runs = read_manifest(Path(p.data.out) / MANIFEST_NAME)["runs"]
    result = make_split(sorted(runs), p.split)
    result["annotations"] = annotation_counts(result, {r: sum(v["picks"].values()) for r, v in runs.items()})
    write_split(p.split.out, result)
    return result
