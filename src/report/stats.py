"""Paired statistics over the grid: pure functions of DataFrames (no I/O).

A comparison pairs two levels of one factor (model, patch or channels) over the configurations where both were run,
e.g. unet_se vs unet over channels x patch x sample. Differences are always `b - a` (the variant minus the reference).
Each comparison reports the mean difference with its t confidence interval, the paired t-test, the Wilcoxon
signed-rank test, Cohen's dz and a paired bootstrap CI; p-values are Holm-adjusted within a family of comparisons, and
the verdict word is chosen from the adjusted p-value and the t interval by `verdict`.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

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
    boot_low: float = NAN  # paired bootstrap interval of the mean difference
    boot_high: float = NAN
    p_holm: float = NAN  # p_t, Holm-adjusted within its family
    reason: str | None = None  # why the statistics cannot be computed (None when they are)
    verdict: str = "cannot be computed"

    @property
    def percent(self) -> float:
        """Mean difference as a percentage of the reference level's mean over the same pairs."""
        return 100.0 * self.mean_diff / self.mean_a if self.mean_a else NAN

    @property
    def computed(self) -> bool:
        return self.reason is None


def verdict(p_adjusted: float, ci_low: float, ci_high: float, alpha: float, higher: str, lower: str) -> str:
    """The words for a comparison: significant only when the adjusted p is below alpha AND the CI excludes 0."""
    if any(math.isnan(v) for v in (p_adjusted, ci_low, ci_high)):
        return "cannot be computed"
    if p_adjusted < alpha and ci_low > 0:
        return f"significantly {higher}"
    if p_adjusted < alpha and ci_high < 0:
        return f"significantly {lower}"
    return "not distinguishable"


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
    )


def adjust(family: list[Paired], s: Settings, higher: str, lower: str) -> list[Paired]:
    """Holm-adjust the t-test p-values of one family and set each comparison's verdict."""
    adjusted = holm([c.p_t for c in family])
    return [
        dataclasses.replace(c, p_holm=p, verdict=verdict(p, c.ci_low, c.ci_high, s.alpha, higher, lower))
        for c, p in zip(family, adjusted, strict=True)
    ]


def attention_vs_baseline(df: pd.DataFrame, study: Study, s: Settings, value: str = "fbeta") -> list[Paired]:
    """Each attention variant against the baseline, paired over channels x patch x sample; Holm across them."""
    keys = ["channels", "patch", "sample"]
    family = [paired(df, value, "model", study.baseline, m, keys, s) for m in study.variants]
    if value == "fbeta":
        return adjust(family, s, "better", "worse")
    return adjust(family, s, "slower", "faster")


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
