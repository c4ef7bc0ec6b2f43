"""Did a rerun reproduce the committed study? Cell by cell, its score inside the committed score's test-tomogram
interval; conclusion by conclusion, the same verdict. Both sides are read from their metrics files alone, so a rerun
on another machine is checked from its metrics/ folder without its MLflow store."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from src.report import stats
from src.report.build import analysis, with_intervals
from src.report.runs import frame_from_metrics
from src.study import Study

FAMILIES = ("attention", "patch", "patch_steps", "channels")  # the F-beta conclusions whose verdicts must agree


@dataclass(frozen=True)
class CellCheck:
    cell: str
    committed: float
    low: float
    high: float
    rerun: float

    @property
    def inside(self) -> bool:
        return not math.isnan(self.rerun) and not math.isnan(self.low) and self.low <= self.rerun <= self.high

    @property
    def why(self) -> str:
        if math.isnan(self.committed):
            return "not in the committed study"
        if math.isnan(self.rerun):
            return "not in the rerun"
        if math.isnan(self.low):
            return "the committed metrics file has no per-tomogram counts, so no interval"
        return "inside" if self.inside else "outside"


@dataclass(frozen=True)
class VerdictCheck:
    comparison: str
    committed: str
    rerun: str

    @property
    def same(self) -> bool:
        return self.committed == self.rerun


@dataclass(frozen=True)
class Reproduction:
    cells: list[CellCheck]
    verdicts: list[VerdictCheck]

    @property
    def reproduced(self) -> bool:
        return bool(self.cells) and all(c.inside for c in self.cells) and all(v.same for v in self.verdicts)

    def to_markdown(self, decimals: int = 3, conf: str = "95") -> str:
        d = decimals

        def num(v: float) -> str:
            return "—" if math.isnan(v) else f"{v:.{d}f}"

        lines = [
            f"| Cell | committed | {conf} % interval (test tomograms) | rerun | rerun inside? |",
            "|---|---:|---|---:|---|",
        ]
        for c in self.cells:
            interval = "—" if math.isnan(c.low) else f"[{num(c.low)}, {num(c.high)}]"
            lines.append(f"| {c.cell} | {num(c.committed)} | {interval} | {num(c.rerun)} | {c.why} |")
        lines += ["", "| Conclusion | committed verdict | rerun verdict | same? |", "|---|---|---|---|"]
        for v in self.verdicts:
            lines.append(f"| {v.comparison} | {v.committed} | {v.rerun} | {'yes' if v.same else 'NO'} |")
        inside = sum(c.inside for c in self.cells)
        same = sum(v.same for v in self.verdicts)
        word = "REPRODUCED" if self.reproduced else "NOT REPRODUCED"
        lines += [
            "",
            f"{word}: {inside} of {len(self.cells)} cells inside the committed interval, "
            f"{same} of {len(self.verdicts)} verdicts the same.",
        ]
        return "\n".join(lines) + "\n"


def _label(c: stats.Paired) -> str:
    return f"{c.within}: {c.b} vs {c.a}" if c.within else f"{c.b} vs {c.a}"


def compare_studies(
    committed: str | Path, rerun: str | Path, report_params, study: Study, scoring: stats.Scoring
) -> Reproduction:
    """Every cell (configuration and seed) of either study, and every F-beta verdict of the conclusions."""
    s = stats.Settings.from_params(report_params)
    ours_runs, ours = with_intervals(frame_from_metrics(committed, study), scoring, s)
    their_runs, theirs = with_intervals(frame_from_metrics(rerun, study), scoring, s)
    committed_cells = ours_runs.set_index("run_cell")
    rerun_scores = their_runs.set_index("run_cell")["fbeta"]
    names = list(committed_cells.index) + [n for n in rerun_scores.index if n not in committed_cells.index]
    nan = float("nan")
    cells = []
    for name in names:
        row = committed_cells.loc[name] if name in committed_cells.index else None
        cells.append(
            CellCheck(
                name,
                nan if row is None else float(row["fbeta"]),
                nan if row is None else float(row["low"]),
                nan if row is None else float(row["high"]),
                float(rerun_scores.get(name, nan)),
            )
        )
    a, b = analysis(ours, study, s), analysis(theirs, study, s)
    verdicts = [
        VerdictCheck(_label(x), x.verdict, y.verdict)
        for family in FAMILIES
        for x, y in zip(a[family], b[family], strict=True)
    ]
    verdicts.append(VerdictCheck("ranking supported", str(a["best_supported"]), str(b["best_supported"])))
    return Reproduction(cells, verdicts)
