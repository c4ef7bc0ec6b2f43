"""Uncertainty in the report: the test-tomogram bootstrap, seeds, the mixed model, simultaneous intervals, TOST, the
minimum detectable difference and the verdicts that read them, on a store of real logged runs, each against an
independent computation (exact enumeration of the resamples, scipy, statsmodels, closed forms)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats as sps
from statsmodels.stats.power import TTestPower
from statsmodels.stats.weightstats import ttost_paired

from src import tracking
from src.errors import UserError
from src.params import load_params
from src.report import stats
from src.report.build import analysis, build_report, with_intervals
from src.report.render import fmt_p
from src.report.runs import frame_from_metrics
from src.study import Cell
from tests.conftest import REPO
from tests.test_report import (
    ADJ,
    CFG,
    GAP,
    GAP_CI,
    MDD,
    P_CFG,
    P_TOST,
    PAPER,
    PAPER_CI,
    REPORT,
    SE,
    STUDY,
    TOMO,
    VERDICT,
    VS_PAPER,
    WEIGHTS,
    fbeta_of_counts,
    log_cell,
    make_counts,
    md_row,
    section,
)

SEEDS = (0, 1)
MODELS = ("unet", "unet_ag", "unet_cbam")  # unet_se is left out: its comparison cannot be computed (m = 2)
CONFIGS = [(c, p, s) for s in ("s1", "s2") for c in ("c16", "c32") for p in ("p64", "p128")]
PRECISE = dataclasses.replace(REPORT, bootstrap_resamples=9999)
HARDWARE = {"cpu": "Test CPU 9000", "cpu_flags": "avx2", "gpu": None, "torch_threads": 2, "deterministic": True}
HARDWARE |= {"torch_version": "test", "device": "cpu"}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """2 seeds of 8 configurations of 3 models (48 runs) with per-tomogram counts: unet_ag scores as unet (within a
    few thousandths), unet_cbam is unet + 0.02 with a large spread. Returns (root, {(model, config, seed): counts})."""
    root = tmp_path_factory.mktemp("seeded")
    rng = np.random.default_rng(11)
    counts = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(tracking.ENV_STORE, str(root / "mlruns"))
        for channels, patch, sample in CONFIGS:
            base = 0.5 + (0.1 if patch == "p128" else 0.0) + rng.normal(0, 0.05)
            for seed in SEEDS:
                target = base + rng.normal(0, 0.01)
                shift = {"unet": 0.0, "unet_ag": rng.normal(0, 0.002), "unet_cbam": 0.02 + rng.normal(0, 0.08)}
                for model in MODELS:
                    cell = Cell(model, channels, patch, sample)
                    c = make_counts(sample, target + shift[model], rng, spread=0.15)
                    log_cell(cell, fbeta_of_counts(c), 5.0, root / "metrics", c, seed=seed, hardware=HARDWARE)
                    counts[(model, cell.name, seed)] = c
    return root, counts


@pytest.fixture
def report(seeded, monkeypatch, tmp_path_factory):
    root, counts = seeded
    monkeypatch.setenv(tracking.ENV_STORE, str(root / "mlruns"))
    out = root / "paper"
    if not out.exists():
        build_report(root / "metrics", out, PRECISE, STUDY, make_figures=False)
    return root, counts, out


def resampled(counts: dict, order: tuple[int, ...]) -> dict:
    """The counts of the test set made of tomograms `order` (indices into the sorted names, with repeats)."""
    names = sorted(counts)
    return {f"{i}:{names[t]}": counts[names[t]] for i, t in enumerate(order)}


def exact_quantiles(values: np.ndarray, low: float, high: float) -> tuple[float, float]:
    return float(np.quantile(values, low)), float(np.quantile(values, high))


def configuration_score(counts: dict, model: str, cell: str) -> float:
    return float(np.mean([fbeta_of_counts(counts[(model, cell, seed)]) for seed in SEEDS]))


def paired_values(counts: dict, a: str, b: str) -> tuple[np.ndarray, np.ndarray]:
    """Seed-averaged test F-beta of models a and b over the 8 configurations, straight from the logged counts."""
    names = [Cell("unet", c, p, s).name.split("-", 1)[1] for c, p, s in CONFIGS]
    return tuple(np.array([configuration_score(counts, m, f"{m}-{n}") for n in names]) for m in (a, b))


def interval_cell(text: str) -> tuple[float, float]:
    low, high = text.strip("[]").split(", ")
    return float(low), float(high)


def test_cell_interval_is_the_bootstrap_over_test_tomograms(report):
    """A configuration's interval against the exact distribution of its seed-averaged score over all 4^4 ordered
    resamples of its 4 test tomograms (both seeds on the same resample)."""
    _, counts, out = report
    cell = "unet-c16-p64-s1"
    tomograms = len(counts[("unet", cell, 0)])
    scores = np.array(
        [
            np.mean([fbeta_of_counts(resampled(counts[("unet", cell, seed)], order)) for seed in SEEDS])
            for order in itertools.product(range(tomograms), repeat=tomograms)
        ]
    )
    row = md_row((out / "table3.md").read_text(), "unet")
    assert row[3] == f"{configuration_score(counts, 'unet', cell):.3f}" and row[5] == "2"
    low, high = interval_cell(row[4])
    lo_band, hi_band = exact_quantiles(scores, 0.02, 0.03), exact_quantiles(scores, 0.97, 0.98)
    assert lo_band[0] - 5e-4 <= low <= lo_band[1] + 5e-4 and hi_band[0] - 5e-4 <= high <= hi_band[1] + 5e-4
    assert high - low > 0.02  # 4 tomograms of different difficulty: a real spread


def test_paired_tomogram_interval_resamples_the_same_tomograms_for_both_models(report):
    """The interval of the mean difference unet_ag - unet when tomograms are resampled: exactly enumerated, each
    sample's 256 resamples applied to both models (the samples resampled independently of each other)."""
    _, counts, out = report
    per_sample = []
    for sample in ("s1", "s2"):
        names = [f"{c}-{p}-{s}" for c, p, s in CONFIGS if s == sample]
        sums = []
        for order in itertools.product(range(4), repeat=4):
            total = 0.0
            for n in names:
                for seed in SEEDS:
                    b = fbeta_of_counts(resampled(counts[("unet_ag", f"unet_ag-{n}", seed)], order))
                    a = fbeta_of_counts(resampled(counts[("unet", f"unet-{n}", seed)], order))
                    total += (b - a) / len(SEEDS)
            sums.append(total)
        per_sample.append(np.array(sums))
    means = (per_sample[0][:, None] + per_sample[1][None, :]).ravel() / len(CONFIGS)
    row = md_row(section((out / "statistics.md").read_text(), "## Attention modules"), "unet_ag vs unet")
    low, high = interval_cell(row[TOMO])
    lo_band, hi_band = exact_quantiles(means, 0.02, 0.03), exact_quantiles(means, 0.97, 0.98)
    assert lo_band[0] - 5e-4 <= low <= lo_band[1] + 5e-4 and hi_band[0] - 5e-4 <= high <= hi_band[1] + 5e-4
    # Unpaired, the same two models would spread over the whole between-tomogram range: pairing is what narrows it.
    cell_low, cell_high = interval_cell(md_row((out / "table3.md").read_text(), "unet")[4])
    assert high - low < (cell_high - cell_low) / 3


def test_draws_share_resamples_within_a_sample_and_check_the_logged_score(seeded):
    _, counts = seeded
    s = dataclasses.replace(stats.Settings(), bootstrap_resamples=500)
    a = counts[("unet", "unet-c16-p64-s1", 0)]
    other = counts[("unet", "unet-c16-p64-s2", 0)]
    rows = pd.DataFrame(
        {
            "cell": ["x", "y", "z"],
            "fbeta": [fbeta_of_counts(a), fbeta_of_counts(a), fbeta_of_counts(other)],
            "test_counts": [a, a, other],
        }
    )
    scoring = stats.Scoring.from_params(load_params(REPO / "params.yaml"))
    draws = stats.tomogram_draws(rows, scoring, s)
    assert np.array_equal(draws[0], draws[1]) and draws[0].std() > 0  # same tomograms, same resamples
    assert not np.array_equal(draws[0], draws[2])
    rows.loc[1, "fbeta"] += 0.01  # a score its counts do not give back
    with pytest.raises(UserError, match="logged test score"):
        stats.tomogram_draws(rows, scoring, s)


def analysed(root: Path, family: str = "attention") -> dict:
    """The report's own comparison objects for the seeded store (what statistics.md prints), by compared level."""
    _, frame = with_intervals(frame_from_metrics(root / "metrics", STUDY), stats.Scoring(WEIGHTS), PRECISE)
    return {c.b: c for c in analysis(frame, STUDY, PRECISE)[family]}


def same_mean_and_se(mean: float, se: float, n: int) -> np.ndarray:
    """n paired differences whose mean is `mean` and whose sd / sqrt(n) is `se`: statsmodels' paired tests on them
    are the tests of an estimate `mean` with standard error `se` on n - 1 degrees of freedom."""
    z = np.random.default_rng(5).normal(size=n)
    return mean + (z - z.mean()) / z.std(ddof=1) * se * np.sqrt(n)


def test_simultaneous_interval_tost_and_detectable_difference(report):
    """The attention table: the configurations-only t interval against scipy, and everything the verdict reads (on
    the hierarchical SE) against scipy's t quantiles, statsmodels' TOST and statsmodels' power solver. Two of the
    three comparisons can be computed (no unet_se runs), so m = 2."""
    root, counts, out = report
    block = section((out / "statistics.md").read_text(), "## Attention modules")
    objects = analysed(root)
    m = 2
    for model in ("unet_ag", "unet_cbam"):
        a, b = paired_values(counts, "unet", model)
        d = b - a
        c = objects[model]
        row = md_row(block, f"{model} vs unet")
        assert row[1] == "8" and row[2] == f"{d.mean():+.3f}" and c.n == 8 and c.m == m
        half = sps.t.ppf(1 - 0.05 / m / 2, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
        assert row[CFG] == f"[{d.mean() - half:+.3f}, {d.mean() + half:+.3f}]"
        assert row[P_CFG] == fmt_p(min(1.0, m * sps.ttest_rel(b, a).pvalue))
        # the verdict's interval and TOST, on the hierarchical SE (seeds and test tomograms are resampled too)
        assert c.layers == ("configurations", "seeds", "test tomograms") and row[SE] == f"{c.hier_se:.3f}"
        half = sps.t.ppf(1 - 0.05 / m / 2, len(d) - 1) * c.hier_se
        assert row[ADJ] == f"[{d.mean() - half:+.3f}, {d.mean() + half:+.3f}]"
        z = same_mean_and_se(c.mean_diff, c.hier_se, c.n)
        assert c.p_adj == pytest.approx(min(1.0, m * sps.ttest_1samp(z, 0.0).pvalue), rel=1e-6)
        tost = ttost_paired(z, np.zeros_like(z), -0.02, 0.02)[0]  # each one-sided test at alpha / m: x m, not 2m
        assert c.p_tost == pytest.approx(min(1.0, m * tost), rel=1e-6) and row[P_TOST] == fmt_p(c.p_tost)
        mdd = TTestPower().solve_power(nobs=len(d), alpha=0.05 / m, power=0.8) * c.hier_se * np.sqrt(len(d))
        assert row[MDD] == f"{mdd:.3f}" and c.mdd == pytest.approx(mdd, rel=1e-4)
    assert md_row(block, "unet_se vs unet")[VERDICT] == "cannot be computed: no configuration was run for both"


def test_one_comparison_reads_equivalent_and_one_inconclusive(report):
    root, counts, out = report
    conclusions = (out / "conclusions.md").read_text()
    block = section((out / "statistics.md").read_text(), "## Attention modules")
    objects = analysed(root)
    m = 2
    c = objects["unet_ag"]  # independently: the (1 - 2 alpha/m) interval on its SE lies inside the margin
    z = same_mean_and_se(c.mean_diff, c.hier_se, c.n)
    assert ttost_paired(z, np.zeros_like(z), -0.02, 0.02)[0] < 0.05 / m
    assert md_row(block, "unet_ag vs unet")[VERDICT] == "equivalent within the margin"
    assert "- unet_ag: equivalent within the margin (mean difference" in conclusions

    c = objects["unet_cbam"]
    a, b = paired_values(counts, "unet", "unet_cbam")
    z = same_mean_and_se(c.mean_diff, c.hier_se, c.n)
    assert sps.ttest_1samp(z, 0.0).pvalue > 0.05 / m and ttost_paired(z, np.zeros_like(z), -0.02, 0.02)[0] > 0.05 / m
    assert md_row(block, "unet_cbam vs unet")[VERDICT] == "inconclusive"
    margin = abs(c.mean_diff) + sps.t.ppf(1 - 0.05 / m, c.n - 1) * c.hier_se
    assert (
        f"- unet_cbam: inconclusive (mean difference {(b - a).mean():+.3f}, 95 % simultaneous CI" in conclusions
        and f"the narrowest margin these 8 pairs could certify as equivalent is ±{margin:.3f}" in conclusions
    )
    assert "neither" not in conclusions.lower()
    # our interval against the paper's own interval (+0.054 for CBAM on its tables)
    paper = pd.read_csv(REPO / "src/report/published_results.csv")
    wide = paper.pivot_table(index=["sample", "channels", "patch_size"], columns="model", values="fbeta")
    theirs = (wide["unet_cbam"] - wide["unet"]).to_numpy()
    row = md_row(block, "unet_cbam vs unet")
    assert row[PAPER] == f"{theirs.mean():+.3f}" and row[GAP] == f"{(b - a).mean() - theirs.mean():+.3f}"
    paper_low, paper_high = interval_cell(row[PAPER_CI])
    assert paper_low < theirs.mean() < paper_high
    # ours - paper with both uncertainties: scipy's Welch interval of an estimate with our SE against the paper's 12
    # configuration differences (its SE is theirs / sqrt(12), up to the bootstrap's noise), at our level alpha/m
    welch = sps.ttest_ind(z, theirs, equal_var=False).confidence_interval(1 - 0.05 / m)
    gap_low, gap_high = interval_cell(row[GAP_CI])
    assert gap_low == pytest.approx(welch.low, abs=4e-3) and gap_high == pytest.approx(welch.high, abs=4e-3)
    word = "consistent with the paper" if welch.low <= 0 <= welch.high else "differs from the paper"
    assert row[VS_PAPER] == word


def test_mixed_model_with_seeds(report):
    """Balanced grid: each model effect is the difference of the model means (closed form); its interval is the one
    statsmodels gives for the same model fitted here from the metrics files."""
    root, _, out = report
    rows = [json.loads(p.read_text()) for p in sorted((root / "metrics").glob("*.json"))]
    data = pd.DataFrame(
        {
            "fbeta": [r["test_score"] for r in rows],
            "model": [r["model"] for r in rows],
            "channels": [r["channels"] for r in rows],
            "patch": [r["patch"] for r in rows],
            "sample": [r["sample"] for r in rows],
            "seed": [r["seed"] for r in rows],
        }
    )
    fit = smf.mixedlm(
        "fbeta ~ C(model, Treatment('unet')) * C(channels, Sum) * C(patch, Sum)",
        data,
        groups=data["sample"],
        vc_formula={"seed": "0 + C(seed)"},
    ).fit(reml=True)
    text = (out / "statistics.md").read_text()
    block = section(text, "## One model of the whole grid")
    assert "mixedlm (REML)" in block and "seed within sample (variance component)" in block and "48 runs" in block
    means = data.groupby("model")["fbeta"].mean()
    for model in ("unet_ag", "unet_cbam"):
        name = f"C(model, Treatment('unet'))[T.{model}]"
        assert fit.params[name] == pytest.approx(means[model] - means["unet"], abs=1e-9)
        low, high = fit.conf_int(0.05).loc[name]
        row = md_row(block, model)
        assert row[1] == f"{means[model] - means['unet']:+.3f}" and row[2] == f"[{low:+.3f}, {high:+.3f}]"


def test_mixed_model_falls_back_and_says_why(report, tmp_path):
    root, _, _ = report
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    for path in (root / "metrics").glob("*-s1-r0.json"):
        shutil.copy(path, metrics)
    result = stats.mixed_model(frame_from_metrics(metrics, STUDY), STUDY, stats.Settings())
    assert result.method == "OLS (fallback)"
    assert result.note.startswith("only 1 sample was run, so no variance between samples can be estimated")
    assert "without interactions" in result.note  # 12 runs cannot carry the 12 cell means and a residual variance
    data = frame_from_metrics(metrics, STUDY)
    ols = smf.ols("fbeta ~ C(model, Treatment('unet')) + C(channels, Sum) + C(patch, Sum)", data).fit()
    for effect in result.effects:
        name = f"C(model, Treatment('unet'))[T.{effect.model}]"
        assert (effect.estimate, effect.low, effect.high) == pytest.approx(
            (ols.params[name], *ols.conf_int().loc[name])
        )
    build_report(metrics, tmp_path / "paper", REPORT, STUDY, make_figures=False)
    text = (tmp_path / "paper" / "conclusions.md").read_text()
    assert "OLS (fallback); random effects: none (fixed instead); only 1 sample was run" in text
    assert "- Seeds: 1 (0) per configuration" in text and "the mixed model has no seed term" in text


def test_opening_statement_says_what_was_run(report):
    _, counts, out = report
    opening = section((out / "conclusions.md").read_text(), "## What these numbers come from")
    assert "- Data: synthetic (simulated tomograms made by this project, not the CZII data)." in opening
    assert "2 epochs of 3 steps" in opening
    refs = {name: sum(v["tp"] + v["fn"] for v in (t[name] for t in counts[("unet", "unet-c16-p64-s2", 0)].values()))
            for name in ("ribosome", "apo-ferritin")}  # fmt: skip
    assert f"sample 2: 4 test tomograms with {refs['apo-ferritin']} apo-ferritin" in opening
    assert f"{refs['ribosome']} ribosome" in opening
    assert "- Seeds: 2 (0, 1) per configuration, 48 runs for 24 of 48 configurations." in opening
    assert "- Device: Test CPU 9000 (cpu); deterministic algorithms: True." in opening


def test_measured_step_times_are_the_cost_of_attention(report, tmp_path):
    """Step times in the benchmark's CSV format (two machines) -> % over the baseline of the same machine, mode,
    patch and channels, per row and as the mean per model."""
    root, _, _ = report
    rng = np.random.default_rng(3)
    rows = []
    for device in ("NVIDIA H100", "cpu"):
        for patch in ("32x64x64", "32x128x128"):
            for channels in ("16-32-64-128", "32-64-128-256"):
                for model in STUDY.model_keys:
                    ms = float(rng.uniform(20, 40))
                    rows.append({"patch": patch, "channels": channels, "model": model, "mode": "fp32", "step_ms": ms})
                    rows[-1] |= {"augment_ms": 1.0, "peak_gpu_mib": 0.0, "s_per_epoch": 1.0, "device": device}
    table = pd.DataFrame(rows)
    table.to_csv(tmp_path / "steps.csv", index=False)
    settings = SimpleNamespace(**dataclasses.asdict(REPORT), step_times=(str(tmp_path / "steps.csv"),))
    out = tmp_path / "paper"
    build_report(root / "metrics", out, settings, STUDY, make_figures=False)
    block = section((out / "statistics.md").read_text(), "## The cost of attention: measured training-step time")
    conclusions = (out / "conclusions.md").read_text()
    for device in ("NVIDIA H100", "cpu"):
        mine = table[table["device"] == device]
        base = mine[mine["model"] == "unet"].set_index(["patch", "channels"])["step_ms"]
        pct = [
            100 * (r.step_ms / base[(r.patch, r.channels)] - 1) for r in mine[mine["model"] == "unet_cbam"].itertuples()
        ]
        line = f"- unet_cbam on {device} (fp32): {np.mean(pct):+.1f} % ({min(pct):+.1f} to {max(pct):+.1f} %, 4 config"
        assert line in conclusions
        first = mine[mine["model"] == "unet_se"].iloc[0]
        expected = f"{100 * (first.step_ms / base[(first.patch, first.channels)] - 1):+.1f} %"
        cells = next(
            [c.strip() for c in x.strip("|").split("|")]
            for x in block.splitlines()
            if x.startswith(f"| {device} | fp32 | {first.patch} | {first.channels} | unet_se |")
        )
        assert cells[5:] == [f"{first.step_ms:.1f}", expected]

    table.drop(columns=["step_ms"]).to_csv(tmp_path / "bad.csv", index=False)
    bad = SimpleNamespace(**dataclasses.asdict(REPORT), step_times=(str(tmp_path / "bad.csv"),))
    with pytest.raises(UserError, match=r"report.step_times: .*bad.csv lacks column\(s\) step_ms"):
        build_report(root / "metrics", tmp_path / "o", bad, STUDY, make_figures=False)
