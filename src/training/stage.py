"""The `train` command (DVC stages train@, replicate@ and rerun@ run it): which cell, whether it may be written here,
then training it. The command line only parses its options and calls `train_command`."""

from __future__ import annotations

import os
from pathlib import Path

from src import repro
from src.errors import UserError
from src.params import Params
from src.study import Cell, Study
from src.training.paths import CellPaths

DVC_LOCK = "dvc.lock"


def train_command(
    p: Params,
    *,
    cell: str | None,
    model: str | None,
    channels: str | None,
    patch: str | None,
    sample: str | None,
    seed: int | None,
    rerun: bool,
    resume: bool,
    force: bool,
    device: str | None,
) -> dict:
    """Train the cell named by `cell` or by its keys (the command's options, one to one); the record written to
    metrics/<cell>.json. The cheap checks come before torch loads."""
    study = Study.from_params(p)
    chosen = choose_cell(study, cell, model, channels, patch, sample, seed)
    if rerun:
        chosen = study.rerun_of(chosen)
    if not force:
        refuse_committed_cell(chosen, p.train)
    if rerun:
        repro.use_threads(chosen.rerun_threads)  # before torch computes anything
    from src.training.train import train_cell  # torch: after the cheap checks

    return train_cell(chosen, p, resume=resume, force=force, device=device)


def choose_cell(study: Study, cell, model, channels, patch, sample, seed) -> Cell:
    """The cell a `--cell NAME` or the `--model/--channels/--patch/--sample[/--seed]` options name."""
    if cell is not None:
        if any(v is not None for v in (model, channels, patch, sample, seed)):
            raise UserError("give either --cell or --model/--channels/--patch/--sample/--seed, not both")
        return study.parse(cell)
    if None in (model, channels, patch, sample):
        raise UserError("give --cell NAME, or all of --model, --channels, --patch and --sample")
    return study.cell(model, channels, patch, sample, seed)


def refuse_committed_cell(cell: Cell, t) -> None:
    """A one-off `train` must not overwrite the committed study: refuse a cell whose outputs dvc.lock records unless
    DVC runs it (DVC sets DVC_STAGE for every stage command; the grid driver's jobs too). Reads only, before any
    write."""
    lock = Path(DVC_LOCK)
    if os.environ.get("DVC_STAGE") or not lock.is_file():
        return
    try:
        text = lock.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(
            f"cannot read {lock} to check whether {cell.run_name} is committed ({err}); give --force to train it anyway"
        ) from None
    if cell.run_name not in text:  # no stage names its outputs: no need to parse the whole file
        return
    import yaml

    try:
        stages = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)).get("stages") or {}
        recorded = {
            (lock.parent / out["path"]).resolve(): name
            for name, stage in stages.items()
            for out in stage.get("outs", [])
        }
    except (yaml.YAMLError, AttributeError, KeyError, TypeError) as err:
        raise UserError(
            f"{lock} is not a DVC lock file ({type(err).__name__}); give --force to train {cell.run_name} anyway"
        ) from None
    for path in CellPaths.of(cell, t).outputs:
        stage = recorded.get(path.resolve())
        if stage is not None:
            raise UserError(
                f"{cell.run_name} is part of the committed study ({lock} records {path} as an output of {stage}), "
                f"so training it here would overwrite it: retrain it with `dvc repro {stage}`, try it in a scratch "
                "workspace (`python -m src workspace tour`, then run this command inside tour/), or give --force to "
                "overwrite it"
            )
