"""The study's vocabulary in one place: its models (attention, display name, colour), channel and patch keys with the
paper's sizes, samples, and the grid of cells named like `unet_se-c16-p128-s1`.

Everything is read from the `study:` section of params.yaml, which dvc.yaml's `matrix` reads too, so the DVC grid, the
training cells, the model factory, the report and its figures cannot disagree. Adding a model is one entry there (and,
for a new kind of attention, a block registered in `src/models/attention.py`).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from src.errors import UserError
from src.params import Params, ReplicateParams, RerunParams, StudyParams, TrainParams

RERUNS = "reruns"  # the rerun block's subfolder of the models and metrics folders: not part of the study's grid


def size_label(sizes: Sequence[int], sep: str = "x") -> str:
    """A size tuple as people write it: (32, 64, 64) -> "32x64x64"; channels use sep="-"."""
    return sep.join(str(int(s)) for s in sizes)


@dataclass(frozen=True)
class Cell:
    """One training run of the grid: (model, channel config, patch size, sample), each a study key, and its seed.
    Replicates of one configuration differ only in the seed: unet_se-c16-p128-s1-r0, unet_se-c16-p128-s1-r1."""

    model: str
    channels: str  # e.g. "c16"
    patch: str  # e.g. "p128"
    sample: str  # e.g. "s1"
    seed: int = 0
    replicate: bool = field(default=False, compare=False)  # a seed of train.replicates, not of train.seeds
    rerun_threads: int = 0  # > 0: this run recomputed with that many threads (the rerun block, train.reruns)

    @property
    def name(self) -> str:
        """The configuration, without the seed: what replicates share and the report pairs, e.g. unet_se-c16-p128-s1."""
        return f"{self.model}-{self.channels}-{self.patch}-{self.sample}"

    @property
    def run_name(self) -> str:
        """This replicate: its model folder, metrics file and MLflow run, e.g. unet_se-c16-p128-s1-r0."""
        return f"{self.name}-r{self.seed}"

    @property
    def stage(self) -> str:
        """Its DVC stage: dvc.yaml's matrix names it by the seed's value (train@unet_se-c16-p128-s1-0); a seed of the
        replicate block is a stage of its own matrix (replicate@unet_se-c16-p64-s1-1), and so is the rerun block."""
        matrix = "rerun" if self.rerun_threads else "replicate" if self.replicate else "train"
        return f"{matrix}@{self.name}-{self.seed}"

    @property
    def mlflow_name(self) -> str:
        """Its MLflow run's name: the run name, and for the rerun block its thread count (unet-c16-p64-s1-r0-t1)."""
        return f"{self.run_name}-t{self.rerun_threads}" if self.rerun_threads else self.run_name

    @property
    def sample_number(self) -> str:
        """The sample's name in data/splits.json ("1" for s1)."""
        return self.sample[1:]


def _setting(name: str, doc: str) -> property:
    return property(lambda self: getattr(self.settings, name), doc=doc)


@dataclass(frozen=True)
class Study:
    """The grid of params.yaml's checked settings (src/params.py holds every rule on them, and this copies none): the
    `study:` section, and train's seeds and its replicate and rerun blocks (without train: seed 0, no blocks)."""

    settings: StudyParams
    train: TrainParams | None = None

    baseline = _setting("baseline", "The model every attention variant is compared against.")
    models = _setting("models", "Model key -> its attention block, label and colour.")
    channels = _setting("channels", "Channel key -> feature channels per level.")
    patches = _setting("patches", "Patch key -> the paper's patch size D, H, W.")
    samples = _setting("samples", "The samples of the split, s<number>.")

    @classmethod
    def from_params(cls, params: Params | StudyParams) -> Study:
        return cls(params.study, params.train) if isinstance(params, Params) else cls(params)

    @property
    def seeds(self) -> tuple[int, ...]:
        """train.seeds: every configuration trains once per seed."""
        return self.train.seeds if self.train else (0,)

    @property
    def replicates(self) -> ReplicateParams | None:
        """train.replicates, if it has seeds: more seeds of a block of configurations."""
        return self.train.replicates if self.train and self.train.replicates.seeds else None

    @property
    def reruns(self) -> RerunParams | None:
        """train.reruns, if it has seeds: runs of the study trained again with another thread count."""
        return self.train.reruns if self.train and self.train.reruns.seeds else None

    def axes(self) -> dict[str, tuple[str, ...]]:
        """The grid's four axes, in cell-name order."""
        return {
            "models": tuple(self.models),
            "channels": tuple(self.channels),
            "patches": tuple(self.patches),
            "samples": self.samples,
        }

    @property
    def model_keys(self) -> tuple[str, ...]:
        return tuple(self.models)

    @property
    def variants(self) -> tuple[str, ...]:
        """The models compared against the baseline."""
        return tuple(m for m in self.models if m != self.baseline)

    @property
    def channel_keys(self) -> tuple[str, ...]:
        return tuple(self.channels)

    @property
    def patch_keys(self) -> tuple[str, ...]:
        return tuple(self.patches)

    def cell(self, model: str, channels: str, patch: str, sample: str, seed: int | None = None) -> Cell:
        """The cell of these keys and seed (default: the first of train.seeds); a key or seed the study does not have
        is an error."""
        for value, (kind, allowed) in zip((model, channels, patch, sample), self.axes().items(), strict=True):
            if value not in allowed:
                raise UserError(f"'{value}' is not one of the study's {kind}: {', '.join(allowed)}")
        if seed is None:
            seed = self.seeds[0]
        if seed in self.seeds:
            return Cell(model, channels, patch, sample, seed)
        if self.replicates and self.replicates.holds(channels, patch, sample, seed):
            return Cell(model, channels, patch, sample, seed, replicate=True)
        block = f" (nor a seed of train.replicates for {channels}-{patch}-{sample})" if self.replicates else ""
        raise UserError(f"seed {seed} is not one of train.seeds: {', '.join(map(str, self.seeds))}{block}")

    def parse(self, name: str) -> Cell:
        """A cell from its name, e.g. `unet_se-c16-p128-s1-r0`; without `-r<seed>` it is the first seed's."""
        parts = name.split("-")
        seed = None
        if len(parts) == 5 and re.fullmatch(r"r\d+", parts[-1]):
            seed = int(parts.pop()[1:])
        if len(parts) != 4:
            raise UserError(
                f"'{name}' is not a cell name like {self.cells()[0].run_name} (model-channels-patch-sample-r<seed>)"
            )
        return self.cell(*parts, seed=seed)

    def cells(self) -> list[Cell]:
        """Every cell of the grid, in the paper's table order (sample, model, channels, patch), then by seed; the
        replicate block's cells follow their configuration's."""
        extra = self.replicates
        return [
            cell
            for s in self.samples
            for m in self.models
            for c in self.channels
            for p in self.patches
            for cell in [Cell(m, c, p, s, r) for r in self.seeds]
            + ([Cell(m, c, p, s, r, replicate=True) for r in extra.seeds] if extra and extra.holds(c, p, s) else [])
        ]

    def rerun_cells(self) -> list[Cell]:
        """The rerun block: each a cell of `cells()` with the block's thread count, in the same order."""
        r = self.reruns
        if r is None:
            return []
        return [
            dataclasses.replace(c, rerun_threads=r.threads)
            for c in self.cells()
            if r.holds(c.channels, c.patch, c.sample, c.seed)
        ]

    def rerun_of(self, cell: Cell) -> Cell:
        """`cell` as the rerun block trains it; a cell outside the block is an error."""
        found = [c for c in self.rerun_cells() if c == dataclasses.replace(cell, rerun_threads=c.rerun_threads)]
        if not found:
            held = ", ".join(c.run_name for c in self.rerun_cells()) or "none (train.reruns.seeds is empty)"
            raise UserError(f"{cell.run_name} is not in the rerun block (train.reruns): it holds {held}")
        return found[0]

    def configurations(self) -> list[Cell]:
        """Every configuration of the grid once (its first seed's cell), in the paper's table order: what the report
        pairs after averaging seeds."""
        return [c for c in self.cells() if c.seed == self.seeds[0]]

    def label(self, model: str) -> str:
        return self.models[model].label if model in self.models else model

    def color(self, model: str) -> str | None:
        return self.models[model].color if model in self.models else None

    def trained_patch(self, patch: str, scale: Sequence[float], divisor: int = 1) -> tuple[int, int, int]:
        """The patch a cell of key `patch` trains: `scale` x the paper's size, each side a whole multiple of
        `divisor` (the network's total stride)."""
        paper = self.patches[patch]
        sizes = tuple(s * f for s, f in zip(paper, scale, strict=True))
        if any(not math.isclose(v, round(v)) or round(v) <= 0 or round(v) % divisor for v in sizes):
            raise UserError(
                f"train.patch_scale {list(scale)} makes patch {patch} ({size_label(paper)}) "
                f"{'x'.join(f'{v:g}' for v in sizes)}: each side must be a positive whole multiple of {divisor}"
            )
        return tuple(int(round(v)) for v in sizes)
