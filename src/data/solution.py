"""The solution (reference) CSV of a set of runs (`python -m src solution`): their picks as the metric reads them,
id,experiment,particle_type,x,y,z in Angstrom."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from src.atomic import atomic_output
from src.data.copick_io import CopickProject
from src.data.split import read_split
from src.errors import UserError
from src.params import Params


def split_part_runs(split: dict, part: str) -> list[str]:
    """The runs of a split part: test, or <sample>/<train|val> (1/train, 2/val, ...)."""
    if part == "test":
        return split["test"]
    sample, _, name = part.partition("/")
    try:
        return split["samples"][sample][name]
    except KeyError:
        raise UserError(f"--split must be test or <1|2>/<train|val>, got '{part}'") from None


def solution_frame(proj: CopickProject, p: Params, names: list[str]) -> pd.DataFrame:
    """The picks of runs `names`, numbered from 0 in an id column."""
    shapes = [proj.volume_shape(r, p.data.tomo_type, proj.folder_spacing(r, None, p.data.voxel_spacing)) for r in names]
    frame = pd.concat([proj.picks(r, shape) for r, shape in zip(names, shapes, strict=True)], ignore_index=True)
    frame.insert(0, "id", range(len(frame)))
    return frame


def write_solution(
    project: Path, out: Path, p: Params, runs: list[str] | None = None, split_part: str | None = None
) -> tuple[int, int]:
    """Write the solution CSV `out` of PROJECT's runs: those of split part `split_part` of the split file
    (p.split.out), else `runs`, else all; returns (points, runs)."""
    proj = CopickProject(project, p.classes.weights, p.data.picks_user)
    names = proj.run_names()
    if split_part:
        names = split_part_runs(read_split(p.split.out), split_part)
    elif runs:
        names = runs
    frame = solution_frame(proj, p, names)
    with atomic_output(out) as tmp:
        frame.to_csv(tmp, index=False)
    return len(frame), len(names)
