"""Did a rerun reproduce the committed study? Three levels, decided in this order:

1. exact: the same cells, and every cell's scores, counts, thresholds, best epoch and trained weights identical;
2. statistically reproduced: the rerun's grid mean and every attention model's effect are equivalent to the committed
   ones (TOST, within tolerances set by training noise), and no cell moved further than training noise moves a cell;
3. otherwise not reproduced, with what failed.

A rerun is scored on the same test tomograms as the committed study, so what moves a cell between two faithful runs
is training noise (`src.report.noise`): the difference of one cell has variance 2 sigma^2, with sigma pooled over the
committed study's replicate seeds. Each check's tolerance is set from sigma and the design so that a faithful rerun
fails it with a stated small probability, and these add up to at most 1 - acceptance over all checks. Each TOST's
one-sided tests are at level alpha, not alpha / 2: "statistically reproduced" needs every check to pass (an
intersection-union test), which is at level alpha as it is. The TOSTs' standard errors come from sigma and the design
too, and every quantile is a t quantile with sigma's degrees of freedom: sigma pooled over a few seeds is uncertain,
and taking it as known lets a faithful rerun fail far more often than stated (simulated, with 8 degrees of freedom:
accepted 81 % of the time instead of 95 %). With the margin (t at 1 - alpha + t at 1 - loss/2) x standard error, the
TOST passes exactly when the difference is within t at 1 - loss/2 standard errors.

Changed verdicts, changed agreement with the paper and estimates that changed sign are reported beside the level, as
information: they are thresholds on estimates that training noise moves, and the estimates themselves are checked.
Both studies are read from their metrics files alone, so a rerun on another machine is checked from its metrics/
folder without its MLflow store; the committed one can be read from a git revision instead (`committed_metrics`).
"""

from __future__ import annotations

import io
import json
import math
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from src.errors import UserError
from src.report import stats
from src.report.build import analysis, with_intervals
from src.report.noise import TrainingNoise, quantile, rerun_noise, seed_noise
from src.report.render import fmt_num, fmt_p, fmt_signed
from src.report.runs import frame_from_metrics, load_published, read_metrics_files, record_cell
from src.study import RERUNS, Study

# What a cell's training and evaluation produced. Durations, hardware, MLflow ids and paths are left out: they differ
# between two runs of the same computation.
EXACT_FIELDS = ("test_score", "test_fbeta", "test_counts", "thresholds", "best_epoch", "val_best_score")
WEIGHTS_HASH = "weights_sha256"  # absent from files written before training recorded it
FAMILIES = ("attention", "patch", "patch_steps", "channels")  # the F-beta comparisons whose conclusions are compared
SHOWN = 8  # cells named in one line before "..."


@dataclass(frozen=True)
class Criterion:
    alpha: float = 0.05  # level of each one-sided test of every TOST
    acceptance: float = 0.95  # a faithful rerun passes all checks with at least this probability

    def __post_init__(self):
        if not 0 < self.alpha < 0.5:
            raise UserError(f"--alpha {self.alpha} must lie between 0 and 0.5")
        if not 0 < self.acceptance < 1:
            raise UserError(f"--acceptance {self.acceptance} must lie between 0 and 1")


def _names(names, shown: int = SHOWN) -> str:
    names = list(names)
    return ", ".join(names[:shown]) + (f", ... ({len(names)} in all)" if len(names) > shown else "")


# --- level 1: exact ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExactCheck:
    cells: int  # cells of the committed study
    missing: tuple[str, ...]  # committed cells that are not in the rerun
    extra: tuple[str, ...]  # rerun cells that are not in the committed study
    differing: dict[str, tuple[str, ...]]  # cell -> the fields that differ
    without_hash: int  # committed cells without a weights hash: their weights were not compared

    @property
    def exact(self) -> bool:
        return not (self.missing or self.extra or self.differing)

    def line(self) -> str:
        hashes = (
            f"weights compared by hash for {self.cells - self.without_hash} of {self.cells} cells, "
            f"{self.without_hash} committed without a weights hash"
        )
        if self.exact:
            return f"exact: yes: all {self.cells} cells identical ({hashes})"
        why = []
        if self.differing:
            first = next(iter(self.differing.items()))
            why.append(f"{len(self.differing)} of {self.cells} cells differ (first: {first[0]}: {', '.join(first[1])})")
        if self.missing:
            why.append(f"{len(self.missing)} committed cells not in the rerun")
        if self.extra:
            why.append(f"{len(self.extra)} rerun cells not in the committed study")
        return f"exact: no: {'; '.join(why)} ({hashes})"


def _keyed(records: list[dict], study: Study) -> dict[str, dict]:
    """The metrics records by run name (configuration and seed, also for files written before seeds were named); the
    rerun block's as reruns/<run name>."""
    out = {}
    for record in records:
        cell, seed = record_cell(record, study)
        name = f"{record.get(BLOCK, '')}{cell.name}-r{seed}"
        if name in out:
            raise UserError(f"more than one metrics file for cell {name}")
        out[name] = record
    return out


BLOCK = "_block"  # set on a rerun-block record by `study_records`: its name's prefix


def study_records(folder: str | Path) -> list[dict]:
    """A study's metrics records: its cells', and its rerun block's (<folder>/reruns) if it has one."""
    records = read_metrics_files(folder)
    block = Path(folder) / RERUNS
    if any(block.glob("*.json")):
        records += [r | {BLOCK: f"{RERUNS}/"} for r in read_metrics_files(block)]
    return records


def _same(a, b) -> bool:
    # Both come from the same JSON serialisation, so equal values are equal text: floats compare exactly, NaN == NaN.
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def exact_check(committed: list[dict], rerun: list[dict], study: Study) -> ExactCheck:
    ours, theirs = _keyed(committed, study), _keyed(rerun, study)
    differing = {}
    for name in (n for n in ours if n in theirs):
        a, b = ours[name], theirs[name]
        fields = [f for f in EXACT_FIELDS if not _same(a.get(f), b.get(f))]
        if WEIGHTS_HASH in a and a[WEIGHTS_HASH] != b.get(WEIGHTS_HASH):
            fields.append(WEIGHTS_HASH)
        if fields:
            differing[name] = tuple(fields)
    return ExactCheck(
        len(ours),
        tuple(n for n in ours if n not in theirs),
        tuple(n for n in theirs if n not in ours),
        differing,
        sum(WEIGHTS_HASH not in r for r in ours.values()),
    )


# --- level 2: statistically reproduced --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tolerance:
    """One check's tolerance: multiplier x se x sigma, where se x sigma is the SD of the between-run difference it
    checks when the rerun is faithful."""

    check: str
    units: str  # what it is taken over, in words
    se: float  # SD of the difference, in units of sigma
    multiplier: float
    loss: float  # chance that a faithful rerun fails this check
    how: str  # the multiplier in words

    def value(self, sigma):
        return self.multiplier * self.se * sigma


@dataclass(frozen=True)
class Design:
    """The checks, fixed by which run cells the two studies share, the noise's degrees of freedom and the criterion:
    each TOST check's estimate is `differences @ contrasts[k]` (rerun minus committed of the paired cells)."""

    cells: tuple[str, ...]  # the paired run cells, in order
    contrasts: np.ndarray  # (checks, cells)
    tests: tuple[Tolerance, ...]  # one per row of contrasts
    cell_check: Tolerance
    ci_quantile: float  # t quantile of each TOST's one-sided tests (level alpha)
    df: float  # of sigma, and so of every t quantile here
    missing: tuple[str, ...] = ()  # committed cells not in the rerun
    extra: tuple[str, ...] = ()  # rerun cells not in the committed study


def run_names(runs: pd.DataFrame) -> list[str]:
    return [f"{c}-r{int(s)}" for c, s in zip(runs["cell"], runs["seed"], strict=True)]


def contrasts(paired: pd.DataFrame, study: Study) -> list[tuple[str, str, np.ndarray]]:
    """(check, units, weights over the rows of `paired`): the grid mean over configurations (seeds averaged), and each
    variant's effect, variant minus baseline, over the configurations where both have cells."""
    seeds = paired.groupby("cell")["cell"].transform("size").to_numpy(float)
    configurations = paired["cell"].nunique()
    out = [("grid mean", f"{configurations} configurations", 1 / (configurations * seeds))]
    where = paired[["channels", "patch", "sample"]].astype(str).agg("-".join, axis=1)
    models_at = paired.groupby(where)["model"].agg(set)
    model = paired["model"].to_numpy()
    for variant in study.variants:
        both = [k for k, models in models_at.items() if {variant, study.baseline} <= models]
        if not both:
            continue
        sign = (model == variant).astype(float) - (model == study.baseline)
        weights = where.isin(both).to_numpy() * sign / (len(both) * seeds)
        out.append((f"{variant} effect (vs {study.baseline})", f"{len(both)} matched configurations", weights))
    return out


def design(
    committed: pd.DataFrame, rerun: pd.DataFrame, study: Study, df: float, criterion: Criterion
) -> tuple[Design, np.ndarray, np.ndarray]:
    """The checks of `rerun` against `committed` (runs frames), and the rows of each that the paired cells are."""
    ours, theirs = run_names(committed), run_names(rerun)
    position, committed_names = {name: i for i, name in enumerate(theirs)}, set(ours)
    rows_c = np.array([i for i, name in enumerate(ours) if name in position], dtype=int)
    rows_r = np.array([position[ours[i]] for i in rows_c], dtype=int)
    cells = tuple(ours[i] for i in rows_c)
    if not cells:
        raise UserError(
            "the rerun and the committed study have no cell in common: is it the metrics folder of a rerun?"
        )
    found = contrasts(committed.iloc[rows_c].reset_index(drop=True), study)
    loss = (1 - criterion.acceptance) / (len(found) + 1)
    t_alpha = quantile(criterion.alpha, df)
    t_loss = quantile(loss / 2, df)
    dist = "z" if math.isinf(df) else f"t({df:g})"
    tests = tuple(
        Tolerance(
            name,
            units,
            math.sqrt(2 * float(np.sum(w**2))),
            t_alpha + t_loss,
            loss,
            f"{t_alpha + t_loss:.3f} = {t_alpha:.3f} ({dist} at 1 - alpha: each one-sided test of the TOST) + "
            f"{t_loss:.3f} ({dist} at 1 - {loss:.3g}/2: a faithful rerun's difference stays within it x its SD with "
            f"probability {1 - loss:.3g})",
        )
        for name, units, w in found
    )
    q = quantile(loss / (2 * len(cells)), df)
    cell_check = Tolerance(
        "every cell",
        f"{len(cells)} cells",
        math.sqrt(2),
        q,
        loss,
        f"{q:.3f} = {dist} at 1 - {loss:.3g}/(2 x {len(cells)}): Bonferroni over the cells, so that a faithful rerun "
        f"keeps every cell within it x sqrt(2) sigma with probability >= {1 - loss:.3g}",
    )
    built = Design(
        cells,
        np.array([w for *_, w in found]),
        tests,
        cell_check,
        t_alpha,
        df,
        tuple(n for n in ours if n not in position),
        tuple(n for n in theirs if n not in committed_names),
    )
    return built, rows_c, rows_r


@dataclass(frozen=True)
class Evaluation:
    """The checks on one or many (leading axes) pairs of studies."""

    differences: np.ndarray  # (..., cells) rerun minus committed
    estimates: np.ndarray  # (..., checks)
    se: np.ndarray  # (..., checks) SD of each estimate for a faithful rerun, from the estimated sigma
    margins: np.ndarray  # (..., checks)
    low: np.ndarray  # (..., checks) the 1 - 2 alpha interval of each estimate: the TOST passes when it is inside
    high: np.ndarray
    cell_tolerance: np.ndarray  # (...,)

    @property
    def tests_passed(self) -> np.ndarray:
        return (self.low > -self.margins) & (self.high < self.margins)

    @property
    def cells_passed(self) -> np.ndarray:
        return np.abs(self.differences) <= self.cell_tolerance[..., None]

    @property
    def passed(self) -> np.ndarray:
        return self.tests_passed.all(axis=-1) & self.cells_passed.all(axis=-1)


def evaluate(d: Design, committed: np.ndarray, rerun: np.ndarray, sigma) -> Evaluation:
    """Every check of `d` on scores of its paired cells (..., cells), with sigma (...) estimated for each."""
    sigma = np.asarray(sigma, dtype=float)
    differences = np.asarray(rerun, dtype=float) - np.asarray(committed, dtype=float)
    estimates = differences @ d.contrasts.T
    se = sigma[..., None] * np.array([t.se for t in d.tests])
    margins = sigma[..., None] * np.array([t.value(1.0) for t in d.tests])
    half = d.ci_quantile * se
    return Evaluation(
        differences, estimates, se, margins, estimates - half, estimates + half, d.cell_check.value(sigma)
    )


def tost_p(estimate: float, se: float, margin: float, df: float) -> float:
    """The larger p of the two one-sided tests of -margin < difference < margin."""
    dist = sps.norm if math.isinf(df) else sps.t(df)
    return float(max(dist.sf((estimate + margin) / se), dist.cdf((estimate - margin) / se)))


def training_noise(
    runs: pd.DataFrame, reruns: pd.DataFrame | None, given: TrainingNoise | None, level: float
) -> tuple[TrainingNoise, str]:
    """Sigma from the committed study's rerun block (rounding noise), else from its replicate seeds (seed noise,
    larger: a conservative tolerance), else the one given (--sigma), with where it came from."""
    unused = f"; --sigma {given.sigma:g} not used" if given is not None else ""
    rounding = rerun_noise(runs, reruns, level) if reruns is not None else None
    if rounding is not None and rounding.sigma > 0:
        where = (
            f"rounding noise from the committed study's rerun block: {rounding.runs} runs trained again with another "
            f"thread count (same seeds and data), sqrt(sum of squared differences / 2n){unused}"
        )
        return rounding, where
    measured = seed_noise(runs, level)
    if measured is not None and measured.sigma > 0:
        where = (
            f"pooled within-configuration SD of the committed study's test scores over its {measured.configurations} "
            f"configurations with two or more seeds ({measured.runs} runs): seed noise, larger than the rounding noise "
            f"a faithful rerun has, as the committed study has no rerun block (a broken rerun may pass){unused}"
        )
        return measured, where
    why = (
        "has no configuration with two or more seeds"
        if measured is None
        else "has replicate seeds that all score the same"
    )
    if given is not None:
        return given, f"--sigma (the committed study {why} and no rerun block)"
    raise UserError(
        f"the rerun is not an exact copy and the committed study {why} and no rerun block, so it holds no estimate of "
        "training noise: pass --sigma SD (one run's test-score SD between faithful reruns, measured elsewhere) or "
        "commit a rerun block"
    )


@dataclass(frozen=True)
class Statistical:
    noise: TrainingNoise
    source: str  # where sigma came from, in words
    criterion: Criterion
    design: Design
    committed: np.ndarray  # (cells,) scores of the paired cells
    rerun: np.ndarray
    result: Evaluation

    @property
    def reproduced(self) -> bool:
        return bool(self.result.passed) and not self.design.missing

    def failures(self, d: int) -> list[str]:
        r, out = self.result, []
        for k, test in enumerate(self.design.tests):
            if not r.tests_passed[k]:
                out.append(
                    f"{test.check}: rerun - committed {fmt_signed(r.estimates[k], d)}, its "
                    f"{self.interval_label} interval [{fmt_signed(r.low[k], d)}, {fmt_signed(r.high[k], d)}] is not "
                    f"inside +-{fmt_num(r.margins[k], d)}"
                )
        outside = [c for c, ok in zip(self.design.cells, r.cells_passed, strict=True) if not ok]
        if outside:
            out.append(f"{len(outside)} cells moved more than +-{fmt_num(r.cell_tolerance, d)}: {_names(outside)}")
        if self.design.missing:
            out.append(
                f"{len(self.design.missing)} committed cells are not in the rerun: {_names(self.design.missing)}"
            )
        return out

    @property
    def interval_label(self) -> str:
        return f"{100 * (1 - 2 * self.criterion.alpha):g} %"

    def rerun_sigma(self) -> float:
        """The training noise the rerun's differences imply (root mean square / sqrt 2), to set beside sigma."""
        return float(np.sqrt(np.mean(self.result.differences**2) / 2))

    def line(self) -> str:
        passed = int(self.result.tests_passed.sum())
        cells = int(self.result.cells_passed.sum())
        word = "yes" if self.reproduced else "no"
        return (
            f"statistically reproduced: {word}: {passed} of {len(self.design.tests)} equivalence tests pass and "
            f"{cells} of {len(self.design.cells)} cells lie within the training-noise tolerance"
            + (f"; {len(self.design.missing)} committed cells missing" if self.design.missing else "")
        )

    def to_markdown(self, d: int) -> list[str]:
        n, c, r = self.noise, self.criterion, self.result
        checks = len(self.design.tests) + 1
        known = math.isinf(n.df)
        spread = f"{n.df:g} degrees of freedom; {100 * n.level:g} % interval [{n.low:.4f}, {n.high:.4f}]"
        lines = [
            "## Training noise",
            "",
            f"sigma = {n.sigma:.4f} ({'taken as known' if known else spread}): {self.source}.",
            f"The rerun's cell differences imply {self.rerun_sigma():.4f} (root mean square / sqrt 2; information).",
            "",
            "## Equivalence checks",
            "",
            f"A faithful rerun passes all {checks} checks with probability >= {c.acceptance:g}: each may fail one with "
            f"probability {(1 - c.acceptance) / checks:.3g}. Between-run differences are paired by cell; a cell's "
            "difference has SD sqrt(2) sigma, the test tomograms being the same in both runs. Each TOST's one-sided "
            f"tests are at alpha = {c.alpha:g} (passes: its {self.interval_label} interval lies inside the tolerance).",
            "",
            f"| Check | over | rerun - committed | {self.interval_label} interval | TOST p | SD of the difference | "
            "tolerance | pass? |",
            "|---|---|---:|---|---:|---|---:|---|",
        ]
        for k, t in enumerate(self.design.tests):
            p = tost_p(float(r.estimates[k]), float(r.se[k]), float(r.margins[k]), self.design.df)
            lines.append(
                f"| {t.check} | {t.units} | {fmt_signed(r.estimates[k], d)} | [{fmt_signed(r.low[k], d)}, "
                f"{fmt_signed(r.high[k], d)}] | {fmt_p(p)} | {float(r.se[k]):.4f} = sigma x {t.se:.3f} | "
                f"+-{fmt_num(r.margins[k], d)} | {'yes' if r.tests_passed[k] else 'NO'} |"
            )
        worst = int(np.argmax(np.abs(r.differences)))
        t = self.design.cell_check
        lines += [
            f"| {t.check} | {t.units} | largest: {fmt_signed(r.differences[worst], d)} ({self.design.cells[worst]}) | "
            f"— | — | {math.sqrt(2) * n.sigma:.4f} = sigma x {t.se:.3f} | +-{fmt_num(r.cell_tolerance, d)} | "
            f"{'yes' if r.cells_passed.all() else 'NO'} |",
            "",
            "Tolerance = multiplier x SD of the difference for a faithful rerun, with multipliers:",
            *[f"- {how}" for how in dict.fromkeys(f"equivalence tests: {x.how}" for x in self.design.tests)],
            f"- cells: {t.how}",
        ]
        outside = [i for i, ok in enumerate(r.cells_passed) if not ok]
        if outside:
            lines += [
                "",
                "| Cell outside its tolerance | committed | rerun | rerun - committed |",
                "|---|---:|---:|---:|",
            ]
            for i in outside:
                lines.append(
                    f"| {self.design.cells[i]} | {fmt_num(self.committed[i], d)} | {fmt_num(self.rerun[i], d)} | "
                    f"{fmt_signed(r.differences[i], d)} |"
                )
        if self.design.extra:
            lines += ["", f"Not in the committed study, so not compared: {_names(self.design.extra)}."]
        return lines


def statistical_check(
    committed: pd.DataFrame, rerun: pd.DataFrame, study: Study, noise: TrainingNoise, source: str, c: Criterion
) -> Statistical:
    d, rows_c, rows_r = design(committed, rerun, study, noise.df, c)
    ours = committed["fbeta"].to_numpy(float)[rows_c]
    theirs = rerun["fbeta"].to_numpy(float)[rows_r]
    return Statistical(noise, source, c, d, ours, theirs, evaluate(d, ours, theirs, noise.sigma))


# --- information: conclusions that changed ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    comparison: str
    what: str  # "verdict", "against the paper", "sign of the estimate", "best model", ...
    committed: str
    rerun: str


def _label(c) -> str:
    within = getattr(c, "within", None)
    return f"{within}: {c.b} vs {c.a}" if within else f"{c.b} vs {c.a}"


def _key(c) -> tuple:
    return tuple(getattr(c, name, None) for name in ("value", "factor", "a", "b", "within"))


def _sign(value) -> int:
    return 0 if value is None or not math.isfinite(value) else int(np.sign(value))


def _changes_of(x, y, d: int) -> list[Change]:
    """What differs between one comparison in the two studies: its verdict, its agreement with the paper, the sign
    of its estimate."""
    out = []
    for attribute, what in (("verdict", "verdict"), ("vs_paper", "against the paper")):
        a, b = getattr(x, attribute, None), getattr(y, attribute, None)
        if a != b:
            out.append(Change(_label(x), what, str(a), str(b)))
    a, b = getattr(x, "mean_diff", None), getattr(y, "mean_diff", None)
    if _sign(a) * _sign(b) < 0:
        out.append(Change(_label(x), "sign of the estimate", fmt_signed(a, d), fmt_signed(b, d)))
    return out


def conclusion_changes(ours: pd.DataFrame, theirs: pd.DataFrame, study: Study, s: stats.Settings, d: int):
    """The conclusions of the two studies (configuration frames), each beside the paper's tables as the report sets
    them, and what changed between them. Comparisons are matched by what they compare, not by position."""
    paper = analysis(load_published(study), study, s)
    a, b = analysis(ours, study, s), analysis(theirs, study, s)
    out = []
    for family in FAMILIES:
        x = stats.against_paper(a.get(family, []), paper.get(family, []), s)
        y = {_key(c): c for c in stats.against_paper(b.get(family, []), paper.get(family, []), s)}
        for c in x:
            if _key(c) in y:
                out += _changes_of(c, y[_key(c)], d)
    best = [(r or {}).get("model") for r in (a.get("best"), b.get("best"))]
    if best[0] != best[1]:
        out.append(Change("model with the highest mean", "best model", str(best[0]), str(best[1])))
    if a.get("best_supported") != b.get("best_supported"):
        out.append(Change("ranking supported", "verdict", str(a.get("best_supported")), str(b.get("best_supported"))))
    return out


# --- the comparison -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    exact: ExactCheck
    statistical: Statistical | None = None  # not computed for an exact copy
    changes: list[Change] | None = None

    @property
    def level(self) -> str:
        if self.exact.exact:
            return "exact"
        return "statistically reproduced" if self.statistical.reproduced else "not reproduced"

    @property
    def exit_code(self) -> int:
        return 1 if self.level == "not reproduced" else 0

    def to_markdown(self, d: int = 3) -> str:
        lines = [f"Level: {self.level}", "", f"- {self.exact.line()}"]
        if self.statistical is None:
            lines.append("- statistically reproduced: yes, as an exact copy (every difference is 0)")
            return "\n".join(lines) + "\n"
        lines.append(f"- {self.statistical.line()}")
        failures = self.statistical.failures(d)
        if failures:
            lines.append("- not reproduced:")
            lines += [f"  - {f}" for f in failures]
        lines += ["", *self.statistical.to_markdown(d), "", *self._changes_markdown()]
        return "\n".join(lines) + "\n"

    def _changes_markdown(self) -> list[str]:
        lines = ["## Changed conclusions (information, not part of the level)", ""]
        if not self.changes:
            return [*lines, "No verdict, agreement with the paper, sign of an estimate or best model changed."]
        lines += ["| Comparison | what changed | committed | rerun |", "|---|---|---|---|"]
        return lines + [f"| {c.comparison} | {c.what} | {c.committed} | {c.rerun} |" for c in self.changes]


def compare_studies(
    committed: str | Path,
    rerun: str | Path,
    report_params,
    study: Study,
    scoring: stats.Scoring,
    criterion: Criterion | None = None,
    sigma: TrainingNoise | None = None,
) -> Comparison:
    """The level a rerun reached: exact from the metrics files' fields; else the statistical checks with sigma from
    the committed study's replicate seeds (`sigma`, from --sigma, only when it has none), and the conclusions that
    changed."""
    exact = exact_check(study_records(committed), study_records(rerun), study)
    if exact.exact:
        return Comparison(exact)
    s = stats.Settings.from_params(report_params)
    ours_runs, theirs_runs = frame_from_metrics(committed, study), frame_from_metrics(rerun, study)
    block = Path(committed) / RERUNS
    reruns = frame_from_metrics(block, study) if any(block.glob("*.json")) else None
    noise, source = training_noise(ours_runs, reruns, sigma, s.confidence)
    checked = statistical_check(ours_runs, theirs_runs, study, noise, source, criterion or Criterion())
    _, ours = with_intervals(ours_runs, scoring, s)
    _, theirs = with_intervals(theirs_runs, scoring, s)
    return Comparison(exact, checked, conclusion_changes(ours, theirs, study, s, report_params.decimals))


# --- the committed study from a git revision ------------------------------------------------------------------------


def _git(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False)
    except FileNotFoundError:
        raise UserError("--committed-rev needs git, which is not installed") from None


@contextmanager
def committed_metrics(folder: str | Path, rev: str | None) -> Iterator[Path]:
    """The committed study's metrics folder: `folder` itself, or with `rev` its files at that git revision, written
    to a temporary folder for as long as the context lasts (a clone's `dvc repro` rewrites the working copy's)."""
    if rev is None:
        yield Path(folder)
        return
    top = _git(["rev-parse", "--show-toplevel"])
    if top.returncode:
        raise UserError(f"--committed-rev {rev}: {Path.cwd()} is not inside a git repository")
    root = Path(top.stdout.decode().strip())
    path = (Path.cwd() / folder).resolve()
    if not path.is_relative_to(root.resolve()):
        raise UserError(f"--committed-rev {rev}: the metrics folder {folder} is outside the repository {root}")
    inside = path.relative_to(root.resolve()).as_posix()
    archive = _git(["archive", "--format=tar", f"{rev}:{inside}" if inside != "." else rev], cwd=root)
    if archive.returncode:
        message = archive.stderr.decode().strip().splitlines()
        why = message[-1] if message else f"git archive exited with {archive.returncode}"
        raise UserError(f"cannot read {inside}/ at git revision {rev} ({why})")
    with tempfile.TemporaryDirectory(prefix="committed-metrics-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(tmp, filter="data")
        if not any(Path(tmp).glob("*.json")):
            raise UserError(f"{inside}/ at git revision {rev} holds no cell metrics (*.json)")
        yield Path(tmp)
