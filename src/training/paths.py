"""Where a cell writes (light: no torch), so that the `train` command can check its outputs before training loads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from src.study import RERUNS, Cell
from src.tracking import run_export_path


@dataclass(frozen=True)
class CellPaths:
    """Where a cell writes: its final model folder, its in-progress folder, its metrics file and that file's MLflow
    run export (from params)."""

    final: Path
    partial: Path
    metrics: Path

    @classmethod
    def of(cls, cell: Cell, t) -> CellPaths:
        models, metrics = Path(t.models_dir), Path(t.metrics_dir)
        if cell.rerun_threads:  # apart from the grid: the report and the grid's readers do not see it
            models, metrics = models / RERUNS, metrics / RERUNS
        name = cell.run_name
        return cls(models / name, models / f".{name}.partial", metrics / f"{name}.json")

    @property
    def export(self) -> Path:
        return run_export_path(self.metrics)

    @property
    def outputs(self) -> list[Path]:
        """The cell's DVC outputs: model folder, metrics file, MLflow run export."""
        return [self.final, self.metrics, self.export]
