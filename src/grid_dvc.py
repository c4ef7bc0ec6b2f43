"""What the grid driver keeps of DVC: the stages `dvc repro` trains (train@, replicate@ and rerun@), which of them are
stale (one pass over dvc.yaml), the hashes a stage had when its job was submitted, and the record of a finished cell
in dvc.lock (`dvc commit`), made only if those hashes still hold.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from src.errors import UserError
from src.grid_state import DONE, STALE, CellJob
from src.study import Cell, Study


def cells_named(study: Study, names: Sequence[str]) -> list[Cell]:
    """The cells `names` give, each a cell (unet-c16-p64-s1-r0; of the rerun block unet-c16-p64-s1-r0-t1), a DVC stage
    (rerun@unet-c16-p64-s1-0) or a configuration (all its stages); none: every stage `dvc repro` trains (the grid, the
    replicate block and the rerun block)."""
    every = study.cells() + study.rerun_cells()
    known = {c.mlflow_name: [c] for c in every} | {c.stage: [c] for c in every}
    chosen = {}
    for name in names:
        for cell in known.get(name) or [c for c in every if c.name == name] or [study.parse(name)]:
            chosen.setdefault(cell.stage, cell)
    return list(chosen.values()) if names else every


@dataclass(frozen=True)
class Survey:
    """A cell's stage as DVC sees it now."""

    stale: bool  # its deps, params, command or outputs differ from dvc.lock (`dvc status` less its cache check)
    command: str
    fingerprint: list  # planning a stale one: the hashes of its deps and its params' values, as dvc.lock records
    metrics: list[Path]  # its metrics files (a cell's, under metrics/ or metrics/reruns/)


def survey(root: Path, cells: Sequence[Cell], planning: bool = False) -> dict[str, Survey]:
    """The cells' stages by name, in one pass over dvc.yaml (per cell it takes seconds). `planning` jobs: refuse while
    a stage they depend on (data, split) is not up to date, for jobs do not run those, and take the fingerprints."""
    with open_repo(root) as repo:
        stages = stages_of(repo, cells)
        if planning and stages:
            check_upstream(repo, next(iter(stages.values())))  # the cells share their upstream stages
        with repo.lock:
            stale = {name for name, stage in stages.items() if stage.changed()}
        found = {}
        for name, stage in stages.items():
            metrics = [Path(out.fs_path) for out in stage.outs if out.metric]
            fingerprint = stage_fingerprint(stage) if planning and name in stale else []
            found[name] = Survey(name in stale, stage.cmd, fingerprint, metrics)
        return found


def open_repo(root: Path):
    from dvc.repo import Repo

    return Repo(str(root))


def stages_of(repo, cells: Sequence[Cell]) -> dict:
    """The DVC stage of each cell, by its name (train@, replicate@ or rerun@<configuration>-<seed>)."""
    stages = {s.addressing: s for s in repo.index.stages}
    missing = [c.stage for c in cells if c.stage not in stages]
    if missing:
        raise UserError(f"dvc.yaml has no stage {missing[0]}: is the cell in params.yaml's study and train.seeds?")
    return {c.stage: stages[c.stage] for c in cells}


def stage_fingerprint(stage) -> list:
    """The hashes of a stage's deps and the values of its params, as DVC computes them for dvc.lock."""
    stage.save_deps()
    return [[str(dep), json.dumps(dep.hash_info.value, sort_keys=True, default=str)] for dep in stage.deps]


def check_upstream(repo, stage) -> None:
    """The stages a cell's stage depends on (data, split) must be up to date: jobs do not run them."""
    changed = sorted(set(repo.status(targets=[stage.addressing], with_deps=True)) - {stage.addressing})
    if changed:
        raise UserError(f"stage {', '.join(changed)} is not up to date: run `dvc repro {changed[-1]}` first")


def commit_stage(root: Path, cell: CellJob) -> str:
    """`dvc commit` of a finished cell if its stage is unchanged since submission: DONE, else STALE."""
    with open_repo(root) as repo:
        if stage_fingerprint(repo.stage.collect(cell.stage)[0]) != cell.fingerprint:
            cell.message = "its code, data or params changed while it ran: not recorded; `dvc repro` will re-run it"
            return STALE
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})  # DVC rewrites dvc.lock in
        try:  # place: a signal waits until it is whole
            repo.commit(cell.stage, force=True)  # forced: no prompt; the check above is what makes it safe
        except Exception as err:  # DVC's errors (an output missing, a full disk): this cell, not the whole grid
            cell.message = f"finished but `dvc commit {cell.stage}` failed ({type(err).__name__}: {err})"
            return STALE
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
    return DONE


def outputs_since(root: Path, cell: CellJob) -> bool:
    """Whether every output of the cell's stage was written after its job started (train publishes by rename)."""
    with open_repo(root) as repo:
        outs = [Path(out.fs_path) for out in repo.stage.collect(cell.stage)[0].outs]
    return all(p.exists() and p.stat().st_mtime >= (cell.started or float("inf")) for p in outs)
