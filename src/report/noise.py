"""Training noise: how far one run's test score moves when its training changes and its test set does not. Two kinds:

- Rounding noise, what `report compare` tolerates: the same seed, data and draws computed with other arithmetic (another
  thread count, instruction set or GPU) end in other weights, since training amplifies a last-bit difference. It is
  measured by the rerun block (train.reruns), runs of the study trained again with another thread count
  (`rerun_noise`). A faithful rerun on another machine differs from the committed study by exactly this.
- Seed noise, what the report's verdicts carry: another seed starts from other weights and draws other crops, so it
  moves a run further (`seed_noise`, from the configurations trained with two or more seeds). It is the fallback of
  `compare` for a committed study without a rerun block: conservative, so a broken rerun may pass.

Either is what a rerun is allowed to move: the rerun is scored on the same test tomograms, so the test-set part of
a cell's uncertainty is the same in both runs and cancels in their difference, and what is left is training noise, of
variance 2 sigma^2 per cell. The estimate comes with its degrees of freedom, because a sigma from a few runs is
itself uncertain: tolerances built on it use t quantiles with those degrees of freedom (`quantile`), so that a rerun
is not failed because the committed runs happened to lie close together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats


@dataclass(frozen=True)
class TrainingNoise:
    sigma: float  # SD of one run's test score around its configuration's mean, from training alone
    df: float  # degrees of freedom of `sigma`; math.inf when it is given as known
    low: float  # confidence interval of sigma at `level` (chi-square); both equal sigma when it is known
    high: float
    level: float
    configurations: int  # configurations with two or more seeds it is pooled over (0 when given)
    runs: int  # runs of those configurations


def pooled_sd(values: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, int]:
    """The pooled within-group SD of `values` along its last axis (leading axes are independent copies, e.g.
    simulations) and its degrees of freedom, the runs minus the groups; groups of one value add nothing."""
    values = np.asarray(values, dtype=float)
    _, codes = np.unique(np.asarray(groups), return_inverse=True)
    sizes = np.bincount(codes)
    onehot = np.eye(len(sizes))[codes]  # (runs, groups)
    means = values @ onehot / sizes
    squares = ((values - means @ onehot.T) ** 2).sum(axis=-1)
    df = int(sizes.sum() - len(sizes))
    return np.sqrt(squares / df) if df else np.full(squares.shape, np.nan), df


def interval(sigma: float, df: float, level: float) -> tuple[float, float]:
    """The chi-square confidence interval of an SD with `df` degrees of freedom (a point when df is infinite)."""
    if math.isinf(df):
        return sigma, sigma
    tail = (1 - level) / 2
    return sigma * math.sqrt(df / stats.chi2.isf(tail, df)), sigma * math.sqrt(df / stats.chi2.ppf(tail, df))


def seed_noise(runs: pd.DataFrame, level: float = 0.95, value: str = "fbeta") -> TrainingNoise | None:
    """Training noise from a runs frame (one row per run: its configuration in `cell`, its `seed` and `value`),
    pooled over the configurations with two or more seeds; None when there is none."""
    scored = runs.dropna(subset=[value])
    replicated = scored[scored.groupby("cell")["seed"].transform("nunique") >= 2]
    if replicated.empty:
        return None
    sigma, df = pooled_sd(replicated[value].to_numpy(float), replicated["cell"].to_numpy())
    low, high = interval(float(sigma), df, level)
    return TrainingNoise(float(sigma), df, low, high, level, int(replicated["cell"].nunique()), len(replicated))


def rerun_noise(
    runs: pd.DataFrame, reruns: pd.DataFrame, level: float = 0.95, value: str = "fbeta"
) -> TrainingNoise | None:
    """Rounding noise from the rerun block: each rerun (same configuration and seed, another thread count) against
    its run in `runs`. A pair's difference has variance 2 sigma^2, so sigma = sqrt(sum d^2 / 2n) with n degrees of
    freedom (the pairs' mean is 0 by design: neither arithmetic is the right one). None without a pair."""
    keys = ["cell", "seed"]
    paired = reruns.dropna(subset=[value]).merge(runs.dropna(subset=[value]), on=keys, suffixes=("_rerun", ""))
    if paired.empty:
        return None
    differences = paired[f"{value}_rerun"].to_numpy(float) - paired[value].to_numpy(float)
    n = len(differences)
    sigma = float(np.sqrt(np.sum(differences**2) / (2 * n)))
    low, high = interval(sigma, n, level)
    return TrainingNoise(sigma, n, low, high, level, int(paired["cell"].nunique()), n)


def given_noise(sigma: float, df: float = math.inf, level: float = 0.95) -> TrainingNoise:
    """Training noise measured elsewhere (e.g. two faithful reruns), known unless its degrees of freedom are given."""
    low, high = interval(sigma, df, level)
    return TrainingNoise(sigma, df, low, high, level, 0, 0)


def quantile(upper: float, df: float) -> float:
    """The value a statistic of t distribution with `df` degrees of freedom (normal when infinite) exceeds with
    probability `upper`: a difference divided by a sigma estimated with df degrees of freedom is t, not normal."""
    return float(stats.norm.isf(upper) if math.isinf(df) else stats.t.isf(upper, df))
