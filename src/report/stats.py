"""Statistics of the grid: pure functions of DataFrames (no I/O).

A cell's own uncertainty comes from its test set: `tomogram_draws` resamples the test tomograms with replacement and
recomputes the micro-averaged F-beta from the logged per-tomogram TP/FP/FN; every cell of a sample is scored on the
SAME resampled tomograms in each draw, so differences between cells are paired on the test set too. Seeds of one
configuration are averaged (`configurations`) before configurations are paired.

A comparison pairs two levels of one factor (model, patch or channels) over the configurations where both were run,
e.g. unet_se vs unet over channels x patch x sample. Differences are always `b - a` (the variant minus the reference).
Its uncertainty carries every source of noise the runs hold: `hierarchical_draws` resamples the configurations (the
pairs), then the seeds within a configuration where there are several, then the test tomograms (the shared index
matrix of `tomogram_draws`). The verdict reads the hierarchical bootstrap's standard error: within a family of m
comparisons its interval is the simultaneous mean +- t(1 - alpha/(2m), n - 1) SE (Bonferroni), and its p-value is the
matching t p-value times m, so the interval excludes 0 exactly when the verdict says better or worse. Equivalence is
the intersection-union test (TOST): both one-sided tests at the family's per-comparison level alpha/m; where it fails,
`certifiable_margin` is the narrowest margin the pairs could certify. The paired t-test over configurations only, the
Wilcoxon test, Cohen's dz and the bootstrap intervals over configurations and over test tomograms alone are kept for
reference; `mixed_model` fits the whole grid at once (runs as observations) and is set beside the bootstrap.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, stats

from src.study import Study

NAN = float("nan")


@dataclass(frozen=True)
class Settings:
    alpha: float = 0.05
    confidence: float = 0.95
    min_pairs: int = 2
    bootstrap_resamples: int = 9999
    bootstrap_method: str = "percentile"
    bootstrap_seed: int = 0
    equivalence_margin: float = 0.02
    power: float = 0.8

    @classmethod
    def from_params(cls, report) -> Settings:
        names = [f.name for f in dataclasses.fields(cls)]
        return cls(**{n: getattr(report, n) for n in names})


@dataclass(frozen=True)
class ClassShare:
    """One class's part of a comparison's F-beta difference: the score is sum_c weight_c F_c / total weight, so the
    mean difference splits into `contribution` = weight / total x (mean per-class difference `diff`)."""

    name: str
    weight: float
    diff: float  # mean difference of the class's own F-beta, b - a
    contribution: float  # its part of the score's difference (F-beta units)
    share: float  # percent of the sum of the contributions (the shares of a comparison add up to 100)


@dataclass(frozen=True)
class Paired:
    """One paired comparison `b - a` of `value` over the matched configurations."""

    value: str  # column compared, e.g. "fbeta" or "train_minutes"
    factor: str  # "model", "patch" or "channels"
    a: str  # reference level, e.g. "unet"
    b: str  # compared level, e.g. "unet_se"
    within: str | None  # the model a patch or channel comparison is made within
    n: int  # matched pairs
    mean_a: float = NAN
    mean_b: float = NAN
    mean_diff: float = NAN
    ci_low: float = NAN  # t interval of the mean difference (configurations only)
    ci_high: float = NAN
    t: float = NAN
    p_t: float = NAN
    p_wilcoxon: float = NAN
    dz: float = NAN  # Cohen's dz: mean difference / sd of differences
    boot_low: float = NAN  # paired bootstrap interval of the mean difference (resampling configurations)
    boot_high: float = NAN
    tomo_low: float = NAN  # interval of the mean difference resampling test tomograms (same draws for a and b)
    tomo_high: float = NAN
    layers: tuple[str, ...] = ()  # what the hierarchical bootstrap resampled: configurations, seeds, test tomograms
    hier_se: float = NAN  # standard error of the mean difference: sd of the hierarchical bootstrap's draws
    hier_low: float = NAN  # percentile interval of the hierarchical bootstrap at the confidence level (unadjusted)
    hier_high: float = NAN
    sd: float = NAN  # sd of the paired differences
    m: int = 1  # computed comparisons in the family (the Bonferroni factor)
    adj_low: float = NAN  # the verdict's interval: mean +- t(1 - alpha/(2m), n - 1) x hier_se (simultaneous)
    adj_high: float = NAN
    p_adj: float = NAN  # its p-value (t on hier_se), Bonferroni-adjusted: below alpha exactly when it excludes 0
    cfg_low: float = NAN  # Bonferroni simultaneous t interval over configurations only (the spread of the pairs)
    cfg_high: float = NAN
    p_cfg: float = NAN  # p_t, Bonferroni-adjusted (configurations only)
    p_holm: float = NAN  # p_t, Holm-adjusted within its family (shown for reference)
    p_tost: float = NAN  # TOST p of |b - a| < margin: both one-sided tests on hier_se, x m (intersection-union)
    margin_min: float = NAN  # narrowest margin TOST could certify here: |mean| + t(1 - alpha/m, n - 1) x hier_se
    margin_floor: float = NAN  # the same at a mean difference of 0: the best these pairs could ever certify
    mdd: float = NAN  # smallest difference the verdict's test detects with the chosen power (level alpha/m, hier_se)
    reason: str | None = None  # why the statistics cannot be computed (None when they are)
    verdict: str = "cannot be computed"
    paper_diff: float = NAN  # the same comparison's mean difference on the paper's tables
    paper_low: float = NAN  # ... and its verdict interval there (the same method on the paper's tables)
    paper_high: float = NAN
    gap: float = NAN  # ours - paper
    gap_low: float = NAN  # its interval, both uncertainties combined (Welch), at the family's level
    gap_high: float = NAN
    vs_paper: str | None = None  # CONSISTENT (the gap's interval contains 0), DIFFERS, or None
    mixed_diff: float = NAN  # the mixed model's effect for the same comparison (model effects only)
    mixed_low: float = NAN  # its interval at the family's level (Bonferroni over the model effects)
    mixed_high: float = NAN
    vs_mixed: str | None = None  # "agree" (both intervals say the same about 0), "disagree", or None
    classes: tuple[ClassShare, ...] = ()  # the classes' parts of an F-beta difference

    @property
    def percent(self) -> float:
        """Mean difference as a percentage of the reference level's mean over the same pairs."""
        return 100.0 * self.mean_diff / self.mean_a if self.mean_a else NAN

    @property
    def computed(self) -> bool:
        return self.reason is None


INCONCLUSIVE = "inconclusive"
EQUIVALENT = "equivalent within the margin"
CONSISTENT = "consistent with"
DIFFERS = "differs from"
CONFIGURATIONS, SEEDS, TOMOGRAMS = "configurations", "seeds", "test tomograms"  # the hierarchical bootstrap's layers


def verdict(c: Paired, s: Settings, higher: str, lower: str, equivalence: bool = True) -> str:
    """The words for a comparison, all read at the family's Bonferroni level: `higher` / `lower` when the adjusted
    (hierarchical) interval excludes 0, else "equivalent within the margin" when TOST says |difference| < margin
    (F-beta only), else "inconclusive"."""
    if not c.computed or any(math.isnan(v) for v in (c.p_adj, c.adj_low, c.adj_high)):
        return "cannot be computed"
    if c.p_adj < s.alpha and c.adj_low > 0:
        return higher
    if c.p_adj < s.alpha and c.adj_high < 0:
        return lower
    if equivalence and c.p_tost < s.alpha:
        return EQUIVALENT
    return INCONCLUSIVE


def t_interval(mean: float, sd: float, n: int, level: float) -> tuple[float, float]:
    """Two-sided t interval of a mean of n values at confidence `level`."""
    half = stats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
    return mean - half, mean + half


def tost(mean: float, se: float, df: float, margin: float) -> float:
    """p of the two one-sided t-tests of -margin < difference < margin for an estimate `mean` with standard error
    `se` on `df` degrees of freedom: the larger of the two. Equivalence at level alpha is p < alpha (the
    intersection-union test: each one-sided test at alpha, not alpha / 2)."""
    p_low = stats.t.sf((mean + margin) / se, df)  # H0: difference <= -margin
    p_high = stats.t.cdf((mean - margin) / se, df)  # H0: difference >= +margin
    return float(max(p_low, p_high))


def tost_paired(mean: float, sd: float, n: int, margin: float) -> float:
    """`tost` of a mean of n paired differences of standard deviation `sd`."""
    return tost(mean, sd / math.sqrt(n), n - 1, margin)


def certifiable_margin(mean: float, se: float, df: float, alpha: float) -> float:
    """The narrowest margin whose TOST (each one-sided test at `alpha`) rejects for this estimate: |mean| +
    t(1 - alpha, df) x se. A margin at least this wide is certified, a narrower one is not."""
    return abs(mean) + float(stats.t.ppf(1 - alpha, df)) * se


def detectable_difference(sd: float, n: int, alpha: float, power: float) -> float:
    """The smallest true mean difference a two-sided paired t-test at level `alpha` on n pairs detects with
    probability `power`, for differences of standard deviation `sd` (noncentral t)."""
    df = n - 1
    crit = stats.t.ppf(1 - alpha / 2, df)

    def shortfall(delta: float) -> float:
        nc = delta * math.sqrt(n) / sd
        # the far tail is NaN in scipy once it underflows; it is 0 there
        return stats.nct.sf(crit, df, nc) + np.nan_to_num(stats.nct.cdf(-crit, df, nc)) - power

    high = sd
    while shortfall(high) < 0:
        high *= 2
    return float(optimize.brentq(shortfall, 0.0, high, xtol=1e-12))


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjustment; NaN entries stay NaN and do not count towards the number of tests."""
    finite = [(p, i) for i, p in enumerate(pvalues) if not math.isnan(p)]
    m = len(finite)
    adjusted = [NAN] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(finite)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def matched_pairs(df: pd.DataFrame, value: str, factor: str, a: str, b: str, keys: list[str]) -> pd.DataFrame:
    """Columns a and b of `value`, one row per configuration (`keys`) where both levels were run."""
    sub = df[df[factor].isin([a, b])].dropna(subset=[value])
    wide = sub.pivot(index=keys, columns=factor, values=value)
    for level in (a, b):
        if level not in wide:
            wide[level] = np.nan
    return wide[[a, b]].dropna()


def tomogram_interval(df: pd.DataFrame, factor: str, a: str, b: str, keys: list[str], s: Settings):
    """Interval of the mean `b - a` over the matched configurations when the test tomograms are resampled: each
    draw scores both levels on the same resampled tomograms (`draws` column, see `tomogram_draws`). NaN when any
    matched configuration has no draws (its metrics file has no per-tomogram counts)."""
    if "draws" not in df:
        return NAN, NAN
    wide = matched_pairs(df.assign(_row=np.arange(len(df))), "_row", factor, a, b, keys)
    draws = df["draws"].to_numpy()
    pairs = [(draws[int(ra)], draws[int(rb)]) for ra, rb in zip(wide[a], wide[b], strict=True)]
    if not pairs or any(not isinstance(x, np.ndarray) for pair in pairs for x in pair):
        return NAN, NAN
    mean = np.mean([db - da for da, db in pairs], axis=0)
    tail = 100 * (1 - s.confidence) / 2
    low, high = np.percentile(mean, [tail, 100 - tail])
    return float(low), float(high)


def _seed_rows(row, value: str, tomograms: bool) -> np.ndarray:
    """One configuration's runs as an array (seed, draw): each seed's tomogram draws (`seed_draws`), or its own
    score as one column when the test tomograms are not resampled; one row (the configuration's value) for a frame
    without per-seed values (the paper's tables)."""
    if tomograms:
        return np.asarray(row["seed_draws"], dtype=np.float64)
    per_seed = row.get("seed_values")
    values = np.asarray(per_seed.get(value, ()), dtype=np.float64) if isinstance(per_seed, dict) else np.empty(0)
    values = values[~np.isnan(values)]
    if not len(values):
        values = np.array([row[value]], dtype=np.float64)
    return values[:, None]


def _resample_seeds(sides: list[np.ndarray], picks: np.ndarray, columns: np.ndarray, rng) -> tuple:
    """For one side of a comparison (`sides`: one (seed, T) array per configuration), the mean over each
    configuration's seeds at every draw's tomogram column (n configurations, B draws) and, for each slot of `picks`
    (B, n: the resampled configurations), that configuration's mean over its seeds resampled with replacement."""
    counts = np.array([len(x) for x in sides])
    top = int(counts.max())
    padded = np.zeros((len(sides), top, sides[0].shape[1]))
    for i, x in enumerate(sides):
        padded[i, : len(x)] = x
    means = padded.sum(axis=1) / counts[:, None]  # (n, T)
    picked_means = means[picks, columns[:, None]]  # (B, n)
    if top == 1:
        return picked_means, picked_means
    r = counts[picks]  # (B, n)
    which = np.floor(rng.random((*picks.shape, top)) * r[..., None]).astype(np.int64)
    valid = np.arange(top) < r[..., None]
    values = padded[picks[..., None], which, columns[:, None, None]]
    return picked_means, np.where(valid, values, 0.0).sum(axis=-1) / r


def hierarchical_draws(
    df: pd.DataFrame, value: str, factor: str, a: str, b: str, keys: list[str], s: Settings
) -> tuple[np.ndarray | None, tuple[str, ...]]:
    """`s.bootstrap_resamples` draws of the mean `b - a` over the matched configurations, resampling every layer of
    noise the frame holds, and the names of those layers:

    1. configurations (the pairs), with replacement. Each configuration's deviation from the draw's mean is scaled
       by sqrt(n / (n - 1)), so this layer's variance is the unbiased s^2 / n (without test tomograms and seeds the
       draws' sd is the paired t-test's standard error);
    2. seeds within a configuration where it has several (each level's seeds resampled on their own: seed r of
       one model is no pair of seed r of another), in each slot the configuration fills;
    3. test tomograms: draw k scores every run on the k-th row of the shared index matrix of `tomogram_draws`
       (`seed_draws`), so all cells of a sample see the same resampled test set. Only when every matched run has
       per-tomogram counts; otherwise each run's score is taken as it is.

    With identical configurations and one seed each, the draws are the tomogram-only ones (`tomogram_interval`).
    Seeded (`s.bootstrap_seed`), so the same on every run. (None, ()) without matched pairs."""
    sub = df.assign(_row=np.arange(len(df))).dropna(subset=[value])
    wide = matched_pairs(sub, "_row", factor, a, b, keys)
    if len(wide) < 2:
        return None, ()
    rows = [[df.iloc[int(r)] for r in wide[level]] for level in (a, b)]
    tomograms = (
        value == "fbeta"
        and "seed_draws" in df
        and all(isinstance(r.get("seed_draws"), np.ndarray) for side in rows for r in side)
    )
    sides = [[_seed_rows(r, value, tomograms) for r in side] for side in rows]
    n, resamples = len(wide), s.bootstrap_resamples
    columns = np.arange(resamples) if tomograms else np.zeros(resamples, dtype=np.int64)
    rng = np.random.default_rng(np.random.SeedSequence([s.bootstrap_seed, 1]))
    picks = rng.integers(0, n, size=(resamples, n))
    (mean_a, drawn_a), (mean_b, drawn_b) = (_resample_seeds(x, picks, columns, rng) for x in sides)
    # every configuration's seed-mean difference at each draw's tomograms, and their mean over the configurations
    per_config = np.stack([b_.mean(axis=0) - a_.mean(axis=0) for a_, b_ in zip(*sides, strict=True)])  # (n, T)
    centre = per_config.mean(axis=0)[columns]
    scale = math.sqrt(n / (n - 1))
    picked = mean_b - mean_a  # (B, n): the picked configurations' seed means
    seeds = (drawn_b - drawn_a) - picked  # the seed layer: resampled seeds minus all seeds of the configuration
    draws = centre + (scale * (picked - centre[:, None]) + seeds).mean(axis=1)
    several = any(len(x) > 1 for side in sides for x in side)
    layers = (CONFIGURATIONS,) + ((SEEDS,) if several else ()) + ((TOMOGRAMS,) if tomograms else ())
    return draws, layers


def paired(df: pd.DataFrame, value: str, factor: str, a: str, b: str, keys: list[str], s: Settings, within=None):
    """All statistics of `b - a` over the matched configurations, or a `reason` why they cannot be computed."""
    wide = matched_pairs(df, value, factor, a, b, keys)
    d = (wide[b] - wide[a]).to_numpy(float)
    base = Paired(value, factor, a, b, within, len(d))
    if len(d) == 0:
        return dataclasses.replace(base, reason="no configuration was run for both")
    base = dataclasses.replace(base, mean_a=wide[a].mean(), mean_b=wide[b].mean(), mean_diff=float(d.mean()))
    need = max(s.min_pairs, 2)
    if len(d) < need:
        return dataclasses.replace(base, reason=f"needs at least {need} matched pairs, have {len(d)}")
    sd = float(d.std(ddof=1))
    if sd == 0:
        return dataclasses.replace(base, reason=f"all {len(d)} paired differences are equal, so their spread is 0")
    t = stats.ttest_rel(wide[b].to_numpy(float), wide[a].to_numpy(float))
    ci = t.confidence_interval(s.confidence)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            p_w = float(stats.wilcoxon(d, method="auto").pvalue)
        except ValueError:
            p_w = NAN
        boot = stats.bootstrap(
            (d,),
            np.mean,
            confidence_level=s.confidence,
            n_resamples=s.bootstrap_resamples,
            method=s.bootstrap_method,
            rng=np.random.default_rng(s.bootstrap_seed),
        ).confidence_interval
    tomo_low, tomo_high = tomogram_interval(df, factor, a, b, keys, s) if value == "fbeta" else (NAN, NAN)
    draws, layers = hierarchical_draws(df, value, factor, a, b, keys, s)
    if not draws.std() > 0:
        return dataclasses.replace(base, reason="the hierarchical bootstrap's draws do not spread")
    hier_low, hier_high = percentile_interval(draws, s)
    return dataclasses.replace(
        base,
        layers=layers,
        hier_se=float(draws.std(ddof=1)),
        hier_low=hier_low,
        hier_high=hier_high,
        ci_low=float(ci.low),
        ci_high=float(ci.high),
        t=float(t.statistic),
        p_t=float(t.pvalue),
        p_wilcoxon=p_w,
        dz=float(d.mean()) / sd,
        boot_low=float(boot.low),
        boot_high=float(boot.high),
        tomo_low=tomo_low,
        tomo_high=tomo_high,
        sd=sd,
    )


def adjust(family: list[Paired], s: Settings, higher: str, lower: str, equivalence: bool = True) -> list[Paired]:
    """Bonferroni-adjust one family and set each comparison's verdict. Everything the verdict reads is at the
    family's per-comparison level alpha/m and on the hierarchical standard error (n - 1 degrees of freedom): the
    simultaneous interval, its p-value, the TOST (the intersection-union test: both one-sided tests at alpha/m), the
    narrowest certifiable margin and the detectable difference. The configurations-only t interval (Bonferroni) and
    the Holm-adjusted t-test p are kept beside them for reference."""
    m = max(1, sum(c.computed for c in family))
    level = s.alpha / m
    out = []
    for c, p_holm in zip(family, holm([c.p_t for c in family]), strict=True):
        if c.computed:
            se, df = c.hier_se, c.n - 1
            half = float(stats.t.ppf(1 - level / 2, df)) * se
            p_hier = float(2 * stats.t.sf(abs(c.mean_diff) / se, df)) if se > 0 else NAN
            cfg_low, cfg_high = t_interval(c.mean_diff, c.sd, c.n, 1 - level)
            c = dataclasses.replace(
                c,
                m=m,
                adj_low=c.mean_diff - half,
                adj_high=c.mean_diff + half,
                p_adj=min(1.0, m * p_hier),
                cfg_low=cfg_low,
                cfg_high=cfg_high,
                p_cfg=min(1.0, m * c.p_t),
                p_holm=p_holm,
                p_tost=min(1.0, m * tost(c.mean_diff, se, df, s.equivalence_margin)) if equivalence else NAN,
                margin_min=certifiable_margin(c.mean_diff, se, df, level) if equivalence else NAN,
                margin_floor=certifiable_margin(0.0, se, df, level) if equivalence else NAN,
                mdd=detectable_difference(se * math.sqrt(c.n), c.n, level, s.power),
            )
        else:
            c = dataclasses.replace(c, m=m)
        out.append(dataclasses.replace(c, verdict=verdict(c, s, higher, lower, equivalence)))
    return out


def versus(ours: Paired, paper: Paired, s: Settings) -> tuple[float, float, float]:
    """(ours - paper, low, high): the difference of the two experiments' estimates with both uncertainties, each a
    mean with its standard error (`hier_se`) on n - 1 degrees of freedom: a Welch interval, mean difference +-
    t(1 - alpha/(2m), Welch-Satterthwaite df) x sqrt(se_ours^2 + se_paper^2) at our family's level (m = ours.m)."""
    gap = ours.mean_diff - paper.mean_diff
    va, vb = ours.hier_se**2, paper.hier_se**2
    df = (va + vb) ** 2 / (va**2 / (ours.n - 1) + vb**2 / (paper.n - 1))
    half = float(stats.t.ppf(1 - s.alpha / ours.m / 2, df)) * math.sqrt(va + vb)
    return gap, gap - half, gap + half


def against_paper(ours: list[Paired], paper: list[Paired], s: Settings | None = None) -> list[Paired]:
    """Each of our comparisons beside the same comparison on the paper's tables (its estimate and its own verdict
    interval): "consistent with" the paper when the interval of ours - paper (`versus`) contains 0, "differs from"
    it when it excludes 0, None when either side cannot be computed."""
    s = s or Settings()
    theirs = {(c.factor, c.a, c.b, c.within): c for c in paper}
    out = []
    for c in ours:
        other = theirs.get((c.factor, c.a, c.b, c.within))
        if other is None:
            out.append(c)
            continue
        c = dataclasses.replace(c, paper_diff=other.mean_diff, paper_low=other.adj_low, paper_high=other.adj_high)
        if c.computed and other.computed and c.hier_se > 0 and other.hier_se > 0:
            gap, low, high = versus(c, other, s)
            word = CONSISTENT if low <= 0 <= high else DIFFERS
            c = dataclasses.replace(c, gap=gap, gap_low=low, gap_high=high, vs_paper=word)
        out.append(c)
    return out


def _side(low: float, high: float) -> str:
    return "above 0" if low > 0 else "below 0" if high < 0 else "contains 0"


def against_mixed(ours: list[Paired], mixed: MixedModel, baseline: str) -> list[Paired]:
    """Each model effect beside the mixed model's estimate of it: "agree" when the two intervals (both at the
    family's Bonferroni level) say the same about 0 (both above, both below, or both containing it)."""
    effects = {e.model: e for e in mixed.effects}
    out = []
    for c in ours:
        e = effects.get(c.b) if c.factor == "model" and c.a == baseline and c.within is None else None
        if e is None or not c.computed:
            out.append(c)
            continue
        same = _side(e.adj_low, e.adj_high) == _side(c.adj_low, c.adj_high)
        word = "agree" if same else "disagree"
        out.append(
            dataclasses.replace(c, mixed_diff=e.estimate, mixed_low=e.adj_low, mixed_high=e.adj_high, vs_mixed=word)
        )
    return out


def class_shares(
    df: pd.DataFrame, c: Paired, keys: list[str], class_columns: list[str], scoring: Scoring
) -> tuple[ClassShare, ...]:
    """Which classes carry an F-beta difference `c`: over the configurations it pairs, each class's mean difference
    of its own F-beta, weighted as the scorer weights it (weight / total weight), and its percent of the sum of those
    parts (so the shares add up to 100; a negative share is a class that moved the other way). Classes of weight 0
    carry nothing and are left out; () when the frame has no per-class scores."""
    scored = df.dropna(subset=["fbeta"])
    parts = []
    for column in class_columns:
        name = column.split("/", 1)[-1]
        weight = float(scoring.weights.get(name, 0.0))
        if not weight or column not in scored:
            continue
        wide = matched_pairs(scored, column, c.factor, c.a, c.b, keys)
        if len(wide) != c.n:  # a class score missing from some of the comparison's pairs
            return ()
        diff = float((wide[c.b] - wide[c.a]).mean())
        parts.append((name, weight, diff, weight / scoring.total_weight * diff))
    total = sum(p[3] for p in parts)
    if not parts or total == 0:
        return ()
    shares = [ClassShare(n, w, d, x, 100.0 * x / total) for n, w, d, x in parts]
    # the largest part first; shares equal but for rounding in the name's order
    return tuple(sorted(shares, key=lambda x: (-round(abs(x.share), 9), x.name)))


def attention_vs_baseline(df: pd.DataFrame, study: Study, s: Settings, value: str = "fbeta") -> list[Paired]:
    """Each attention variant against the baseline, paired over channels x patch x sample; Holm across them."""
    keys = ["channels", "patch", "sample"]
    family = [paired(df, value, "model", study.baseline, m, keys, s) for m in study.variants]
    if value == "fbeta":
        return adjust(family, s, "better", "worse")
    return adjust(family, s, "slower", "faster", equivalence=False)


def best_against_others(df: pd.DataFrame, study: Study, best: str, s: Settings) -> list[Paired]:
    """The model with the highest mean against every other model (one family): a ranking is only stated when it
    is better than all of them."""
    keys = ["channels", "patch", "sample"]
    family = [paired(df, "fbeta", "model", m, best, keys, s) for m in study.model_keys if m != best]
    return adjust(family, s, "better", "worse")


def factor_effect(df: pd.DataFrame, study: Study, factor: str, a: str, b: str, s: Settings) -> list[Paired]:
    """`b - a` of one factor (patch or channels) within each model, paired over the other two; Holm across models."""
    keys = [k for k in ("channels", "patch", "sample") if k != factor]
    family = [paired(df[df["model"] == m], "fbeta", factor, a, b, keys, s, within=m) for m in study.model_keys]
    return adjust(family, s, "higher", "lower")


def patch_effect(df: pd.DataFrame, study: Study, s: Settings) -> list[Paired]:
    return factor_effect(df, study, "patch", study.patch_keys[0], study.patch_keys[-1], s)


def patch_steps(df: pd.DataFrame, study: Study, s: Settings) -> list[Paired]:
    """Each step up in patch size (p64 -> p96, p96 -> p128) within each model; Holm across all of them. Together
    with `patch_effect` (the two ends) this says whether a trend is monotone or carried by one step."""
    keys = ["channels", "sample"]
    family = [
        paired(df[df["model"] == m], "fbeta", "patch", a, b, keys, s, within=m)
        for m in study.model_keys
        for a, b in zip(study.patch_keys, study.patch_keys[1:], strict=False)
    ]
    return adjust(family, s, "higher", "lower")


def channel_effect(df: pd.DataFrame, study: Study, s: Settings) -> list[Paired]:
    return factor_effect(df, study, "channels", study.channel_keys[0], study.channel_keys[-1], s)


def matched_configurations(df: pd.DataFrame, value: str = "fbeta") -> pd.DataFrame:
    """The rows of configurations (channels x patch x sample) that every model with any `value` has a `value` for,
    so that per-model means compare the models on the same configurations (the full grid: all 12 of each)."""
    scored = df.dropna(subset=[value])
    keys = ["channels", "patch", "sample"]
    models = scored["model"].nunique()
    complete = scored.groupby(keys)["model"].transform("nunique") == models
    return scored[complete]


def model_summary(df: pd.DataFrame, study: Study, value: str = "fbeta") -> pd.DataFrame:
    """Mean, sd and count of `value` per model over the matched configurations (every model of the study, in grid
    order; NaN where a model has no cells)."""
    grouped = matched_configurations(df, value).groupby("model")[value]
    out = pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(ddof=1), "n": grouped.count()})
    out = out.reindex(list(study.model_keys))
    out["n"] = out["n"].fillna(0).astype(int)
    return out


def best_model(summary: pd.DataFrame) -> str | None:
    """The model with the highest mean, or None when no model has a score."""
    means = summary["mean"].dropna()
    return str(means.idxmax()) if len(means) else None


def per_class(df: pd.DataFrame, study: Study, class_columns: list[str]) -> pd.DataFrame:
    """Mean per-class test F-beta per model (rows: models in grid order; columns: the class columns)."""
    return df.groupby("model")[class_columns].mean().reindex(list(study.model_keys))


def stated_vs_tables(published: pd.DataFrame, study: Study, stated_means: dict[str, float]) -> pd.DataFrame:
    """The paper's stated mean per model beside the mean of its own Tables 3 and 4 (the paper's models only)."""
    order = [m for m in study.model_keys if m in stated_means]
    summary = model_summary(published, study).reindex(order)
    out = pd.DataFrame({"stated": pd.Series(stated_means, dtype=float).reindex(order), "tables": summary["mean"]})
    out["difference"] = out["stated"] - out["tables"]
    return out


# --- the uncertainty of one score: a bootstrap over test tomograms ------------------------------------------------


@dataclass(frozen=True)
class Scoring:
    """How a cell's score is made from its counts: the class weights and their total, as `src.metric.fbeta_score`
    divides by the weights of every class in the table (also those absent from the test set)."""

    weights: dict[str, float]
    beta: float = 4.0

    @property
    def total_weight(self) -> float:
        return float(sum(self.weights.values()))

    @classmethod
    def from_params(cls, params) -> Scoring:
        from src.classes import SCORE_WEIGHTS

        return cls({**SCORE_WEIGHTS, **dict(params.classes.weights)})


def counts_array(test_counts: dict, classes: list[str]) -> np.ndarray:
    """{tomogram: {class: {tp, fp, fn}}} as an array (tomogram, class, [tp, fp, fn]), tomograms sorted by name."""
    empty = {"tp": 0, "fp": 0, "fn": 0}
    return np.array(
        [[[test_counts[t].get(c, empty)[k] for k in ("tp", "fp", "fn")] for c in classes] for t in sorted(test_counts)],
        dtype=np.float64,
    )


def score_counts(summed: np.ndarray, classes: list[str], scoring: Scoring) -> np.ndarray:
    """The weighted micro F-beta of summed counts (..., class, 3), with the scorer's own arithmetic."""
    from src.metric import class_fbeta

    _, _, fbeta = class_fbeta(summed[..., 0], summed[..., 1], summed[..., 2], scoring.beta)
    weights = np.array([scoring.weights.get(c, 0.0) for c in classes])
    return (fbeta * weights).sum(axis=-1) / scoring.total_weight


def tomogram_draws(runs: pd.DataFrame, scoring: Scoring, s: Settings) -> list[np.ndarray | None]:
    """For each row of `runs`, its test F-beta in each of `s.bootstrap_resamples` resamples of its test tomograms
    (None for a row without `test_counts`). Rows with the same test tomograms (one sample's cells, every seed) share
    the resampled tomograms of each draw, so their differences are paired on the test set. A row whose counts do not
    give back its logged score is an error (the weights differ from the ones it was scored with)."""
    from src.errors import UserError

    counts = _test_counts(runs)
    resamples = tomogram_resamples(counts, s)
    out = []
    for (_, row), test_counts in zip(runs.iterrows(), counts, strict=True):
        if not isinstance(test_counts, dict) or not test_counts:
            out.append(None)
            continue
        classes = sorted({c for by_class in test_counts.values() for c in by_class})
        array = counts_array(test_counts, classes)
        whole = float(score_counts(array.sum(axis=0), classes, scoring))
        if not math.isclose(whole, row["fbeta"], abs_tol=1e-6):
            raise UserError(
                f"cell {row.get('run_cell', row['cell'])}: its per-tomogram counts give F-beta {whole:.6f}, not its "
                f"logged test score {row['fbeta']:.6f}; the class weights (classes.weights) differ from the run's"
            )
        index = resamples[tuple(sorted(test_counts))]
        out.append(score_counts(array[index].sum(axis=1), classes, scoring))
    return out


def _test_counts(runs: pd.DataFrame) -> pd.Series:
    return runs["test_counts"] if "test_counts" in runs else pd.Series([None] * len(runs), index=runs.index)


def tomogram_resamples(counts, s: Settings) -> dict[tuple[str, ...], np.ndarray]:
    """The index matrix (resample, tomogram) of each test set among `counts` (one per distinct set of tomogram
    names, in name order): every score drawn from one test set uses the same resampled tomograms."""
    rng = np.random.default_rng(s.bootstrap_seed)
    resamples: dict[tuple[str, ...], np.ndarray] = {}
    for tomograms in sorted({tuple(sorted(c)) for c in counts if isinstance(c, dict) and c}):
        resamples[tomograms] = rng.integers(0, len(tomograms), size=(s.bootstrap_resamples, len(tomograms)))
    return resamples


def class_draws(runs: pd.DataFrame, classes: list[str], scoring: Scoring, s: Settings) -> list[np.ndarray | None]:
    """For each row of `runs`, each class's F-beta (columns in the order of `classes`) in each resample of its test
    tomograms, an array (resample, class), on the same resampled tomograms as `tomogram_draws`; None for a row
    without `test_counts`."""
    from src.metric import class_fbeta

    counts = _test_counts(runs)
    resamples = tomogram_resamples(counts, s)
    out = []
    for test_counts in counts:
        if not isinstance(test_counts, dict) or not test_counts:
            out.append(None)
            continue
        summed = counts_array(test_counts, classes)[resamples[tuple(sorted(test_counts))]].sum(axis=1)
        out.append(class_fbeta(summed[..., 0], summed[..., 1], summed[..., 2], scoring.beta)[2])
    return out


def per_class_intervals(
    runs: pd.DataFrame, study: Study, classes: list[str], scoring: Scoring, s: Settings
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(low, high), shaped as `per_class`: the interval of each model's mean per-class F-beta when the test
    tomograms are resampled, the seeds of a configuration averaged first and then its configurations, as
    `per_class` averages them; NaN for a model with a run without per-tomogram counts."""
    draws = pd.Series(class_draws(runs, classes, scoring, s), index=runs.index)
    low = pd.DataFrame(np.nan, index=list(study.model_keys), columns=classes)
    high = low.copy()
    for model, group in runs.groupby("model"):
        if model not in low.index or any(d is None for d in draws[group.index]):
            continue
        by_configuration = [np.mean(list(draws[g.index]), axis=0) for _, g in group.groupby("cell")]
        tail = 100 * (1 - s.confidence) / 2
        low.loc[model], high.loc[model] = np.percentile(np.mean(by_configuration, axis=0), [tail, 100 - tail], axis=0)
    return low, high


def percentile_interval(draws, s: Settings) -> tuple[float, float]:
    """The percentile interval at `s.confidence` of one row's draws; NaN for a row without draws."""
    if not isinstance(draws, np.ndarray):
        return NAN, NAN
    tail = 100 * (1 - s.confidence) / 2
    low, high = np.percentile(draws, [tail, 100 - tail])
    return float(low), float(high)


def configurations(runs: pd.DataFrame, draws: list | None = None) -> pd.DataFrame:
    """One row per configuration (model x channels x patch x sample): its seeds averaged, value by value and draw
    by draw, with `seeds` (how many; they may differ between configurations) and `draws` (None when any seed has no
    per-tomogram counts). Each seed's own values stay beside the mean for the hierarchical bootstrap: `seed_values`
    ({column: one value per seed}) and `seed_draws` (seed x draw, None as `draws`)."""
    frame = runs.copy()
    frame["draws"] = draws if draws is not None else [None] * len(frame)
    if "seed" not in frame:
        frame["seed"] = 0
    keys = ["cell", "model", "channels", "patch", "sample"]
    numeric = [c for c in frame.columns if c not in keys and c != "seed" and pd.api.types.is_numeric_dtype(frame[c])]
    rows = []
    for key, group in frame.groupby(keys, sort=False):
        row = dict(zip(keys, key, strict=True))
        row |= {c: group[c].mean() for c in numeric}
        for c in ("channel_sizes", "patch_size", "hardware", "run_params", "test_counts", "run_cell"):
            if c in group:
                row[c] = group[c].iloc[0]
        row["seeds"] = len(group)
        row["seed_list"] = sorted(int(v) for v in group["seed"])
        row["seed_values"] = {c: group[c].to_numpy(dtype=np.float64) for c in numeric}
        stacked = list(group["draws"])
        complete = all(isinstance(d, np.ndarray) for d in stacked)
        row["draws"] = np.mean(stacked, axis=0) if complete else None
        row["seed_draws"] = np.stack(stacked) if complete else None
        rows.append(row)
    return pd.DataFrame(rows)


# --- the whole grid at once: a linear mixed model -------------------------------------------------------------------


@dataclass(frozen=True)
class Effect:
    model: str
    estimate: float
    low: float  # interval at the confidence level (unadjusted)
    high: float
    p: float
    adj_low: float = NAN  # simultaneous interval over the model effects (Bonferroni, level 1 - alpha/m)
    adj_high: float = NAN


@dataclass(frozen=True)
class MixedModel:
    """Model effects (each variant minus the baseline, averaged over channels and patch) from one fit of the grid."""

    method: str  # "mixedlm" or the fallback's name
    formula: str
    random: str  # the random effects, in words
    effects: list[Effect]
    n: int  # observations (one per cell and seed)
    note: str | None = None  # caveats, or why the mixed model could not be fitted


def mixed_model(runs: pd.DataFrame, study: Study, s: Settings) -> MixedModel:
    """Test F-beta ~ model x channels x patch (treatment coding of model against the baseline, sum coding of
    channels and patch, so a model coefficient is its effect averaged over them), with random intercepts for sample
    and, when there is more than one seed, a variance component for seed within sample (statsmodels `mixedlm`).
    When it cannot be fitted, an OLS fit with sample (and seed) as fixed effects takes its place and `note` says why."""
    import statsmodels.formula.api as smf
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    data = runs.dropna(subset=["fbeta"]).copy()
    data["seed"] = data["seed"] if "seed" in data else 0
    baseline = study.baseline
    fixed = f"C(model, Treatment('{baseline}')) * C(channels, Sum) * C(patch, Sum)"
    formula = f"fbeta ~ {fixed}"
    seeds, samples = data["seed"].nunique(), data["sample"].nunique()
    random = "sample (random intercept)" + (", seed within sample (variance component)" if seeds > 1 else "")
    level = 1 - s.confidence
    if baseline not in set(data["model"]) or data["model"].nunique() < 2:
        why = f"it needs runs of {baseline} and of at least one other model"
        return MixedModel("not fitted", formula, "none", [], len(data), why)
    why = None
    if samples < 2:
        why = f"only {samples} sample was run, so no variance between samples can be estimated"
    elif len(data) <= data.groupby(["model", "channels", "patch"]).ngroups:
        why = f"{len(data)} observations leave no residual degrees of freedom for the {fixed} terms"
    if why is None:
        vc = {"seed": "0 + C(seed)"} if seeds > 1 else None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                # Powell converges where the gradient methods stop at a variance on the boundary (the committed grid)
                model = smf.mixedlm(formula, data, groups=data["sample"], vc_formula=vc)
                fit = model.fit(reml=True, method=["powell", "lbfgs"])
            except (ValueError, np.linalg.LinAlgError) as e:
                fit, why = None, f"statsmodels mixedlm failed ({str(e).splitlines()[0]})"
        # A variance estimated at 0 (the boundary) is a valid fit; anything else statsmodels warns about, or a fit
        # without standard errors, is not one to print intervals from.
        messages = sorted(
            {str(w.message).splitlines()[0].rstrip(".") for w in caught if issubclass(w.category, ConvergenceWarning)}
        )
        boundary = [m for m in messages if "boundary" in m]
        trouble = [m for m in messages if "boundary" not in m and not m.startswith("Retrying")]
        if fit is not None and not fit.converged:
            why = "statsmodels mixedlm did not converge"
        elif fit is not None and (trouble or not np.isfinite(np.asarray(fit.bse)).all()):
            why = "statsmodels mixedlm warned: " + "; ".join(trouble or ["no finite standard errors"])
    if why is None:
        notes = []
        if boundary:
            notes.append("statsmodels warns that a random-effect variance may be at the boundary of its range (near 0)")
        if samples < 3:
            notes.append(
                f"the sample variance is estimated from {samples} samples only, so it (and with it the intervals) is "
                "poorly determined"
            )
        note = "; ".join(notes) or None
        return MixedModel("mixedlm (REML)", formula, random, _effects(fit, study, level, s.alpha), len(data), note)
    fixed_terms = [t for t, k in (("sample", samples), ("seed", seeds)) if k > 1]
    extra = "".join(f" + C({t})" for t in fixed_terms)
    note = f"{why}; fitted by OLS" + (f" with {' and '.join(fixed_terms)} as fixed effects" if fixed_terms else "")
    fit = smf.ols(formula + extra, data).fit()
    if fit.df_resid < 1:  # too few runs for the interactions: the main effects alone
        formula = formula.replace(" * ", " + ")
        fit = smf.ols(formula + extra, data).fit()
        note += ", without interactions (too few runs to estimate them and a residual variance)"
    effects = _effects(fit, study, level, s.alpha)
    return MixedModel("OLS (fallback)", formula + extra, "none (fixed instead)", effects, len(data), note)


def _effects(fit, study: Study, level: float, alpha: float) -> list[Effect]:
    """The model coefficients with their intervals at `level` (its alpha) and simultaneous at alpha/m over the m
    variants the fit has."""
    names = {m: f"C(model, Treatment('{study.baseline}'))[T.{m}]" for m in study.variants}
    names = {m: n for m, n in names.items() if n in fit.params.index}
    intervals, simultaneous = fit.conf_int(level), fit.conf_int(alpha / max(1, len(names)))
    out = []
    for model, name in names.items():
        (low, high), (adj_low, adj_high) = intervals.loc[name], simultaneous.loc[name]
        estimate, p = float(fit.params[name]), float(fit.pvalues[name])
        out.append(Effect(model, estimate, float(low), float(high), p, float(adj_low), float(adj_high)))
    return out
