"""The report stage on a small MLflow store logged through src.training.tracking, against independent numbers."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats as sps
from typer.testing import CliRunner

from src import tracking
from src.classes import CZII_CLASSES
from src.errors import UserError
from src.params import load_params
from src.report import figures, stats
from src.report.__main__ import app
from src.report.build import build_report
from src.report.render import fmt_p
from src.report.runs import load_published, load_runs
from src.report.stats import Settings, holm, verdict
from src.study import Cell, Study
from tests.conftest import REPO

REPORT = dataclasses.make_dataclass(
    "R",
    [
        ("alpha", float, 0.05),
        ("confidence", float, 0.95),
        ("min_pairs", int, 2),
        ("bootstrap_resamples", int, 999),
        ("bootstrap_method", str, "percentile"),
        ("bootstrap_seed", int, 0),
        ("decimals", int, 3),
        ("equivalence_margin", float, 0.02),
        ("power", float, 0.8),
    ],
    frozen=True,
)()
STUDY = Study.from_params(load_params(REPO / "params.yaml"))
MODELS = STUDY.model_keys
SHIFT = {"unet": 0.0, "unet_ag": 0.0, "unet_se": 0.06, "unet_cbam": -0.05}  # systematic effect of each model
PATCH_GAIN = {"p64": 0.0, "p96": 0.03, "p128": 0.08}


TEST_TOMOGRAMS = 4  # per sample
# columns of a comparison row in statistics.md (`_macros.md.j2`)
ADJ, P_ADJ, SE, HIER, BOOT, TOMO, CFG, P_CFG, P_HOLM, T, P_T, P_W, DZ, MDD, P_TOST, MARGIN, VERDICT = range(3, 20)
PAPER, PAPER_CI, GAP, GAP_CI, VS_PAPER = range(20, 25)
WEIGHTS = {c.name: c.weight for c in CZII_CLASSES}


def fbeta_of_counts(counts: dict, beta: float = 4.0) -> float:
    """The CZII score of {tomogram: {class: {tp, fp, fn}}}, written out here (micro average over tomograms, weighted
    mean over the six classes) as an independent check of the report's recomputation."""
    total = 0.0
    for name, weight in WEIGHTS.items():
        tp, fp, fn = (sum(by_class.get(name, {}).get(k, 0) for by_class in counts.values()) for k in ("tp", "fp", "fn"))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        if precision + recall:
            total += weight * (1 + beta**2) * precision * recall / (beta**2 * precision + recall)
    return total / sum(WEIGHTS.values())


def make_counts(sample: str, target: float, rng: np.random.Generator, spread: float = 0.1) -> dict:
    """Per-tomogram counts of one cell whose recall is about `target`; each tomogram has its own fixed number of
    particles and difficulty (the same for every cell of the sample), so cells share their hard tomograms."""
    fixed = np.random.default_rng(int(sample[1:]))
    counts = {}
    for t in range(TEST_TOMOGRAMS):
        difficulty = fixed.normal(0, spread)
        by_class = {}
        for name in WEIGHTS:
            n = int(fixed.integers(4, 16))
            recall = float(np.clip(target + difficulty + rng.normal(0, 0.01), 0.02, 1.0))
            tp = int(round(n * recall))
            by_class[name] = {"tp": tp, "fp": int(round(tp * 0.6)), "fn": n - tp}
        counts[f"TS_{sample}_{t}"] = by_class
    return counts


def log_cell(
    cell: Cell,
    score: float,
    minutes: float,
    metrics_dir: Path,
    counts: dict | None = None,
    seed: int | None = None,
    hardware: dict | None = None,
    logged: dict | None = None,
) -> str:
    """Log one finished cell the way training does: an MLflow run plus metrics/<cell>.json naming it. With `seed`,
    the cell is named <configuration>-r<seed> and its file carries `seed` and `configuration` (files written before
    seeds were a grid axis have neither); `counts` are its per-tomogram TP/FP/FN (`score` must be their score)."""
    name = cell.name if seed is None else f"{cell.name}-r{seed}"
    tags = {"cell": name, "model": cell.model, "channels": cell.channels, "patch": cell.patch}
    tags |= {"sample": cell.sample, "git_commit": "test", "dvc_stage": f"train@{name}", "data_fingerprint": "x"}
    tags["device"] = "cpu"
    per_class = {name: float(np.clip(score + 0.01 * i, 0, 1)) for i, name in enumerate(c.name for c in CZII_CLASSES)}
    logged = logged or {"epochs": 2, "steps_per_epoch": 3, "data.source": "synthetic"}
    with tracking.cell_run(name, tags, logged) as run:
        for epoch in range(2):
            mlflow.log_metrics({"train_loss": 1.0 - 0.1 * epoch, "val_score": score - 0.01}, step=epoch)
        durations = {"train_minutes": minutes, "seconds_per_epoch": minutes * 30, "inference_seconds_per_tomogram": 2.0}
        tracking.log_test_result(score, per_class, durations)
        mlflow.log_metrics({"val_best_score": score - 0.01, "best_epoch": 1})
        run_id = run.info.run_id
    record = {
        "cell": name,
        "model": cell.model,
        "channels": cell.channels,
        "patch": cell.patch,
        "sample": cell.sample,
        "channel_sizes": [16, 32, 64, 128],
        "patch_size": list(STUDY.patches[cell.patch]),  # the paper's size: this store trains at patch_scale 1
        "mlflow_run_id": run_id,
        "test_score": score,
        "test_fbeta": per_class,
        "val_best_score": score - 0.01,
        "train_minutes": minutes,
        "seconds_per_epoch": minutes * 30,
        "inference_seconds_per_tomogram": 2.0,
    }
    if counts is not None:
        record["test_counts"] = counts
    if seed is not None:
        record |= {"seed": seed, "configuration": cell.name}
    if hardware is not None:
        record["hardware"] = hardware
    tracking.write_cell_metrics(metrics_dir / f"{name}.json", record)
    return run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store with the full 48-cell grid; returns (root, {cell: (score, minutes)})."""
    root = tmp_path_factory.mktemp("report")
    rng = np.random.default_rng(7)
    truth = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(tracking.ENV_STORE, str(root / "mlruns"))
        for cell in STUDY.configurations():
            target = 0.55 + SHIFT[cell.model] + PATCH_GAIN[cell.patch] + rng.normal(0, 0.02)
            counts = make_counts(cell.sample, target, rng)
            score = fbeta_of_counts(counts)
            minutes = 10.0 + (2.0 if cell.model != "unet" else 0.0) + rng.normal(0, 0.3)
            log_cell(cell, score, round(minutes, 2), root / "metrics", counts)
            truth[cell.name] = (score, round(minutes, 2))
        yield root, truth


@pytest.fixture
def env(store, monkeypatch):
    monkeypatch.setenv(tracking.ENV_STORE, str(store[0] / "mlruns"))
    return store


def trained(patch: str) -> str:
    """A patch key as the report labels it, with the size the store's cells trained (the paper's, see log_cell)."""
    return f"{patch} (trained {'x'.join(map(str, STUDY.patches[patch]))})"


def md_row(text: str, label: str) -> list[str]:
    """The cells of the Markdown table row whose first cell is `label`."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == label:
            return cells
    raise AssertionError(f"no row '{label}' in\n{text}")


def section(text: str, heading: str) -> str:
    return text.split(heading, 1)[1].split("\n## ", 1)[0]


def pairs(truth: dict, a: str, b: str, value: int = 0) -> np.ndarray:
    """Independent pairing: b - a over every (channels, patch, sample) of the grid."""
    return np.array(
        [
            truth[Cell(b, c.channels, c.patch, c.sample).name][value] - truth[c.name][value]
            for c in STUDY.configurations()
            if c.model == a
        ]
    )


def test_report_numbers_match_independent_computation(env, tmp_path):
    root, truth = env
    out = tmp_path / "paper"
    written = build_report(root / "metrics", out, REPORT, STUDY)
    assert {p.name for p in written} >= {"table3.md", "table4.tex", "conclusions.md", "per_class.png"}

    t3 = (out / "table3.md").read_text()
    row = md_row(t3, "unet_se")  # first unet_se row: c16, p64, sample 1
    score, minutes = truth["unet_se-c16-p64-s1"]
    assert row[1:3] == ["16-32-64-128", "32x64x64"]
    assert row[3] == f"{score:.3f}" and row[6] == "0.595" and row[7] == f"{minutes:.2f}" and row[8] == "150"
    assert row[5] == "1" and re.fullmatch(r"\[0\.\d{3}, 0\.\d{3}\]", row[4])  # one seed; its tomogram interval
    t4 = (out / "table4.md").read_text()
    assert md_row(t4, "unet_cbam")[3] == f"{truth['unet_cbam-c16-p64-s2'][0]:.3f}"

    st = (out / "statistics.md").read_text()
    for model in MODELS:
        values = [v[0] for k, v in truth.items() if STUDY.parse(k).model == model]
        mean, sd = np.mean(values), np.std(values, ddof=1)
        assert md_row(section(st, "## Test F-beta per model"), model)[1:] == [f"{mean:.3f} ± {sd:.3f}", "12"]

    p_values = []
    for model in ("unet_ag", "unet_se", "unet_cbam"):
        d = pairs(truth, "unet", model)
        p_values.append(sps.ttest_rel(d, np.zeros_like(d)).pvalue)
    adjusted = [min(1.0, max((3 - i) * p for i, p in enumerate(sorted(p_values)) if p <= q)) for q in p_values]
    block = section(st, "## Attention modules against the baseline")
    for model, p, p_adj in zip(("unet_ag", "unet_se", "unet_cbam"), p_values, adjusted, strict=True):
        d = pairs(truth, "unet", model)
        cells = md_row(block, f"{model} vs unet")
        assert cells[1] == "12" and cells[2] == f"{d.mean():+.3f}"
        assert cells[P_T] == fmt_p(p) and cells[P_HOLM] == fmt_p(p_adj)  # t-test p, Holm-adjusted p
        assert cells[P_CFG] == fmt_p(min(1.0, 3 * p))  # Bonferroni-adjusted p (configurations only)
        assert cells[DZ] == f"{d.mean() / d.std(ddof=1):.2f}"  # Cohen's dz
        half = sps.t.ppf(1 - 0.05 / 3 / 2, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
        assert cells[CFG] == f"[{d.mean() - half:+.3f}, {d.mean() + half:+.3f}]"  # simultaneous t interval, m = 3
        assert cells[P_W] == fmt_p(sps.wilcoxon(d).pvalue)
        # the verdict's interval: mean +- t(1 - alpha / 2m, n - 1) x the hierarchical SE printed beside it
        se = float(cells[SE])
        low, high = (float(x) for x in cells[ADJ].strip("[]").split(", "))
        assert (high - low) / 2 == pytest.approx(sps.t.ppf(1 - 0.05 / 3 / 2, len(d) - 1) * se, abs=2e-3)
        # it carries the test tomograms' noise too: wider than the t interval over configurations alone
        assert high - low > 2 * half

    conclusions = (out / "conclusions.md").read_text()
    # files from before seeds and hardware were recorded: seed 0, and the device from the MLflow tag
    assert "- Seeds: 1 (0) per configuration, 48 runs for 48 of 48 configurations." in conclusions
    assert "- Device: cpu (the runs' MLflow tag; they recorded no CPU or GPU model" in conclusions
    # each sample's test tomograms have their own names here (make_counts), so they are two sets, said as two
    two = f"{TEST_TOMOGRAMS} test tomograms (s1), {TEST_TOMOGRAMS} test tomograms (s2)"
    assert two in conclusions and "shared by" not in conclusions and "one test set" not in conclusions
    assert "unet_se has the highest mean test F-beta" in conclusions
    assert "- unet_se: better" in conclusions
    assert "- unet_cbam: worse" in conclusions
    assert "- unet_ag: inconclusive" in conclusions
    for model in MODELS:  # p128 is 0.08 above p64 by construction: "higher" where 4 pairs show it at alpha / 4
        d = np.array([truth[f"{model}-{c}-p128-{x}"][0] - truth[f"{model}-{c}-p64-{x}"][0]
                      for c in ("c16", "c32") for x in ("s1", "s2")])  # fmt: skip
        cells = md_row(section(st, "## Patch size: largest"), f"{model}: {trained('p128')} vs {trained('p64')}")
        low, high = (float(x) for x in cells[ADJ].strip("[]").split(", "))
        se = float(cells[SE])  # the hierarchical SE: configurations and the test tomograms, so above theirs alone
        assert se > 0.9 * d.std(ddof=1) / 2
        assert (high - low) / 2 == pytest.approx(sps.t.ppf(1 - 0.05 / 4 / 2, 3) * se, abs=2e-3)
        line = next(x for x in section(conclusions, "## Patch size").splitlines() if x.startswith(f"- {model}: "))
        assert line.startswith(f"- {model}: {'higher' if low > 0 else 'inconclusive'} (mean difference {d.mean():+.3f}")
    steps = section(st, "## Patch size, step by step")
    for model in MODELS:
        for a, b in (("p64", "p96"), ("p96", "p128")):
            d = np.array([truth[f"{model}-{c}-{b}-{x}"][0] - truth[f"{model}-{c}-{a}-{x}"][0]
                          for c in ("c16", "c32") for x in ("s1", "s2")])  # fmt: skip
            cells = md_row(steps, f"{model}: {trained(b)} vs {trained(a)}")
            assert cells[1] == "4" and cells[2] == f"{d.mean():+.3f}"
    extra = pairs(truth, "unet", "unet_se", value=1)
    base = np.array([truth[c.name][1] for c in STUDY.configurations() if c.model == "unet"])
    assert f"- unet_se: {extra.mean():+.2f} minutes per run ({100 * extra.mean() / base.mean():+.1f} %)" in conclusions
    assert "\\VAR{" not in (out / "table3.tex").read_text() and "{{" not in conclusions


def test_a_shifted_model_changes_its_verdict_and_unnamed_runs_are_ignored(env, tmp_path):
    root, truth = env
    metrics = tmp_path / "metrics"
    shutil.copytree(root / "metrics", metrics)
    for cell in (c for c in STUDY.configurations() if c.model == "unet_ag"):  # new runs for unet_ag, 0.05 better
        score, minutes = truth[cell.name]
        log_cell(cell, score + 0.05, minutes, metrics)
    shifted = (build_report(metrics, tmp_path / "shifted", REPORT, STUDY, make_figures=False), tmp_path / "shifted")[1]
    assert "- unet_ag: better" in (shifted / "conclusions.md").read_text()

    # the original metrics files still name the original runs: the new runs in the store change nothing there
    build_report(root / "metrics", tmp_path / "orig", REPORT, STUDY, make_figures=False)
    text = (tmp_path / "orig" / "conclusions.md").read_text()
    assert "- unet_ag: inconclusive" in text
    frame = load_runs(root / "metrics", STUDY)
    assert (
        len(frame) == 48
        and frame.set_index("cell").loc["unet_ag-c16-p64-s1", "fbeta"] == truth["unet_ag-c16-p64-s1"][0]
    )
    client = mlflow.MlflowClient(tracking.tracking_uri())
    assert len(client.search_runs([client.get_experiment_by_name(tracking.EXPERIMENT).experiment_id])) >= 60


def test_missing_run_and_empty_dir_are_user_errors(env, tmp_path, monkeypatch):
    root, _ = env
    with pytest.raises(UserError, match="no cell metrics"):
        build_report(tmp_path / "nothing", tmp_path / "out", REPORT, STUDY)
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    record = json.loads((root / "metrics" / "unet-c16-p64-s1.json").read_text())
    record["mlflow_run_id"] = "0" * 32
    (metrics / "unet-c16-p64-s1.json").write_text(json.dumps(record))
    with pytest.raises(UserError, match=r"names MLflow run 0{32}, which is not in the store"):
        load_runs(metrics, STUDY)
    monkeypatch.setenv(tracking.ENV_STORE, str(tmp_path / "no-store"))
    with pytest.raises(UserError, match="no MLflow store answers"):
        load_runs(metrics, STUDY)
    result = CliRunner().invoke(app, ["--metrics-dir", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "error: no cell metrics" in result.output


def test_partial_grid_marks_missing_cells_and_says_why(env, tmp_path):
    root, truth = env
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    keep = ["unet-c16-p64-s1", "unet-c16-p128-s1", "unet-c32-p64-s1", "unet_ag-c16-p64-s1", "unet_se-c16-p64-s1"]
    keep += ["unet_se-c16-p128-s1", "unet_se-c32-p64-s1"]
    for name in keep:
        shutil.copy(root / "metrics" / f"{name}.json", metrics)
    out = tmp_path / "paper"
    build_report(metrics, out, REPORT, STUDY, make_figures=True)
    t3 = (out / "table3.md").read_text()
    assert "7 of 24 cells present" in t3
    assert (out / "fbeta_vs_patch.png").stat().st_size > 10_000  # figures render with a partial grid too
    rows = [line for line in t3.splitlines() if line.startswith("| unet_cbam |")]
    assert len(rows) == 6 and all(md_row(r, "unet_cbam")[3] == "—" for r in rows)
    assert md_row(t3, "unet_cbam")[6] == "0.545"  # the paper's value is still shown
    assert "| 0 of 24 cells present" not in (out / "table4.md").read_text()
    st = (out / "statistics.md").read_text()
    ag = md_row(section(st, "## Attention modules"), "unet_ag vs unet")
    assert ag[1] == "1" and ag[VERDICT] == "cannot be computed: needs at least 2 matched pairs, have 1"
    se = md_row(section(st, "## Attention modules"), "unet_se vs unet")
    assert se[1] == "3" and se[VERDICT] in ("better", "worse", "inconclusive", "equivalent within the margin")
    cbam = md_row(section(st, "## Attention modules"), "unet_cbam vs unet")
    assert cbam[VERDICT] == "cannot be computed: no configuration was run for both"
    assert (
        "- unet_ag: cannot be computed (needs at least 2 matched pairs, have 1)."
        in (out / "conclusions.md").read_text()
    )
    assert "Missing: unet-c16-p96-s1" in st
    summary = section(st, "## Test F-beta per model")
    assert md_row(summary, "unet_cbam")[1:] == ["— ± —", "0"]
    for model in ("unet", "unet_ag", "unet_se"):  # means over the one configuration all three were run in
        assert md_row(summary, model)[1:] == [f"{truth[f'{model}-c16-p64-s1'][0]:.3f} ± —", "1"]


def test_models_run_on_disjoint_configurations_are_not_ranked(env, tmp_path):
    root, _ = env
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    for name in ("unet-c16-p64-s1", "unet-c16-p96-s1", "unet_se-c32-p64-s1", "unet_se-c32-p96-s1"):
        shutil.copy(root / "metrics" / f"{name}.json", metrics)
    out = tmp_path / "paper"
    build_report(metrics, out, REPORT, STUDY)
    conclusions = (out / "conclusions.md").read_text()
    assert "No configuration has a test score for every model that has one" in conclusions
    assert "has the highest mean test F-beta" not in conclusions


def test_latex_tables_are_well_formed(env, tmp_path):
    root, _ = env
    out = tmp_path / "paper"
    build_report(root / "metrics", out, REPORT, STUDY, make_figures=False)
    tex = (out / "table3.tex").read_text()
    if shutil.which("pdflatex"):
        import subprocess

        doc = tmp_path / "doc.tex"
        doc.write_text("\\documentclass{article}\\usepackage{booktabs}\\begin{document}\n" + tex + "\\end{document}\n")
        subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path, check=True)
    begins, ends = re.findall(r"\\begin\{(\w+)\}", tex), re.findall(r"\\end\{(\w+)\}", tex)
    assert begins == ends[::-1] == ["table", "tabular"]
    assert tex.count("\\toprule") == 1 and tex.count("\\bottomrule") == 1 and tex.count("\\midrule") == 4
    assert "unet\\_se & 16-32-64-128 & 32x64x64" in tex and "unet_se" not in tex
    assert "\\VAR{" not in tex and "\\BLOCK{" not in tex and "\\#{" not in tex
    assert tex.count("\\\\") == 2 + 24  # two header rows and 24 cells
    assert tex.count("{") == tex.count("}")


def test_latex_escape_and_formatting():
    from src.report.render import tex_escape

    assert tex_escape("a_b & 5% $x$ #1 {y} ~^\\") == (
        "a\\_b \\& 5\\% \\$x\\$ \\#1 \\{y\\} \\textasciitilde{}\\textasciicircum{}\\textbackslash{}"
    )
    assert fmt_p(float("nan")) == "—" and fmt_p(0.5) == "0.5000" and fmt_p(1.2e-5) == "1.20e-05"


def test_verdict_and_holm():
    c = stats.Paired("fbeta", "model", "unet", "unet_se", None, 12)
    s = Settings()

    def says(p_adj, low, high, p_tost=1.0, equivalence=True):
        x = dataclasses.replace(c, p_adj=p_adj, adj_low=low, adj_high=high, p_tost=p_tost)
        return verdict(x, s, "better", "worse", equivalence)

    assert says(0.01, 0.02, 0.1) == "better"
    assert says(0.01, -0.2, -0.1) == "worse"
    assert says(0.2, -0.02, 0.1) == "inconclusive"
    assert says(0.2, -0.01, 0.01, p_tost=0.01) == "equivalent within the margin"
    assert says(0.2, -0.01, 0.01, p_tost=0.01, equivalence=False) == "inconclusive"  # training minutes: no margin
    assert says(0.01, 0.001, 0.01, p_tost=0.01) == "better"  # a difference shown wins over equivalence
    assert says(float("nan"), 0.0, 0.0) == "cannot be computed"
    assert holm([0.01, 0.04, 0.03, float("nan")]) == pytest.approx([0.03, 0.06, 0.06, float("nan")], nan_ok=True)


def test_statistics_on_the_published_tables():
    published = load_published(STUDY)
    assert len(published) == 48
    means = stats.model_summary(published, STUDY)["mean"].round(3)
    assert means.to_dict() == {"unet": 0.590, "unet_ag": 0.566, "unet_se": 0.623, "unet_cbam": 0.644}
    by_model = {c.b: c for c in stats.attention_vs_baseline(published, STUDY, Settings())}
    assert by_model["unet_se"].p_t == pytest.approx(0.09, abs=0.005)
    assert by_model["unet_cbam"].p_t == pytest.approx(0.0001, abs=0.00005)
    assert by_model["unet_cbam"].verdict == "better"
    assert by_model["unet_se"].verdict == "inconclusive"
    wide = published.pivot(index=["channels", "patch", "sample"], columns="model", values="fbeta")
    d = (wide["unet_cbam"] - wide["unet"]).to_numpy()
    assert by_model["unet_cbam"].dz == pytest.approx(d.mean() / d.std(ddof=1))


def test_published_statistics_page_shows_the_papers_inconsistencies(env, tmp_path):
    root, _ = env
    out = tmp_path / "paper"
    build_report(root / "metrics", out, REPORT, STUDY, make_figures=False)
    text = (out / "published_statistics.md").read_text()
    assert md_row(section(text, "## The paper's text"), "unet")[1:] == ["0.610", "0.590", "+0.020"]
    assert md_row(section(text, "## The paper's text"), "unet_ag")[1:] == ["0.567", "0.566", "+0.001"]
    assert "at\n0.458 (32x64x64) and 0.579 (32x128x128); Table 4\ngives 0.554 and 0.657" in text
    assert "unet_se vs unet | 12 |" in text


def test_tables_say_when_a_cell_ran_other_sizes_than_the_papers():
    from src.report.build import patch_labels, ran_label

    runs = pd.DataFrame({"cell": ["unet-c16-p64-s1", "unet-c16-p96-s1"], "patch_size": [(16, 32, 32), (32, 96, 96)]})
    assert ran_label(runs, "unet-c16-p64-s1", "patch_size", (32, 64, 64), "x") == "32x64x64 (trained 16x32x32)"
    assert ran_label(runs, "unet-c16-p96-s1", "patch_size", (32, 96, 96), "x") == "32x96x96"
    assert ran_label(runs, "unet-c16-p128-s1", "patch_size", (32, 128, 128), "x") == "32x128x128"
    labels = patch_labels(runs.assign(patch=["p64", "p96"]), STUDY)
    assert labels == {"p64": "p64 (trained 16x32x32)", "p96": "p96 (trained 32x96x96)", "p128": trained("p128")}


CPU = {"cpu": "Test CPU", "cpu_count": 2, "gpu": None, "device": "cpu", "deterministic": True}
GPU = {"cpu": "Test CPU", "cpu_count": 16, "gpu": "Test GPU X", "device": "cuda", "deterministic": False}


def data_lines(tmp_path, name: str, logged: dict, hardware: dict, monkeypatch) -> tuple[dict, list[str]]:
    """A small grid (4 models x 3 patches, sample 1) logged with `logged` params on `hardware`, reported; returns
    (rendered text per table/page, the footer line of each figure)."""
    metrics, out = tmp_path / name / "metrics", tmp_path / name / "paper"
    rng = np.random.default_rng(3)
    for cell in (c for c in STUDY.configurations() if c.sample == "s1" and c.channels == "c16"):
        counts = make_counts(cell.sample, 0.55 + SHIFT[cell.model], rng)
        log_cell(cell, fbeta_of_counts(counts), 1.0, metrics, counts, hardware=hardware, logged=logged)
    footers = []
    original = figures._footer
    monkeypatch.setattr(figures, "_footer", lambda fig, source: (footers.append(source), original(fig, source)))
    written = build_report(metrics, out, REPORT, STUDY)
    texts = {p.name: p.read_text() for p in written if p.suffix in (".md", ".tex")}
    assert len(footers) == sum(p.suffix == ".png" for p in written) == 3
    return texts, footers


def test_every_table_and_figure_names_its_data_as_the_runs_logged_it(tmp_path, monkeypatch):
    monkeypatch.setenv(tracking.ENV_STORE, str(tmp_path / "mlruns"))
    demo = {"epochs": 2, "steps_per_epoch": 3, "data.source": "synthetic", "data.voxel_spacing": 20.0}
    demo |= {"synth.runs": 16, "synth.shape": "[48, 128, 128]"}
    portal = {"epochs": 7, "steps_per_epoch": 50, "data.source": "portal", "data.voxel_spacing": 10.012}
    portal |= {"data.portal_dataset": 10440}
    texts, footers = data_lines(tmp_path, "demo", demo, CPU, monkeypatch)
    expected = [
        "synthetic demo data (16 tomograms of 48x128x128)",
        "20.0 A voxels",
        f"{TEST_TOMOGRAMS} test tomograms (s1)",
        "2 epochs x 3 steps",
        "1 seed",
        "2-core Test CPU CPU",
    ]
    ours = [n for n in texts if n != "published_statistics.md"]
    assert len(ours) == 6  # tables 3 and 4 (md, tex), statistics, conclusions
    for text in [*(texts[n] for n in ours), *footers]:
        assert all(e in text.replace("\\_", "_") for e in expected), text[:600]
        assert "machines" not in text  # one machine: no note about comparing times across machines
    paper = yaml.safe_load((REPO / "src/report/paper_claims.yaml").read_text())["data"]
    for name in ("table3.md", "table4.md", "published_statistics.md"):
        assert paper in texts[name]
    assert "CZII" in texts["table3.tex"] and "real tomograms" in texts["table3.tex"]

    texts, footers = data_lines(tmp_path, "portal", portal, GPU, monkeypatch)
    for text in [*(texts[n] for n in ours), *footers]:
        assert "CryoET Data Portal dataset 10440" in text and "10.012 A voxels" in text
        assert "7 epochs x 50 steps" in text and "Test GPU X" in text
        assert "synthetic" not in text.split("Paper:")[0] and "-core" not in text.split("Paper:")[0]
