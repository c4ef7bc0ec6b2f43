"""Statistics of the grid: pure functions of DataFrames (no I/O).

A cell's own uncertainty comes from its test set: `tomogram_draws` resamples the test tomograms with replacement and
recomputes the micro-averaged F-beta from the logged per-tomogram TP/FP/FN; every cell of a sample is scored on the
SAME resampled tomograms in each draw, so differences between cells are paired on the test set too. Seeds of one
configuration are averaged (`configurations`) before configurations are paired.

A comparison pairs two levels of one factor (model, patch or channels) over the configurations where both were run,
e.g. unet_se vs unet over channels x patch x sample. Differences are always `b - a` (the variant minus the reference).
Each comparison reports the mean difference, the paired t-test, the Wilcoxon signed-rank test, Cohen's dz, a paired
bootstrap interval over configurations and a bootstrap interval over test tomograms. Within a family of m
comparisons the verdict, its interval and its p-value are all Bonferroni-adjusted (simultaneous t intervals at level
1 - alpha/m), so an interval excludes 0 exactly when the verdict says better or worse; the TOST equivalence test and
the minimum detectable difference at the chosen power use the same level. `mixed_model` fits the whole grid at once.
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
    ci_low: float = NAN  # t interval of the mean difference
    ci_high: float = NAN
    t: float = NAN
    p_t: float = NAN
    p_wilcoxon: float = NAN
    dz: float = NAN  # Cohen's dz: mean difference / sd of differences
    boot_low: float = NAN  # paired bootstrap interval of the mean difference (resampling configurations)
    boot_high: float = NAN
    tomo_low: float = NAN  # interval of the mean difference resampling test tomograms (same draws for a and b)
    tomo_high: float = NAN
    sd: float = NAN  # sd of the paired differences
    m: int = 1  # computed comparisons in the family (the Bonferroni factor)
    adj_low: float = NAN  # Bonferroni simultaneous t interval (level 1 - alpha/m): the one the verdict reads
    adj_high: float = NAN
    p_holm: float = NAN  # p_t, Holm-adjusted within its family (shown for reference)
    p_adj: float = NAN  # p_t, Bonferroni-adjusted: below alpha exactly when the adjusted interval excludes 0
    p_tost: float = NAN  # TOST p of |b - a| < margin, Bonferroni-adjusted as the interval (2m one-sided tests)
    mdd: float = NAN  # smallest difference detectable with the chosen power at level alpha/m, given sd and n
    reason: str | None = None  # why the statistics cannot be computed (None when they are)
    verdict: str = "cannot be computed"
    paper_diff: float = NAN  # the same comparison's mean difference on the paper's tables
    vs_paper: str | None = None  # "consistent" (our adjusted interval contains paper_diff), "contradicts", or None

    @property
    def percent(self) -> float:
        """Mean difference as a percentage of the reference level's mean over the same pairs."""
        return 100.0 * self.mean_diff / self.mean_a if self.mean_a else NAN

    @property
    def computed(self) -> bool:
        return self.reason is None


INCONCLUSIVE = "inconclusive"
EQUIVALENT = "equivalent within the margin"


def verdict(c: Paired, s: Settings, higher: str, lower: str, equivalence: bool = True) -> str:
    """The words for a comparison, all read at the family's Bonferroni level: `higher` / `lower` when the adjusted
    interval excludes 0, else "equivalent within the margin" when TOST says |difference| < margin (F-beta only),
    else "inconclusive"."""
    if not c.computed or any(math.isnan(v) for v in (c.p_adj, c.adj_low, c.adj_high)):
        return "cannot be computed"
    if c.p_adj < s.alpha and c.adj_low > 0:
        return higher
    if c.p_adj < s.alpha and c.adj_high < 0:
        return lower
    if equivalence and c.p_tost < s.alpha:
        return EQUIVALENT
    return INCONCLUSIVE


def bonferroni(pvalues: list[float], factor: int | None = None) -> list[float]:
    """min(1, m p) with m the number of finite p-values (or `factor`); NaN stays NaN."""
    m = factor or sum(not math.isnan(p) for p in pvalues)
    return [p if math.isnan(p) else min(1.0, m * p) for p in pvalues]


def t_interval(mean: float, sd: float, n: int, level: float) -> tuple[float, float]:
    """Two-sided t interval of a mean of n values at confidence `level`."""
    half = stats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
    return mean - half, mean + half


def tost_paired(mean: float, sd: float, n: int, margin: float) -> float:
    """p of the two one-sided paired t-tests of -margin < difference < margin (the larger of the two)."""
    se = sd / math.sqrt(n)
    p_low = stats.t.sf((mean + margin) / se, n - 1)  # H0: difference <= -margin
    p_high = stats.t.cdf((mean - margin) / se, n - 1)  # H0: difference >= +margin
    return float(max(p_low, p_high))


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
    return dataclasses.replace(
        base,
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
    """Bonferroni-adjust one family (p-value, simultaneous interval, TOST, detectable difference, all at level
    alpha/m) and set each comparison's verdict; the Holm-adjusted p is kept beside it for reference."""
    m = max(1, sum(c.computed for c in family))
    level = s.alpha / m
    out = []
    for c, p_holm in zip(family, holm([c.p_t for c in family]), strict=True):
        if c.computed:
            low, high = t_interval(c.mean_diff, c.sd, c.n, 1 - level)
            tost = min(1.0, 2 * m * tost_paired(c.mean_diff, c.sd, c.n, s.equivalence_margin))
            c = dataclasses.replace(
                c,
                m=m,
                adj_low=low,
                adj_high=high,
                p_holm=p_holm,
                p_adj=min(1.0, m * c.p_t),
                p_tost=tost if equivalence else NAN,
                mdd=detectable_difference(c.sd, c.n, level, s.power),
            )
        else:
            c = dataclasses.replace(c, m=m)
        out.append(dataclasses.replace(c, verdict=verdict(c, s, higher, lower, equivalence)))
    return out


def against_paper(ours: list[Paired], paper: list[Paired]) -> list[Paired]:
    """Each of our comparisons beside the same comparison on the paper's tables: "consistent" when our adjusted
    interval contains the paper's mean difference, "contradicts" when it excludes it."""
    theirs = {(c.factor, c.a, c.b, c.within): c.mean_diff for c in paper}
    out = []
    for c in ours:
        estimate = theirs.get((c.factor, c.a, c.b, c.within), NAN)
        word = None
        if c.computed and not math.isnan(estimate):
            word = "consistent" if c.adj_low <= estimate <= c.adj_high else "contradicts"
        out.append(dataclasses.replace(c, paper_diff=estimate, vs_paper=word))
    return out


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

    counts = runs["test_counts"] if "test_counts" in runs else pd.Series([None] * len(runs), index=runs.index)
    rng = np.random.default_rng(s.bootstrap_seed)
    resamples: dict[tuple[str, ...], np.ndarray] = {}
    for tomograms in sorted({tuple(sorted(c)) for c in counts if isinstance(c, dict) and c}):
        resamples[tomograms] = rng.integers(0, len(tomograms), size=(s.bootstrap_resamples, len(tomograms)))
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


def percentile_interval(draws, s: Settings) -> tuple[float, float]:
    """The percentile interval at `s.confidence` of one row's draws; NaN for a row without draws."""
    if not isinstance(draws, np.ndarray):
        return NAN, NAN
    tail = 100 * (1 - s.confidence) / 2
    low, high = np.percentile(draws, [tail, 100 - tail])
    return float(low), float(high)


def configurations(runs: pd.DataFrame, draws: list | None = None) -> pd.DataFrame:
    """One row per configuration (model x channels x patch x sample): its seeds averaged, value by value and draw
    by draw, with `seeds` (how many) and `draws` (None when any seed has no per-tomogram counts)."""
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
        stacked = list(group["draws"])
        row["draws"] = np.mean(stacked, axis=0) if all(isinstance(d, np.ndarray) for d in stacked) else None
        rows.append(row)
    return pd.DataFrame(rows)


# --- the whole grid at once: a linear mixed model -------------------------------------------------------------------


@dataclass(frozen=True)
class Effect:
    model: str
    estimate: float
    low: float
    high: float
    p: float


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
        return MixedModel("mixedlm (REML)", formula, random, _effects(fit, study, level), len(data), note)
    fixed_terms = [t for t, k in (("sample", samples), ("seed", seeds)) if k > 1]
    extra = "".join(f" + C({t})" for t in fixed_terms)
    note = f"{why}; fitted by OLS" + (f" with {' and '.join(fixed_terms)} as fixed effects" if fixed_terms else "")
    fit = smf.ols(formula + extra, data).fit()
    if fit.df_resid < 1:  # too few runs for the interactions: the main effects alone
        formula = formula.replace(" * ", " + ")
        fit = smf.ols(formula + extra, data).fit()
        note += ", without interactions (too few runs to estimate them and a residual variance)"
    effects = _effects(fit, study, level)
    return MixedModel("OLS (fallback)", formula + extra, "none (fixed instead)", effects, len(data), note)


def _effects(fit, study: Study, level: float) -> list[Effect]:
    intervals = fit.conf_int(level)
    out = []
    for model in study.variants:
        name = f"C(model, Treatment('{study.baseline}'))[T.{model}]"
        if name in fit.params.index:
            low, high = intervals.loc[name]
            out.append(Effect(model, float(fit.params[name]), float(low), float(high), float(fit.pvalues[name])))
    return out
