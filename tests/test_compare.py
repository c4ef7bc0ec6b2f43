"""`compare`: the three levels of reproduction on generated metrics folders, the training-noise estimate against an
independent fit, and a simulation of the statistical criterion's size (faithful reruns accepted) and power (broken
reruns rejected) on the default study's design."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats as sps
from typer.testing import CliRunner

from src.metric import class_fbeta
from src.params import load_params
from src.report import stats
from src.report.__main__ import app
from src.report.compare import Criterion, design, evaluate, exact_check, statistical_check, study_records
from src.report.noise import rerun_noise, seed_noise
from src.report.runs import frame_from_metrics
from src.study import Cell, Study
from tests.conftest import REPO

PARAMS = load_params(REPO / "params.yaml")
STUDY = Study.from_params(PARAMS)
SCORING = stats.Scoring.from_params(PARAMS)
CLASSES = sorted(SCORING.weights)
REPLICATE_SEEDS = (1, 2)  # the replicate block: these seeds of <model>-<first channels>-<first patch>-<first sample>
TOMOGRAMS = 2

# The generative model of the simulation, resembling the committed demo grid: its mean, the SD of its configurations'
# true means, and the attention models' effects on them.
TRUE_MEAN = 0.57
BETWEEN_SD = 0.09
# The part of BETWEEN_SD that differs between the models at one configuration: an additive fit of the committed grid
# (model + channels + patch + sample) leaves a residual SD of about 0.057, of which training noise is 0.039.
INTERACTION_SD = 0.04
EFFECTS = {"unet": 0.0, "unet_ag": 0.0, "unet_se": -0.05, "unet_cbam": -0.12}
# Training noise of one run, as the committed demo grid measured it. Seed noise: another seed (other initial weights,
# other crops); the replicate block's pooled SD was 0.090 (8 df). Rounding noise: the same seed computed with other
# arithmetic; the rerun block (1 against 2 threads, 12 pairs) gave 0.046, and the old 1-thread native-kernel grid
# against the 2-thread AVX2 one gave 0.036 over 48 pairs.
SEED_SD = 0.090
ROUNDING = 0.046
SIMULATIONS = 4000
# Labels shifted by a few voxels: a particle's label sphere (half its radius) moves partly off it, so the model learns
# displaced centres and the small particles' hits turn into misses while the large ones (ribosome, virus-like
# particle) still match. We take a configuration's score to lose the share that its small-particle hits carried, a
# share that depends on its class mix: drawn per configuration from this range (drops of about 0.1-0.3 at 0.57).
SMALL_SHARE = (0.2, 0.5)


# --- generated metrics folders ------------------------------------------------------------------------------------


def tiny_cells() -> list[Cell]:
    """Every model at the first channels and sample and the first two patches, seed 0, plus the replicate block."""
    c, s = STUDY.channel_keys[0], STUDY.samples[0]
    cells = [Cell(m, c, p, s) for m in STUDY.model_keys for p in STUDY.patch_keys[:2]]
    return cells + [Cell(m, c, STUDY.patch_keys[0], s, r) for m in STUDY.model_keys for r in REPLICATE_SEEDS]


def rescore(record: dict) -> dict:
    """test_score and test_fbeta from the record's counts, with the scorer's own arithmetic."""
    summed = stats.counts_array(record["test_counts"], CLASSES).sum(axis=0)
    _, _, fbeta = class_fbeta(summed[:, 0], summed[:, 1], summed[:, 2], SCORING.beta)
    record["test_fbeta"] = {name: float(v) for name, v in zip(CLASSES, fbeta, strict=True)}
    record["test_score"] = float(stats.score_counts(summed, CLASSES, SCORING))
    return record


def make_record(cell: Cell, recall: float, rng: np.random.Generator) -> dict:
    """A metrics file as training writes it, of a detector that finds about `recall` of every class's particles on
    the same test tomograms as every other cell."""
    particles = np.random.default_rng(0).integers(4, 16, size=(TOMOGRAMS, len(CLASSES)))
    counts = {}
    for t, row in enumerate(particles):
        found = np.clip(np.round(row * (recall + rng.normal(0, 0.05, len(CLASSES)))), 0, row).astype(int)
        false = rng.integers(0, row)
        counts[f"TS_{t}"] = {
            name: {"tp": int(tp), "fp": int(fp), "fn": int(n - tp)}
            for name, n, tp, fp in zip(CLASSES, row, found, false, strict=True)
        }
    record = {
        "cell": cell.run_name,
        "configuration": cell.name,
        "model": cell.model,
        "channels": cell.channels,
        "patch": cell.patch,
        "sample": cell.sample,
        "seed": cell.seed,
        "mlflow_run_id": rng.bytes(16).hex(),
        "test_counts": counts,
        "thresholds": {name: float(rng.choice([0.3, 0.5])) for name in CLASSES},
        "best_epoch": int(rng.integers(1, 9)),
        "val_best_score": float(rng.uniform(0.3, 0.7)),
        "weights_sha256": hashlib.sha256(rng.bytes(32)).hexdigest(),
        "train_minutes": float(rng.uniform(1, 2)),
    }
    return rescore(record)


def write_study(folder: Path, records: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for record in records:
        (folder / f"{record['cell']}.json").write_text(json.dumps(record, indent=1))
    return folder


def tiny_study(rng: np.random.Generator) -> list[dict]:
    recall = {m: 0.6 + 2 * e for m, e in EFFECTS.items()}
    return [make_record(c, recall[c.model], rng) for c in tiny_cells()]


def edited(records: list[dict], change) -> list[dict]:
    """A copy of the records with `change(record)` applied to each."""
    out = json.loads(json.dumps(records))
    for record in out:
        change(record)
    return out


def one_count_changed(records: list[dict]) -> list[dict]:
    """The records with one false positive more in one cell (its scores follow from its counts)."""
    out = edited(records, lambda r: None)
    first = out[0]["test_counts"][min(out[0]["test_counts"])][CLASSES[0]]
    first["fp"] += 1
    rescore(out[0])
    return out


def labels_shifted(record: dict) -> None:
    """A rerun whose detector misses most particles: every cell's score drops far beyond training noise."""
    for by_class in record["test_counts"].values():
        for c in by_class.values():
            lost = (c["tp"] + 1) // 2
            c["tp"], c["fn"] = c["tp"] - lost, c["fn"] + lost
    rescore(record)


@pytest.fixture(scope="module")
def committed(tmp_path_factory) -> list[dict]:
    return tiny_study(np.random.default_rng(5))


@pytest.fixture(scope="module")
def fast_params(tmp_path_factory) -> Path:
    """params.yaml with few bootstrap resamples: the conclusions' intervals are not what these tests check."""
    import yaml

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["report"]["bootstrap_resamples"] = 99
    path = tmp_path_factory.mktemp("params") / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def run_compare(params: Path, rerun: Path, *options: str):
    result = CliRunner().invoke(app, ["compare", str(rerun), *options, "--params", str(params)])
    return result, result.output.splitlines()[0] if result.output else ""


# --- level 1: exact -----------------------------------------------------------------------------------------------


def test_exact_needs_every_cell_and_field_the_same(committed):
    same = edited(committed, lambda r: r.update(mlflow_run_id="another", train_minutes=99.0, hardware={"gpu": "X"}))
    check = exact_check(committed, same, STUDY)
    assert check.exact and check.without_hash == 0

    counted = exact_check(committed, one_count_changed(committed), STUDY)
    assert not counted.exact
    assert counted.differing == {committed[0]["cell"]: ("test_score", "test_fbeta", "test_counts")}

    rehashed = edited(committed, lambda r: r.update(weights_sha256=hashlib.sha256(r["cell"].encode()).hexdigest()))
    assert set(exact_check(committed, rehashed, STUDY).differing.values()) == {("weights_sha256",)}

    unhashed = edited(committed, lambda r: r.pop("weights_sha256"))
    assert exact_check(unhashed, rehashed, STUDY).exact  # not compared where the committed file has no hash ...
    assert exact_check(unhashed, rehashed, STUDY).without_hash == len(committed)  # ... and counted
    assert not exact_check(committed, unhashed, STUDY).exact  # a rerun without the hash the committed file has

    fewer = exact_check(committed, committed[1:], STUDY)
    assert fewer.missing == (committed[0]["cell"],) and not fewer.exact
    assert exact_check(committed[1:], committed, STUDY).extra == (committed[0]["cell"],)


def rerun_block(records: list[dict]) -> list[dict]:
    """The committed study's rerun block: its replicated configurations' runs again, one false positive apart."""
    replicated = {r["configuration"] for r in records if r["seed"] != 0}
    return [one_count_changed([r])[0] for r in json.loads(json.dumps(records)) if r["configuration"] in replicated]


def test_exact_covers_the_rerun_block_too(committed, tmp_path):
    ours = write_study(tmp_path / "committed", committed)
    write_study(ours / "reruns", rerun_block(committed))
    copy = write_study(tmp_path / "copy", committed)
    check = exact_check(study_records(ours), study_records(copy), STUDY)  # a rerun that did not run the block
    assert not check.exact and all(n.startswith("reruns/") for n in check.missing)
    write_study(copy / "reruns", rerun_block(committed))
    assert exact_check(study_records(ours), study_records(copy), STUDY).exact
    write_study(copy / "reruns", rerun_block(rerun_block(committed)))
    differing = exact_check(study_records(ours), study_records(copy), STUDY).differing
    assert differing and all(n.startswith("reruns/") for n in differing)


# --- training noise ---------------------------------------------------------------------------------------------------


def test_seed_noise_is_the_residual_sd_of_a_fit_by_configuration():
    rng = np.random.default_rng(2)
    cells = tiny_cells()
    runs = pd.DataFrame({"cell": [c.name for c in cells], "seed": [c.seed for c in cells]})
    runs["fbeta"] = rng.normal(0.5, 0.05, len(runs))
    noise = seed_noise(runs)
    replicated = runs[runs.groupby("cell")["seed"].transform("nunique") > 1]
    fit = smf.ols("fbeta ~ C(cell)", replicated).fit()
    assert noise.sigma == pytest.approx(np.sqrt(fit.scale)) and noise.df == fit.df_resid
    assert noise.configurations == replicated["cell"].nunique() and noise.runs == len(replicated)
    chi2 = sps.chi2(noise.df)
    assert noise.low**2 == pytest.approx(fit.scale * noise.df / chi2.ppf(0.975))
    assert noise.high**2 == pytest.approx(fit.scale * noise.df / chi2.ppf(0.025))
    assert seed_noise(runs[runs["seed"] == 0]) is None


# --- the command ------------------------------------------------------------------------------------------------------


def test_rerun_noise_pairs_each_rerun_with_its_run_and_its_interval_covers():
    """sigma = sqrt(sum d^2 / 2n) with n degrees of freedom: its chi-square interval covers the true sigma 95 % of the
    time, which it would not with n - 1 (the pairs' mean difference is 0 by design, not estimated)."""
    rng = np.random.default_rng(3)
    cells = tiny_cells()
    runs = pd.DataFrame({"cell": [c.name for c in cells], "seed": [c.seed for c in cells]})
    runs["fbeta"] = rng.normal(0.5, 0.1, len(runs))
    block = runs.iloc[:5].copy()
    block["fbeta"] += [0.01, -0.02, 0.03, 0.0, -0.01]
    noise = rerun_noise(runs, block)
    assert (noise.df, noise.runs) == (5, 5)
    assert noise.sigma == pytest.approx(np.sqrt((0.01**2 + 0.02**2 + 0.03**2 + 0.01**2) / 10))
    assert rerun_noise(runs, block.assign(seed=9)) is None  # no pair: a rerun of a run the study does not have

    sigma, n, covered = 0.03, 12, 0
    pairs = pd.DataFrame({"cell": [f"c{i}" for i in range(n)], "seed": 0, "fbeta": 0.5})
    for _ in range(2000):
        again = pairs.assign(fbeta=pairs["fbeta"] + rng.normal(0, sigma * np.sqrt(2), n))
        estimate = rerun_noise(pairs, again)
        covered += estimate.low <= sigma <= estimate.high
    assert 0.93 <= covered / 2000 <= 0.97


def test_cli_takes_sigma_from_the_rerun_block(committed, fast_params, tmp_path):
    ours = write_study(tmp_path / "committed", committed)
    write_study(ours / "reruns", rerun_block(committed))
    result, level = run_compare(
        fast_params, write_study(tmp_path / "one", one_count_changed(committed)), "--metrics-dir", str(ours)
    )
    assert (result.exit_code, level) == (0, "Level: statistically reproduced"), result.output
    assert "rounding noise from the committed study's rerun block" in result.output
    assert f"{len(rerun_block(committed))} degrees of freedom" in result.output
    broken = write_study(tmp_path / "broken", edited(committed, labels_shifted))
    result, level = run_compare(fast_params, broken, "--metrics-dir", str(ours))
    assert (result.exit_code, level) == (1, "Level: not reproduced"), result.output


def test_cli_levels_and_exit_codes(committed, fast_params, tmp_path):
    ours = write_study(tmp_path / "committed", committed)
    base = ("--metrics-dir", str(ours))

    result, level = run_compare(fast_params, write_study(tmp_path / "copy", committed), *base)
    assert (result.exit_code, level) == (0, "Level: exact"), result.output
    assert f"all {len(committed)} cells identical" in result.output

    result, level = run_compare(fast_params, write_study(tmp_path / "one", one_count_changed(committed)), *base)
    assert (result.exit_code, level) == (0, "Level: statistically reproduced"), result.output
    assert f"1 of {len(committed)} cells differ (first: {committed[0]['cell']}: test_score" in result.output

    broken = write_study(tmp_path / "broken", edited(committed, labels_shifted))
    result, level = run_compare(fast_params, broken, *base)
    assert (result.exit_code, level) == (1, "Level: not reproduced"), result.output
    assert "- grid mean: rerun - committed -" in result.output


def test_cli_without_replicates_needs_sigma_and_bad_input_exits_2(committed, fast_params, tmp_path):
    seed_zero = write_study(tmp_path / "committed", [r for r in committed if r["seed"] == 0])
    rerun = write_study(tmp_path / "rerun", one_count_changed([r for r in committed if r["seed"] == 0]))
    result, _ = run_compare(fast_params, rerun, "--metrics-dir", str(seed_zero))
    assert result.exit_code == 2 and "pass --sigma" in result.output

    result, level = run_compare(fast_params, rerun, "--metrics-dir", str(seed_zero), "--sigma", str(ROUNDING))
    assert (result.exit_code, level) == (0, "Level: statistically reproduced"), result.output
    assert (
        "--sigma (the committed study has no configuration with two or more seeds and no rerun block)" in result.output
    )

    for options in (["--sigma", "-1"], ["--alpha", "0.7"], ["--sigma-df", "4"]):
        result, _ = run_compare(fast_params, rerun, "--metrics-dir", str(seed_zero), *options)
        assert result.exit_code == 2 and result.output.startswith("error: "), (options, result.output)
    result, _ = run_compare(fast_params, tmp_path / "nothing", "--metrics-dir", str(seed_zero))
    assert result.exit_code == 2 and "error: no cell metrics" in result.output


def test_a_rerun_without_some_committed_cells_is_not_reproduced(committed, tmp_path):
    ours = frame_from_metrics(write_study(tmp_path / "committed", committed), STUDY)
    seed_zero = [r for r in committed if r["seed"] == 0]
    theirs = frame_from_metrics(write_study(tmp_path / "rerun", seed_zero), STUDY)
    noise = seed_noise(ours)
    checked = statistical_check(ours, theirs, STUDY, noise, "replicates", Criterion())
    assert checked.result.passed and not checked.reproduced  # what is there passes; what is missing fails
    assert set(checked.design.missing) == {r["cell"] for r in committed if r["seed"] != 0}
    assert f"{len(committed) - len(seed_zero)} committed cells are not in the rerun" in checked.failures(3)[-1]


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@example.org", *args], cwd=repo, check=True)


def test_committed_rev_reads_the_committed_metrics_from_git(committed, fast_params, tmp_path, monkeypatch):
    """A clone where `dvc repro` rewrote metrics/: the working copy is the rerun, HEAD holds the committed study."""
    repo = tmp_path / "clone"
    write_study(repo / "metrics", committed)
    git(repo, "init", "-q")
    git(repo, "add", "metrics")
    git(repo, "commit", "-q", "-m", "the committed study")
    shutil.rmtree(repo / "metrics")
    write_study(repo / "metrics", edited(committed, labels_shifted))
    monkeypatch.chdir(repo)

    # An exact copy of HEAD's study is exact only if HEAD is what it is compared with, not the working copy.
    result, level = run_compare(fast_params, write_study(tmp_path / "copy", committed), "--committed-rev", "HEAD")
    assert (result.exit_code, level) == (0, "Level: exact"), result.output
    result, _ = run_compare(fast_params, Path("metrics"), "--committed-rev", "no-such-revision")
    assert result.exit_code == 2 and "at git revision no-such-revision" in result.output


# --- the criterion's size and power, simulated ------------------------------------------------------------------------


def default_runs() -> pd.DataFrame:
    """The runs of the default study: every configuration with seed 0, and the replicate block."""
    c, p, s = STUDY.channel_keys[0], STUDY.patch_keys[0], STUDY.samples[0]
    cells = STUDY.configurations() + [Cell(m, c, p, s, r) for m in STUDY.model_keys for r in REPLICATE_SEEDS]
    keys = ("model", "channels", "patch", "sample", "seed")
    return pd.DataFrame([{"cell": x.name, **{k: getattr(x, k) for k in keys}} for x in cells])


def true_means(rng: np.random.Generator, size: int) -> np.ndarray:
    """(simulations, models, positions): the true mean of every configuration, a position being its channels x
    patch x sample; the grid's positions differ as much for every model, the models' effects add to them."""
    positions = len(STUDY.channel_keys) * len(STUDY.patch_keys) * len(STUDY.samples)
    models = len(STUDY.model_keys)
    shared = rng.normal(0, np.sqrt(BETWEEN_SD**2 - INTERACTION_SD**2), size=(size, 1, positions))
    own = rng.normal(0, INTERACTION_SD, size=(size, models, positions))
    effects = np.array([EFFECTS[m] for m in STUDY.model_keys])[None, :, None]
    return TRUE_MEAN + effects + shared + own


def run_index(runs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Each run's model and position in `true_means`."""
    model = runs["model"].map({m: i for i, m in enumerate(STUDY.model_keys)}).to_numpy()
    positions = pd.MultiIndex.from_product([STUDY.channel_keys, STUDY.patch_keys, STUDY.samples])
    position = positions.get_indexer(pd.MultiIndex.from_frame(runs[["channels", "patch", "sample"]]))
    return model, position


def baseline_rows(runs: pd.DataFrame) -> np.ndarray:
    """For each run, the row of the baseline's run at its configuration and seed."""
    where = runs[["channels", "patch", "sample", "seed"]].astype(str).agg("-".join, axis=1)
    base = {w: i for i, (w, m) in enumerate(zip(where, runs["model"], strict=True)) if m == STUDY.baseline}
    return where.map(base).to_numpy(int)


def block_rows(runs: pd.DataFrame) -> np.ndarray:
    """The rows of the runs the default study's rerun block trains again."""
    held = {(c.name, c.seed) for c in STUDY.rerun_cells()}
    return np.array([i for i, key in enumerate(zip(runs["cell"], runs["seed"], strict=True)) if key in held])


def acceptance(runs: pd.DataFrame, truth: np.ndarray, rng: np.random.Generator, broken=None) -> float:
    """The share of simulated reruns `compare` accepts. Each run scores its configuration's true mean, plus its seed's
    effect (SEED_SD), plus its arithmetic's rounding (ROUNDING). A faithful rerun keeps the seeds and redraws the
    rounding; sigma comes from the committed rerun block (its runs again with new rounding), every check at the
    default criterion. `broken(clean, truth, seed_effects)` gives a broken rerun's scores before rounding."""
    model, position = run_index(runs)
    shape = (truth.shape[0], len(runs))
    seed_effects = rng.normal(0, SEED_SD, shape)
    clean = truth[:, model, position] + seed_effects
    committed = clean + rng.normal(0, ROUNDING, shape)
    rerun = (clean if broken is None else broken(clean, truth, seed_effects)) + rng.normal(0, ROUNDING, shape)
    block = block_rows(runs)
    again = clean[:, block] + rng.normal(0, ROUNDING, (shape[0], len(block)))
    sigma = np.sqrt(np.sum((again - committed[:, block]) ** 2, axis=-1) / (2 * len(block)))
    d, rows_c, rows_r = design(runs, runs, STUDY, len(block), Criterion())
    return float(evaluate(d, committed[:, rows_c], rerun[:, rows_r], sigma).passed.mean())


def disabled(runs: pd.DataFrame, model: str):
    """`model`'s attention silently off: with the same seed its network is the baseline's, so each of its runs
    scores as the baseline's run at the same configuration and seed."""
    rows = np.flatnonzero(runs["model"].to_numpy() == model)
    base = baseline_rows(runs)[rows]

    def broken(clean, truth, seed_effects):
        out = clean.copy()
        out[:, rows] = clean[:, base]
        return out

    return broken


def test_simulated_faithful_reruns_pass_and_broken_ones_fail():
    rng = np.random.default_rng(20240601)
    runs = default_runs()
    truth = true_means(rng, SIMULATIONS)
    accepted = acceptance(runs, truth, rng)
    power = {f"{m} attention disabled": 1 - acceptance(runs, truth, rng, disabled(runs, m)) for m in STUDY.variants}
    share = rng.uniform(*SMALL_SHARE, size=(SIMULATIONS, len(runs)))
    power["labels shifted"] = 1 - acceptance(runs, truth, rng, lambda clean, *_: clean * (1 - share))

    pairs = len(block_rows(runs))
    print(f"\n{SIMULATIONS} simulations, sigma from {pairs} rerun pairs: faithful reruns accepted {accepted:.3f}")
    for case, p in power.items():
        print(f"  power, {case}: {p:.3f}")
    for dof in (pairs, np.inf):
        d, *_ = design(runs, runs, STUDY, dof, Criterion())
        tolerances = ", ".join(f"{t.check} +-{t.value(ROUNDING):.4f}" for t in (*d.tests, d.cell_check))
        print(f"  tolerances at sigma {ROUNDING} ({'known' if np.isinf(dof) else f'{dof} df'}): {tolerances}")

    assert pairs == 12  # the default rerun block: every model at c16-p64-s1, seeds 0, 1 and 2
    assert accepted >= 0.93  # the criterion's target is 0.95; the slack is Monte-Carlo error
    # Disabling CBAM moves its effect by 0.12 and each of its cells by the gap to the baseline's run of the same seed
    # (seed noise included); SE's 0.05 and AG's 0 are smaller: their power is printed, not held.
    assert power["unet_cbam attention disabled"] >= 0.85
    assert power["labels shifted"] >= 0.99
