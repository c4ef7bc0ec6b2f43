"""dvc.cells.yaml: the grid's training stages as dvc.yaml loops over them, written from params.yaml.

dvc.yaml's `train`, `replicate` and `rerun` stages each loop (`foreach`) over one table of this file, so that a stage
can name its own model's attention block as a dep (`src/models/blocks/<attention>.py`): a DVC matrix cannot look up
a value by its item, and a dep on the whole blocks folder would retrain every model when one block changes. The
tables are the matrices DVC would expand (same stage names, same order), plus each cell's attention.

`python -m src cells` writes the file after an edit of params.yaml's `study` or `train.seeds/replicates/reruns`; the
report stage and `grid` refuse a file that is not params.yaml's grid, and tests check the committed one.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from src.atomic import atomic_output
from src.errors import UserError
from src.params import Params

CELLS_FILE = Path("dvc.cells.yaml")
HEADER = "# Written by `python -m src cells` from params.yaml (study, train.seeds/replicates/reruns): do not edit.\n"


def _table(p: Params, channels, patches, samples, seeds) -> dict[str, dict]:
    """One stage's cells in the order a DVC matrix over model, channels, patch, sample and seed expands them."""
    return {
        f"{model}-{c}-{patch}-{s}-{seed}": {
            "model": model,
            "channels": c,
            "patch": patch,
            "sample": s,
            "seed": seed,
            "attention": entry.attention,
        }
        for model, entry in p.study.models.items()
        for c in channels
        for patch in patches
        for s in samples
        for seed in seeds
    }


def cell_tables(p: Params) -> dict[str, dict[str, dict[str, dict]]]:
    """The file's content: under `cells`, a table per training stage (train, replicate, rerun) keyed by the stage's
    item name (train@unet-c16-p64-s1-0 is `train`'s unet-c16-p64-s1-0)."""
    s, rep, again = p.study, p.train.replicates, p.train.reruns
    return {
        "cells": {
            "train": _table(p, list(s.channels), list(s.patches), s.samples, p.train.seeds),
            "replicate": _table(p, rep.channels, rep.patches, rep.samples, rep.seeds),
            "rerun": _table(p, again.channels, again.patches, again.samples, again.seeds),
        }
    }


def write_cells(p: Params, path: Path = CELLS_FILE) -> int:
    """Write the file (atomically); returns the number of cells in it."""
    tables = cell_tables(p)
    with atomic_output(path) as tmp:
        tmp.write_text(HEADER + yaml.safe_dump(tables, sort_keys=False, width=120))
    return sum(len(t) for t in tables["cells"].values())


def check_cells(p: Params, path: Path = CELLS_FILE) -> None:
    """Refuse a cells file that is not params.yaml's grid (missing, or written before an edit of params.yaml). A folder
    without dvc.yaml (a workspace, not the pipeline) has no stages to check."""
    if not path.with_name("dvc.yaml").is_file():
        return
    if not path.is_file():
        raise UserError(f"{path} is missing: run `python -m src cells` to write the grid's stages from params.yaml")
    if yaml.safe_load(path.read_text()) != cell_tables(p):  # as tables: an order change moves only the run order
        raise UserError(
            f"{path} is not params.yaml's grid (written before an edit of study or train seeds): "
            "run `python -m src cells`, then `dvc repro`"
        )
