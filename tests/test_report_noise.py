"""Verdicts that carry training noise: the hierarchical bootstrap (configurations, seeds, test tomograms), TOST at
the intersection-union level, the narrowest certifiable margin, our estimate against the paper's interval and the
classes that carry an effect, on small generated frames, each against an independent computation (scipy,
statsmodels, the law of total variance) or a limit the method must reach."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.stats.weightstats import ttost_paired

from src import tracking
from src.report import stats
from src.report.build import analysis, build_report, with_intervals
from tests.test_report import REPORT, STUDY, WEIGHTS, fbeta_of_counts, log_cell, make_counts, md_row, section

KEYS = ["channels", "patch", "sample"]
SETTINGS = dataclasses.replace(stats.Settings(), bootstrap_resamples=4000)
SCORING = stats.Scoring(WEIGHTS)
CONFIGS = [(c, p, s) for s in STUDY.samples for c in STUDY.channel_keys for p in STUDY.patch_keys]  # 12


def runs_frame(cells: list[tuple[str, str, str, str, int, dict]]) -> pd.DataFrame:
    """A `load_runs`-shaped frame of (model, channels, patch, sample, seed, counts): each run's score from its
    counts (the independent scorer of test_report)."""
    rows = []
    for model, channels, patch, sample, seed, counts in cells:
        name = f"{model}-{channels}-{patch}-{sample}"
        rows.append(
            {"cell": name, "model": model, "channels": channels, "patch": patch, "sample": sample, "seed": seed}
            | {"run_cell": f"{name}-r{seed}", "fbeta": fbeta_of_counts(counts), "test_counts": counts}
        )
    return pd.DataFrame(rows)


def two_models(shift, seeds=lambda config: (0,), spread=0.0, sample="s1") -> pd.DataFrame:
    """unet and unet_se on the six configurations of one sample: unet_se's recall is unet's + `shift(config)`; seed
    r > 0 of a configuration is `spread` above (r odd) or below (r even) seed 0, on the same counts' noise, so seeds
    of a configuration are identical when `spread` is 0."""
    cells = []
    for i, (channels, patch, s) in enumerate(c for c in CONFIGS if c[2] == sample):
        config = (channels, patch, s)
        for seed in seeds(config):
            offset = 0.0 if seed == 0 else spread * (1 if seed % 2 else -1)
            for j, (model, target) in enumerate((("unet", 0.5), ("unet_se", 0.5 + shift(config)))):
                counts = make_counts(s, target + offset, np.random.default_rng([i, j]), spread=0.15)
                cells.append((model, channels, patch, s, seed, counts))
    return runs_frame(cells)


def configuration_frame(runs: pd.DataFrame) -> pd.DataFrame:
    return with_intervals(runs, SCORING, SETTINGS)[1]


def test_hierarchical_equals_the_tomogram_interval_for_identical_configurations():
    """Every configuration the same (one seed): resampling configurations changes nothing, so the draws are the
    test-tomogram ones and so is the interval."""
    frame = configuration_frame(two_models(lambda config: 0.05))
    identical = frame.assign(draws=[frame["draws"].iloc[0 if m == "unet" else 1] for m in frame["model"]])
    identical["seed_draws"] = [d[None, :] for d in identical["draws"]]
    draws, layers = stats.hierarchical_draws(identical, "fbeta", "model", "unet", "unet_se", KEYS, SETTINGS)
    tomo = stats.tomogram_interval(identical, "model", "unet", "unet_se", KEYS, SETTINGS)
    assert layers == ("configurations", "test tomograms")
    assert stats.percentile_interval(draws, SETTINGS) == pytest.approx(tomo, abs=1e-12)
    diff = identical["draws"].iloc[1] - identical["draws"].iloc[0]
    assert draws.std(ddof=1) == pytest.approx(diff.std(ddof=1), rel=1e-9) and diff.std() > 0.002


def test_hierarchical_interval_is_wider_when_configurations_disagree():
    """Configurations that disagree (unet_se's gain depends on the configuration): the hierarchical variance is the
    tomograms' variance plus the configurations' s^2 / n at each draw (law of total variance), so its interval is
    wider than the tomogram-only one; the configuration bootstrap alone misses the tomograms' part."""
    gains = {c: g for c, g in zip(CONFIGS[:6], (-0.1, 0.15, 0.0, 0.2, -0.05, 0.1), strict=True)}
    frame = configuration_frame(two_models(lambda config: gains[config]))
    c = stats.paired(frame, "fbeta", "model", "unet", "unet_se", KEYS, SETTINGS)
    assert c.layers == ("configurations", "test tomograms")
    wide = stats.matched_pairs(frame.assign(_row=np.arange(len(frame))), "_row", "model", "unet", "unet_se", KEYS)
    per_config = np.stack([frame["draws"].iloc[int(b)] - frame["draws"].iloc[int(a)] for a, b in wide.to_numpy()])
    n = len(per_config)
    expected = per_config.mean(axis=0).var(ddof=1) + per_config.var(axis=0, ddof=1).mean() / n
    assert c.hier_se**2 == pytest.approx(expected, rel=0.08)
    assert c.hier_high - c.hier_low > 1.5 * (c.tomo_high - c.tomo_low)
    # without the tomogram layer, the scaled configuration layer alone gives the paired t-test's standard error
    points = frame.drop(columns=["seed_draws"])
    alone = stats.paired(points, "fbeta", "model", "unet", "unet_se", KEYS, SETTINGS)
    assert alone.layers == ("configurations",)
    assert alone.hier_se == pytest.approx(c.sd / np.sqrt(n), rel=0.05)
    assert c.hier_se > alone.hier_se


def test_seeds_are_resampled_within_their_configuration_and_unbalanced_seeds_work():
    """Three seeds for one configuration, one for the others (the replicate block's shape): seeds that agree add
    nothing to the draws; seeds that disagree widen them; the configuration's value is their mean."""

    def replicated(config):
        return (0, 1, 2) if config == ("c16", "p64", "s1") else (0,)

    single = configuration_frame(two_models(lambda config: 0.05))
    same = configuration_frame(two_models(lambda config: 0.05, seeds=replicated, spread=0.0))
    apart = configuration_frame(two_models(lambda config: 0.05, seeds=replicated, spread=0.2))
    assert sorted(apart["seeds"]) == [1] * 10 + [3] * 2
    row = apart[(apart["model"] == "unet_se") & (apart["patch"] == "p64") & (apart["channels"] == "c16")].iloc[0]
    assert row["seed_draws"].shape == (3, SETTINGS.bootstrap_resamples)
    assert row["fbeta"] == pytest.approx(np.mean(row["seed_values"]["fbeta"])) and row["seed_list"] == [0, 1, 2]
    c1, c2, c3 = (stats.paired(f, "fbeta", "model", "unet", "unet_se", KEYS, SETTINGS) for f in (single, same, apart))
    assert c1.layers == ("configurations", "test tomograms")
    assert c2.layers == c3.layers == ("configurations", "seeds", "test tomograms")
    assert c2.hier_se == pytest.approx(c1.hier_se, rel=1e-9)  # identical seeds: the seed layer adds nothing
    # seeds 1 and 2 of that configuration 0.2 apart in recall: the seed layer widens the draws beyond what the
    # configurations alone (with the same configuration means) give
    no_seeds = apart.assign(seed_draws=[d[None, :] for d in apart["draws"]])
    assert c3.hier_se > 1.05 * stats.paired(no_seeds, "fbeta", "model", "unet", "unet_se", KEYS, SETTINGS).hier_se


def config_only(d: np.ndarray, variant: str = "unet_se", base: float = 0.6) -> pd.DataFrame:
    """A configuration frame like the paper's tables (one value per configuration, no tomograms, no seeds): the
    baseline at `base` (+ a configuration effect), `variant` = baseline + d."""
    effect = np.linspace(-0.05, 0.05, len(CONFIGS))
    rows = []
    for (channels, patch, sample), e, x in zip(CONFIGS, effect, d, strict=True):
        keys = {"channels": channels, "patch": patch, "sample": sample}
        rows.append({"model": "unet", "fbeta": base + e, **keys})
        rows.append({"model": variant, "fbeta": base + e + x, **keys})
    frame = pd.DataFrame(rows)
    frame.insert(0, "cell", [f"{r.model}-{r.channels}-{r.patch}-{r.sample}" for r in frame.itertuples()])
    return frame


def with_mean_and_se(mean: float, se: float, n: int = 12, seed: int = 5) -> np.ndarray:
    z = np.random.default_rng(seed).normal(size=n)
    return mean + (z - z.mean()) / z.std(ddof=1) * se * np.sqrt(n)


def one(frame: pd.DataFrame, s: stats.Settings = SETTINGS) -> stats.Paired:
    """The one computable attention comparison of a frame (the family's m is 1)."""
    family = [c for c in stats.attention_vs_baseline(frame, STUDY, s) if c.computed]
    assert len(family) == 1 and family[0].m == 1
    return family[0]


def test_tost_runs_each_one_sided_test_at_the_per_comparison_level():
    """The intersection-union test: equivalence when both one-sided tests reject at alpha/m. An estimate whose TOST
    p (statsmodels) lies between alpha/2 and alpha is equivalent here; halving alpha again would have refused it."""
    n, margin, p_target = 12, 0.02, 0.035
    se = margin / sps.t.isf(p_target, n - 1)  # a difference of 0 whose one-sided p against +-margin is 0.035
    d = with_mean_and_se(0.0, se, n)
    p_sm = ttost_paired(d, np.zeros(n), -margin, margin)[0]
    assert p_sm == pytest.approx(p_target, rel=1e-6)
    assert stats.tost_paired(d.mean(), d.std(ddof=1), n, margin) == pytest.approx(p_sm, rel=1e-9)
    c = one(config_only(d))
    assert c.hier_se == pytest.approx(se, rel=0.03)  # no tomograms or seeds: the t-test's standard error
    assert 0.05 / 2 < c.p_tost < 0.05 and c.p_tost == pytest.approx(p_sm, rel=0.2)
    assert c.verdict == "equivalent within the margin"
    assert min(1.0, 2 * p_sm) > 0.05  # the old 2m rule: not equivalent

    d = with_mean_and_se(0.0, 1.3 * se, n)  # wider: its TOST p is above alpha, so not equivalent
    c = one(config_only(d))
    assert c.p_tost > 0.05 and c.verdict == "inconclusive"


def test_the_narrowest_certifiable_margin():
    """|mean| + t(1 - alpha/m, n - 1) x SE: statsmodels' TOST at that margin gives exactly alpha/m, a wider margin is
    certified, a narrower one is not; at a mean of 0 it is t x SE."""
    d = with_mean_and_se(-0.015, 0.012)
    c = one(config_only(d))
    assert c.verdict == "inconclusive" and c.margin_min > SETTINGS.equivalence_margin
    assert c.margin_min == pytest.approx(abs(c.mean_diff) + sps.t.ppf(0.95, 11) * c.hier_se, rel=1e-12)
    assert c.margin_floor == pytest.approx(sps.t.ppf(0.95, 11) * c.hier_se, rel=1e-12)
    z = with_mean_and_se(c.mean_diff, c.hier_se, seed=9)  # an estimate with exactly this mean and SE
    for factor, certified in ((1.0, None), (1.01, True), (0.99, False)):
        margin = factor * c.margin_min
        p = ttost_paired(z, np.zeros_like(z), -margin, margin)[0]
        assert stats.tost(c.mean_diff, c.hier_se, c.n - 1, margin) == pytest.approx(p, rel=1e-6)
        if certified is None:
            assert p == pytest.approx(0.05, rel=1e-6)
        else:
            assert bool(p < 0.05) is certified
    # a family of 3: the margin is read at alpha / 3
    three = stats.adjust([dataclasses.replace(c, m=1)] * 3, SETTINGS, "better", "worse")
    assert three[0].margin_min == pytest.approx(abs(c.mean_diff) + sps.t.ppf(1 - 0.05 / 3, 11) * c.hier_se)


def test_consistent_with_or_differs_from_the_papers_interval():
    """Ours - paper with both uncertainties (scipy's Welch interval of the two sets of configuration differences,
    each a mean with standard error sd / sqrt(n)): "consistent with" when it contains 0, also where the paper's
    estimate lies outside our own interval; "differs from" when it excludes 0."""
    se, half = 0.01, sps.t.ppf(1 - 0.05 / 2, 11) * 0.01
    theirs = with_mean_and_se(0.05, se, seed=2)
    paper = one(config_only(theirs))
    for gap, word in ((1.25 * half, stats.CONSISTENT), (3 * half, stats.DIFFERS)):
        ours_d = with_mean_and_se(0.05 - gap, se, seed=4)
        ours = one(config_only(ours_d))
        assert not ours.adj_low <= paper.mean_diff <= ours.adj_high  # the paper's estimate is outside our interval
        (c,) = stats.against_paper([ours], [paper], SETTINGS)
        welch = sps.ttest_ind(ours_d, theirs, equal_var=False).confidence_interval(0.95)
        assert (c.gap_low, c.gap_high) == pytest.approx((welch.low, welch.high), abs=1e-3)
        assert c.vs_paper == word == (stats.CONSISTENT if welch.low <= 0 <= welch.high else stats.DIFFERS)
        assert (c.paper_low, c.paper_high) == (paper.adj_low, paper.adj_high) and c.gap == pytest.approx(-gap)


def test_class_shares_sum_to_100_and_name_the_class_that_moved():
    """unet_se loses apo-ferritin (weight 1) and thyroglobulin (weight 2) and gains a little virus-like-particle:
    each class's share is weight / total x its mean F-beta difference over the score's difference; beta-amylase
    (weight 0) carries nothing."""
    rng = np.random.default_rng(8)
    change = {"apo-ferritin": -0.3, "thyroglobulin": -0.05, "virus-like-particle": 0.02, "beta-amylase": -0.4}
    rows = []
    for channels, patch, sample in CONFIGS:
        base = {name: float(rng.uniform(0.3, 0.9)) for name in WEIGHTS}
        for model in ("unet", "unet_se"):
            moved = model == "unet_se"
            scores = {n: v + (change.get(n, 0.0) + rng.normal(0, 0.01) if moved else 0.0) for n, v in base.items()}
            total = sum(WEIGHTS[n] * v for n, v in scores.items()) / sum(WEIGHTS.values())
            keys = {"model": model, "channels": channels, "patch": patch, "sample": sample}
            row = {"cell": f"{model}-{channels}-{patch}-{sample}", **keys, "fbeta": total, "train_minutes": 1.0}
            rows.append(row | {f"fbeta/{n}": v for n, v in scores.items()})
    frame = pd.DataFrame(rows)
    c = next(x for x in analysis(frame, STUDY, SETTINGS, SCORING)["attention"] if x.computed)
    shares = {x.name: x for x in c.classes}
    assert sum(x.share for x in c.classes) == pytest.approx(100.0, abs=1e-9)
    assert sum(x.contribution for x in c.classes) == pytest.approx(c.mean_diff, abs=1e-12)
    assert (
        "beta-amylase" not in shares and c.classes[0].name == "apo-ferritin" and shares["virus-like-particle"].share < 0
    )
    wide = frame.pivot(index=KEYS, columns="model")
    for name, x in shares.items():
        diff = (wide[(f"fbeta/{name}", "unet_se")] - wide[(f"fbeta/{name}", "unet")]).mean()
        expected = 100 * WEIGHTS[name] / sum(WEIGHTS.values()) * diff / c.mean_diff
        assert x.share == pytest.approx(expected, rel=1e-9) and x.diff == pytest.approx(diff)


def test_mixed_model_agreement_reads_both_intervals_against_0():
    c = stats.Paired("fbeta", "model", "unet", "unet_se", None, 12, mean_diff=-0.05, adj_low=-0.09, adj_high=-0.01)
    c = dataclasses.replace(c, verdict="worse")

    def mixed(low: float, high: float) -> stats.MixedModel:
        effect = stats.Effect("unet_se", -0.05, low, high, 0.01, low, high)
        return stats.MixedModel("mixedlm (REML)", "f", "r", [effect], 24)

    assert stats.against_mixed([c], mixed(-0.08, -0.02), "unet")[0].vs_mixed == "agree"
    assert stats.against_mixed([c], mixed(-0.1, 0.01), "unet")[0].vs_mixed == "disagree"
    assert stats.against_mixed([c], mixed(0.01, 0.1), "unet")[0].vs_mixed == "disagree"
    inconclusive = dataclasses.replace(c, adj_high=0.02)
    assert stats.against_mixed([inconclusive], mixed(-0.1, 0.01), "unet")[0].vs_mixed == "agree"


@pytest.fixture(scope="module")
def replicated(tmp_path_factory):
    """The default study's replicate block on a small store: c16 only, both samples (4 models x 3 patches x 2
    samples, seed 0) plus seeds 1 and 2 of every model at c16-p64-s1: 32 runs, 1 to 3 seeds per configuration."""
    assert STUDY.replicates is not None and STUDY.replicates.holds("c16", "p64", "s1")
    root = tmp_path_factory.mktemp("replicated")
    rng = np.random.default_rng(21)
    shift = {"unet": 0.0, "unet_ag": 0.0, "unet_se": 0.05, "unet_cbam": -0.08}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(tracking.ENV_STORE, str(root / "mlruns"))
        for cell in (c for c in STUDY.cells() if c.channels == "c16"):
            counts = make_counts(cell.sample, 0.5 + shift[cell.model] + rng.normal(0, 0.03), rng)
            log_cell(cell, fbeta_of_counts(counts), 1.0 + rng.normal(0, 0.05), root / "metrics", counts, seed=cell.seed)
        build_report(root / "metrics", root / "paper", REPORT, STUDY, make_figures=False)
    return root


def test_unbalanced_seeds_run_through_the_report(replicated):
    out = replicated / "paper"
    assert len(list((replicated / "metrics").glob("*.json"))) == 32
    statistics, conclusions = (out / "statistics.md").read_text(), (out / "conclusions.md").read_text()
    assert "(32 runs; seeds 0, 1, 2 for 4 configurations, seed 0 for 20 configurations)" in statistics
    assert "1 to 3 seeds per configuration, 32 runs" in statistics.splitlines()[2]
    replicate_block = ", ".join(f"{m}-c16-p64-s1" for m in sorted(STUDY.model_keys))  # in the runs' order
    assert (
        f"- Seeds: 3 (0, 1, 2) for 4 configurations ({replicate_block}), 1 (0) for the other 20; 32 runs for 24 of "
        "48 configurations. Training noise is measured where a configuration has several seeds" in conclusions
    )
    rows = [r for r in (out / "table3.md").read_text().splitlines() if r.startswith("| unet_se | 16-32-64-128 |")]
    assert [md_row(r, "unet_se")[5] for r in rows] == ["3", "1", "1"]
    assert "Hierarchical bootstrap over: configurations, seeds, test tomograms." in section(statistics, "## Attention")
    mixed = section(statistics, "## One model of the whole grid")
    assert "seed within sample (variance component)" in mixed or "OLS (fallback)" in mixed
    for model in STUDY.variants:
        line = next(x for x in conclusions.splitlines() if x.startswith(f"- {model}: "))
        assert "over configurations, seeds and test tomograms (Bonferroni over 3)" in line
    assert conclusions.count("  - Classes: ") == 6  # the three model effects and the best model against the others
