"""The CZII competition metric: a weighted, micro-averaged F-beta over particle classes.

This follows the Kaggle "CZII - CryoET Object Identification" scorer exactly, including its quirks:

- Matching is per (tomogram, class) with a match radius of `distance_multiplier` x the class radius (Angstrom).
  Every prediction collects every reference point within the radius (a distance equal to the radius counts).
- TP is the number of *distinct* reference points collected, FP = predictions - TP, FN = references - TP. This is
  not a one-to-one assignment: one prediction near two references gives TP=2 and FP=-1 (a negative FP is kept),
  and duplicate predictions of one reference are all FP but one.
- TP/FP/FN are summed over tomograms before precision, recall and F-beta are computed (micro average), so
  precision can exceed 1. Precision, recall and F-beta are 0 when their denominators are 0.
- Only the solution's experiments and the solution's particle types are scored; predictions for other experiments
  are dropped silently. The weighted sum of F-beta is divided by the sum of *all* class weights in the table,
  including classes absent from the solution.
- An unknown particle type (in the kept predictions or in the solution) is an error, and so are duplicated
  (experiment, x, y, z) rows in the solution (the Kaggle scorer asserts this).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial import KDTree

from src.classes import CZII_CLASSES, ParticleClass, by_name
from src.errors import DataError, UserError

COORDS = ["x", "y", "z"]  # Angstrom
DISTANCE_MULTIPLIER = 0.5  # the competition's match radius, as a fraction of the class radius
POINT_COLUMNS = ["experiment", "particle_type", *COORDS]  # a table of points: picks, predictions, CSVs


@dataclass
class ClassScore:
    """Counts and scores of one particle class, summed over all tomograms of the solution."""

    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    fbeta: float
    weight: float


@dataclass
class ScoreResult:
    """The weighted score and its per-class breakdown (classes in the order they first appear in the solution)."""

    score: float
    classes: dict[str, ClassScore] = field(default_factory=dict)
    beta: float = 4.0
    distance_multiplier: float = DISTANCE_MULTIPLIER
    # {experiment: {class: (tp, fp, fn)}} before the micro-average: what a bootstrap over tomograms resamples.
    per_tomogram: dict[str, dict[str, tuple[int, int, int]]] = field(default_factory=dict)

    def counts_by_tomogram(self) -> dict[str, dict[str, dict[str, int]]]:
        """`per_tomogram` as plain JSON: {experiment: {class: {"tp": .., "fp": .., "fn": ..}}}."""
        return {
            experiment: {name: dict(zip(("tp", "fp", "fn"), map(int, c), strict=True)) for name, c in by_class.items()}
            for experiment, by_class in self.per_tomogram.items()
        }

    def to_dict(self) -> dict:
        """Plain, JSON-serialisable python types: {"score": ..., "classes": {name: {tp, fp, fn, precision, ...}}}."""
        return {
            "score": float(self.score),
            "classes": {
                name: {
                    "tp": int(c.tp),
                    "fp": int(c.fp),
                    "fn": int(c.fn),
                    "precision": float(c.precision),
                    "recall": float(c.recall),
                    "fbeta": float(c.fbeta),
                }
                for name, c in self.classes.items()
            },
        }

    def to_text(self) -> str:
        """A human-readable table: one line per scored class, then the score."""
        fb = f"F{self.beta:g}"
        width = max([len("class"), *(len(name) for name in self.classes)])
        header = f"{'class':<{width}} {'TP':>6} {'FP':>6} {'FN':>6} {'precision':>9} {'recall':>7} {fb:>7}"
        lines = [f"{header} {'weight':>6}"]
        for name, c in self.classes.items():
            lines.append(
                f"{name:<{width}} {c.tp:>6d} {c.fp:>6d} {c.fn:>6d} {c.precision:>9.4f} {c.recall:>7.4f} "
                f"{c.fbeta:>7.4f} {c.weight:>6g}"
            )
        lines.append(f"score ({fb}, distance multiplier {self.distance_multiplier:g}): {self.score:.6f}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Matching:
    """Which points of one tomogram and class the scorer matched, point by point.

    `found[i]`: reference i is within the radius of some candidate (a TP; the others are FN). `reaching[j]`:
    candidate j is within the radius of some reference. FP is not a per-point fact: it is len(candidates) - TP, so
    a candidate reaching nothing is one FP, and so is each extra candidate on a reference another one already found.
    """

    found: np.ndarray
    reaching: np.ndarray

    def counts(self) -> tuple[int, int, int]:
        """(tp, fp, fn) as the Kaggle scorer counts them."""
        tp = int(self.found.sum())
        return tp, len(self.reaching) - tp, len(self.found) - tp


def match_points(reference: np.ndarray, candidates: np.ndarray, radius: float) -> Matching:
    """The scorer's matching of candidate points to reference points in one tomogram and class (both (n, 3)):
    every candidate collects every reference within `radius` (inclusive)."""
    found = np.zeros(len(reference), dtype=bool)
    reaching = np.zeros(len(candidates), dtype=bool)
    if len(reference) and len(candidates):
        hits = KDTree(candidates).query_ball_tree(KDTree(reference), r=radius)
        found[[ref for per_candidate in hits for ref in per_candidate]] = True
        reaching[:] = [bool(per_candidate) for per_candidate in hits]
    return Matching(found, reaching)


def match_counts(reference: np.ndarray, candidates: np.ndarray, radius: float) -> tuple[int, int, int]:
    """(tp, fp, fn) of candidate points against reference points in one tomogram and class, as the Kaggle scorer.

    Both arrays are (n, 3). TP counts distinct reference points within `radius` of any candidate (inclusive), so
    FP = len(candidates) - TP can be negative when one candidate covers several references.
    """
    return match_points(reference, candidates, radius).counts()


def fbeta_score(
    solution: pd.DataFrame,
    submission: pd.DataFrame,
    classes: tuple[ParticleClass, ...] = CZII_CLASSES,
    beta: float = 4.0,
    distance_multiplier: float = DISTANCE_MULTIPLIER,
) -> ScoreResult:
    """Score `submission` against `solution` (columns experiment, particle_type, x, y, z in Angstrom; `id` ignored)."""
    if not math.isfinite(beta):
        raise UserError(f"beta must be a finite number, got {beta}")
    if not (math.isfinite(distance_multiplier) and distance_multiplier >= 0):
        raise UserError(f"the distance multiplier must be a finite number >= 0, got {distance_multiplier}")
    table = by_name(classes)
    total_weight = sum(c.weight for c in classes)
    if total_weight <= 0:
        raise UserError("the class weights sum to 0, so no score can be computed; give some class a positive weight")
    solution = _checked_frame(solution, "solution")
    submission = _checked_frame(submission, "submission")

    unknown = sorted(set(solution["particle_type"].unique()) - table.keys())
    if unknown:
        raise UserError(f"the solution has particle type {unknown[0]!r}, which is not in the class table")
    duplicated = solution.duplicated(subset=["experiment", *COORDS])
    if duplicated.any():
        row = solution.loc[duplicated].iloc[0]
        raise UserError(
            f"the solution has duplicated rows at experiment {row['experiment']!r}, "
            f"(x, y, z) = ({row['x']}, {row['y']}, {row['z']})"
        )

    experiments = solution["experiment"].unique()
    # As in the Kaggle scorer, predictions for other experiments are dropped before the class check.
    submission = submission.loc[submission["experiment"].isin(experiments)]
    unknown = sorted(set(submission["particle_type"].unique()) - table.keys())
    if unknown:
        raise UserError(f"the submission has particle type {unknown[0]!r}, which is not in the class table")

    # Group each frame once; a (experiment, class) pair missing from a frame is an empty point set.
    ref_points = _points_by_group(solution)
    cand_points = _points_by_group(submission)
    empty = np.empty((0, 3))
    class_names = solution["particle_type"].unique()
    totals = {name: [0, 0, 0] for name in class_names}
    per_tomogram = {str(e): {str(name): (0, 0, 0) for name in class_names} for e in experiments}
    for experiment in experiments:
        for name in class_names:
            key = (experiment, name)
            if key not in ref_points and key not in cand_points:
                continue  # contributes (0, 0, 0)
            radius = distance_multiplier * table[name].radius
            counts = match_counts(ref_points.get(key, empty), cand_points.get(key, empty), radius)
            per_tomogram[str(experiment)][str(name)] = counts
            totals[name] = [t + c for t, c in zip(totals[name], counts, strict=True)]

    scores = {}
    weighted = 0.0
    for name in class_names:
        tp, fp, fn = totals[name]
        precision, recall, fbeta = (float(v) for v in class_fbeta(tp, fp, fn, beta))
        weight = table[name].weight
        scores[name] = ClassScore(int(tp), int(fp), int(fn), precision, recall, fbeta, weight)
        weighted += weight * fbeta
    return ScoreResult(weighted / total_weight, scores, beta, distance_multiplier, per_tomogram)


def class_fbeta(tp, fp, fn, beta: float = 4.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, F-beta) of summed counts, element-wise over arrays of any shape (the report's bootstrap
    scores thousands of resampled test sets at once). Each is 0 where its denominator is 0, as in the Kaggle scorer."""
    tp, fp, fn = (np.asarray(v, dtype=np.float64) for v in (tp, fp, fn))
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        b2 = beta**2
        fbeta = np.where(precision + recall > 0, (1 + b2) * precision * recall / (b2 * precision + recall), 0.0)
    return precision, recall, fbeta


def read_points_csv(path: str | Path) -> pd.DataFrame:
    """A solution or submission CSV as columns experiment, particle_type (str) and x, y, z (float64).

    Raises DataError naming the file and the problem (missing file, not CSV, missing column, bad coordinate row).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"points file {path} does not exist or is not a file")
    try:
        # All as strings so experiment names like "001" survive and "NA" is not read as missing. index_col=False
        # and the warning filter stop pandas from silently shifting columns when a row has too many fields.
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            raw = pd.read_csv(path, dtype=str, keep_default_na=False, index_col=False)
    except (pd.errors.ParserError, pd.errors.ParserWarning, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"points file {path} cannot be read as CSV ({reason})") from None
    raw.columns = [str(c).strip() for c in raw.columns]
    missing = [c for c in POINT_COLUMNS if c not in raw.columns]
    if missing:
        raise DataError(f"points file {path} lacks column(s) {', '.join(missing)}; it needs {', '.join(POINT_COLUMNS)}")

    out = pd.DataFrame({"experiment": raw["experiment"].astype(str), "particle_type": raw["particle_type"].astype(str)})
    for name in ["experiment", "particle_type"]:
        blank = out[name].str.strip() == ""
        if blank.any():
            raise DataError(f"points file {path} has an empty {name} in data row {_row_number(blank)}")
    for axis in COORDS:
        values = pd.to_numeric(raw[axis].str.strip(), errors="coerce").astype("float64")
        bad = ~np.isfinite(values.to_numpy())
        if bad.any():
            row = _row_number(bad)
            text = raw[axis].iloc[row - 1]
            raise DataError(f"points file {path} has a non-numeric or non-finite {axis} ({text!r}) in data row {row}")
        out[axis] = values
    return out


def _row_number(mask) -> int:
    """1-based data row (the header is not counted) of the first true entry of `mask`."""
    return int(np.flatnonzero(np.asarray(mask))[0]) + 1


def _checked_frame(frame: pd.DataFrame, what: str) -> pd.DataFrame:
    """Only the required columns, with str names and float64 coordinates; a UserError names what is wrong."""
    missing = [c for c in POINT_COLUMNS if c not in frame.columns]
    if missing:
        raise UserError(f"the {what} lacks column(s) {', '.join(missing)}")
    out = pd.DataFrame(
        {"experiment": frame["experiment"].astype(str), "particle_type": frame["particle_type"].astype(str)}
    )
    for axis in COORDS:
        try:
            out[axis] = frame[axis].astype("float64")
        except (TypeError, ValueError):
            raise UserError(f"the {what} has non-numeric {axis} coordinates") from None
    if not np.isfinite(out[COORDS].to_numpy()).all():
        raise UserError(f"the {what} has non-finite (NaN or infinite) coordinates")
    return out.reset_index(drop=True)


def _points_by_group(frame: pd.DataFrame) -> dict[tuple[str, str], np.ndarray]:
    """(experiment, particle_type) -> (n, 3) float64 coordinates, from one groupby pass."""
    if frame.empty:
        return {}
    coords = frame[COORDS].to_numpy(dtype=np.float64)
    groups = frame.groupby(["experiment", "particle_type"], sort=False).indices
    return {key: coords[rows] for key, rows in groups.items()}
