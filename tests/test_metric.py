"""Tests of the CZII competition metric: one hand-worked case per scorer quirk, a brute-force property test, the real
TS_73_6 ground truth, and CSV reading errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from src.classes import CZII_CLASSES, ParticleClass
from src.errors import DataError, UserError
from src.metric import ClassScore, ScoreResult, fbeta_score, match_counts, read_points_csv

TS_73_6 = Path(__file__).parent / "data" / "ts_73_6_ground_truth.csv"
COLUMNS = ["experiment", "particle_type", "x", "y", "z"]


def frame(rows) -> pd.DataFrame:
    """A points DataFrame from (experiment, particle_type, x, y, z) tuples."""
    return pd.DataFrame(list(rows), columns=COLUMNS).astype({"x": float, "y": float, "z": float})


def fbeta_formula(tp: int, fp: int, fn: int, beta: float = 4.0) -> float:
    precision = tp / (tp + fp) if tp + fp > 0 else 0.0
    recall = tp / (tp + fn) if tp + fn > 0 else 0.0
    if precision + recall == 0:
        return 0.0
    return (1 + beta**2) * precision * recall / (beta**2 * precision + recall)


def counts(result: ScoreResult, name: str) -> tuple[int, int, int]:
    c = result.classes[name]
    return c.tp, c.fp, c.fn


# --- hand-worked cases, one per quirk ---------------------------------------------------------------------------------


def test_distance_equal_to_radius_is_a_hit_and_just_beyond_is_not():
    # apo-ferritin radius 60 A, multiplier 0.5 -> match radius 30 A.
    solution = frame([("T1", "apo-ferritin", 100, 200, 300)])
    at_radius = fbeta_score(solution, frame([("T1", "apo-ferritin", 130.0, 200, 300)]))
    beyond = fbeta_score(solution, frame([("T1", "apo-ferritin", 130.001, 200, 300)]))
    assert counts(at_radius, "apo-ferritin") == (1, 0, 0)
    assert at_radius.score == pytest.approx(1 / 7)
    assert counts(beyond, "apo-ferritin") == (0, 1, 1)
    assert beyond.score == 0.0
    ref = np.array([[0.0, 0.0, 0.0]])
    assert match_counts(ref, np.array([[3.0, 4.0, 0.0]]), 5.0) == (1, 0, 0)
    assert match_counts(ref, np.array([[3.0, 4.0, 0.001]]), 5.0) == (0, 1, 1)


def test_one_prediction_between_two_references_counts_both():
    # ribosome match radius 75 A; the prediction is 50 A from both references.
    solution = frame([("T1", "ribosome", 0, 0, 0), ("T1", "ribosome", 100, 0, 0)])
    result = fbeta_score(solution, frame([("T1", "ribosome", 50, 0, 0)]))
    c = result.classes["ribosome"]
    assert (c.tp, c.fp, c.fn) == (2, -1, 0)
    assert c.precision == 2.0  # 2 / (2 - 1): the scorer's precision can exceed 1
    assert c.recall == 1.0
    assert c.fbeta == pytest.approx(17 * 2.0 / (16 * 2.0 + 1))
    assert result.score == pytest.approx(c.fbeta / 7)


def test_duplicate_predictions_of_one_reference_are_false_positives_but_one():
    solution = frame([("T1", "thyroglobulin", 10, 10, 10)])
    result = fbeta_score(solution, frame([("T1", "thyroglobulin", 10, 10, 10)] * 2))
    assert counts(result, "thyroglobulin") == (1, 1, 0)
    assert result.classes["thyroglobulin"].precision == 0.5
    assert result.score == pytest.approx(2 * fbeta_formula(1, 1, 0) / 7)


def test_counts_are_summed_over_tomograms_before_f_beta():
    # T1: one reference found (1, 0, 0). T2: three references, no predictions (0, 0, 3). Summed: (1, 0, 3).
    solution = frame([("T1", "apo-ferritin", 0, 0, 0)] + [("T2", "apo-ferritin", 1000 * i, 0, 0) for i in range(3)])
    result = fbeta_score(solution, frame([("T1", "apo-ferritin", 0, 0, 0)]))
    assert counts(result, "apo-ferritin") == (1, 0, 3)
    precision, recall = 1 / (1 + 0), 1 / (1 + 3)
    micro = 17 * precision * recall / (16 * precision + recall)
    macro = (fbeta_formula(1, 0, 0) + fbeta_formula(0, 0, 3)) / 2  # 0.5, what per-tomogram averaging would give
    assert result.classes["apo-ferritin"].fbeta == pytest.approx(micro)
    assert micro != pytest.approx(macro)
    assert result.score == pytest.approx(micro / 7)
    assert result.per_tomogram == {"T1": {"apo-ferritin": (1, 0, 0)}, "T2": {"apo-ferritin": (0, 0, 3)}}
    assert result.counts_by_tomogram()["T2"]["apo-ferritin"] == {"tp": 0, "fp": 0, "fn": 3}


def test_score_is_divided_by_the_sum_of_all_class_weights():
    solution = frame([("T1", "ribosome", 500 * i, 0, 0) for i in range(4)])
    result = fbeta_score(solution, solution)
    assert list(result.classes) == ["ribosome"]  # only classes present in the solution are scored
    assert result.classes["ribosome"].fbeta == 1.0
    assert result.score == pytest.approx(1 / 7)


def test_predictions_for_experiments_absent_from_the_solution_are_dropped():
    solution = frame([("T1", "ribosome", 0, 0, 0), ("T1", "apo-ferritin", 500, 0, 0)])
    submission = frame([("T1", "ribosome", 10, 0, 0)])
    extra = frame([("T9", "ribosome", 0, 0, 0), ("T9", "apo-ferritin", 5, 5, 5)])
    base = fbeta_score(solution, submission)
    with_extra = fbeta_score(solution, pd.concat([submission, extra], ignore_index=True))
    assert with_extra.to_dict() == base.to_dict()
    assert counts(with_extra, "ribosome") == (1, 0, 0)


def test_unknown_particle_type_in_submission_raises_user_error():
    solution = frame([("T1", "ribosome", 0, 0, 0)])
    with pytest.raises(UserError, match="proteasome"):
        fbeta_score(solution, frame([("T1", "proteasome", 0, 0, 0)]))


def test_unknown_particle_type_in_a_dropped_experiment_is_ignored():
    # The Kaggle scorer drops other experiments before it checks particle types.
    solution = frame([("T1", "ribosome", 0, 0, 0)])
    result = fbeta_score(solution, frame([("T1", "ribosome", 0, 0, 0), ("T9", "proteasome", 0, 0, 0)]))
    assert result.score == pytest.approx(1 / 7)


def test_unknown_particle_type_in_solution_and_duplicated_solution_rows_raise_user_error():
    with pytest.raises(UserError, match="proteasome"):
        fbeta_score(frame([("T1", "proteasome", 0, 0, 0)]), frame([]))
    duplicated = frame([("T1", "ribosome", 1, 2, 3), ("T1", "apo-ferritin", 1, 2, 3)])
    with pytest.raises(UserError, match="duplicated"):
        fbeta_score(duplicated, frame([]))


def test_empty_submission_scores_zero_with_every_reference_a_false_negative():
    solution = frame([("T1", "ribosome", 0, 0, 0), ("T1", "ribosome", 900, 0, 0), ("T2", "apo-ferritin", 0, 0, 0)])
    result = fbeta_score(solution, frame([]))
    assert result.score == 0.0
    assert counts(result, "ribosome") == (0, 0, 2)
    assert counts(result, "apo-ferritin") == (0, 0, 1)
    assert match_counts(np.zeros((2, 3)), np.empty((0, 3)), 1.0) == (0, 0, 2)


def test_class_with_references_in_one_tomogram_and_predictions_in_another():
    # apo-ferritin references only in T1; the predictions sit at the same coordinates but in T2 (which is in the
    # solution through its ribosome), so they are all false positives and the T1 references all false negatives.
    solution = frame(
        [("T1", "apo-ferritin", 0, 0, 0), ("T1", "apo-ferritin", 500, 0, 0), ("T2", "ribosome", 2000, 0, 0)]
    )
    submission = frame([("T2", "apo-ferritin", x, 0, 0) for x in (0, 500, 9)])
    result = fbeta_score(solution, submission)
    assert counts(result, "apo-ferritin") == (0, 3, 2)
    assert counts(result, "ribosome") == (0, 0, 1)
    assert result.score == 0.0
    assert match_counts(np.empty((0, 3)), np.zeros((3, 3)), 1.0) == (0, 3, 0)


def test_predicted_class_absent_from_the_solution_is_not_scored():
    solution = frame([("T1", "ribosome", 0, 0, 0)])
    result = fbeta_score(solution, frame([("T1", "ribosome", 0, 0, 0), ("T1", "virus-like-particle", 0, 0, 0)]))
    assert list(result.classes) == ["ribosome"]
    assert result.score == pytest.approx(1 / 7)


def test_beta_and_distance_multiplier_are_applied():
    solution = frame([("T1", "ribosome", 0, 0, 0), ("T1", "ribosome", 1000, 0, 0)])
    submission = frame([("T1", "ribosome", 100, 0, 0), ("T1", "ribosome", 3000, 0, 0)])
    assert counts(fbeta_score(solution, submission), "ribosome") == (0, 2, 2)  # 100 A > 75 A
    wide = fbeta_score(solution, submission, beta=1.0, distance_multiplier=1.0)  # 100 A <= 150 A
    assert counts(wide, "ribosome") == (1, 1, 1)
    assert wide.classes["ribosome"].fbeta == pytest.approx(0.5)
    with pytest.raises(UserError):
        fbeta_score(solution, submission, distance_multiplier=-1.0)


# --- property test against a brute-force scorer ----------------------------------------------------------------------

# Small radii and a 0.5 A grid: squared distances are exact in floating point, so both implementations agree on
# points exactly at the radius, and coincident points are common.
TOY_CLASSES = (
    ParticleClass("a", 1, 2.0, 1.0),  # match radius 1.0
    ParticleClass("b", 2, 5.0, 2.0),  # match radius 2.5
    ParticleClass("c", 3, 10.0, 0.0),  # match radius 5.0 (3-4-5 triangles lie exactly on it)
    ParticleClass("d", 4, 4.0, 3.0),  # usually absent, but its weight is still in the denominator
)
TOY_RADIUS = {c.name: 0.5 * c.radius for c in TOY_CLASSES}
TOY_WEIGHT = {c.name: c.weight for c in TOY_CLASSES}

grid = st.integers(0, 12).map(lambda i: i / 2)
point = st.tuples(grid, grid, grid)
row = st.tuples(st.sampled_from(["T1", "T2", "T3"]), st.sampled_from(["a", "b", "c", "d"]), grid, grid, grid)


def brute_counts(reference, candidates, radius) -> tuple[int, int, int]:
    found = set()
    for cx, cy, cz in candidates:
        for i, (rx, ry, rz) in enumerate(reference):
            if (cx - rx) ** 2 + (cy - ry) ** 2 + (cz - rz) ** 2 <= radius**2:
                found.add(i)
    tp = len(found)
    return tp, len(candidates) - tp, len(reference) - tp


def brute_score(solution_rows, submission_rows, beta=4.0) -> tuple[float, dict]:
    experiments = {r[0] for r in solution_rows}
    names = {r[1] for r in solution_rows}
    totals = {}
    for name in names:
        tp = fp = fn = 0
        for experiment in experiments:
            ref = [r[2:] for r in solution_rows if r[0] == experiment and r[1] == name]
            cand = [r[2:] for r in submission_rows if r[0] == experiment and r[1] == name]
            t, f, n = brute_counts(ref, cand, TOY_RADIUS[name])
            tp, fp, fn = tp + t, fp + f, fn + n
        totals[name] = (tp, fp, fn)
    score = sum(TOY_WEIGHT[name] * fbeta_formula(*totals[name], beta=beta) for name in names)
    return score / sum(TOY_WEIGHT.values()), totals


@settings(max_examples=100, deadline=None)
@given(
    reference=st.lists(point, max_size=8),
    candidates=st.lists(point, max_size=8),
    radius=st.sampled_from([0.0, 0.5, 1.0, 2.5, 5.0]),
)
def test_match_counts_equals_brute_force(reference, candidates, radius):
    expected = brute_counts(reference, candidates, radius)
    ref = np.array(reference, dtype=float).reshape(-1, 3)
    cand = np.array(candidates, dtype=float).reshape(-1, 3)
    assert match_counts(ref, cand, radius) == expected


@settings(max_examples=75, deadline=None)
@given(
    solution_rows=st.lists(row, max_size=14, unique_by=lambda r: (r[0], r[2], r[3], r[4])),
    submission_rows=st.lists(row, max_size=14),
    beta=st.sampled_from([1.0, 4.0]),
)
def test_fbeta_score_equals_brute_force(solution_rows, submission_rows, beta):
    # The submission may use T3 where the solution has none; those rows must be dropped by both.
    expected_score, expected_counts = brute_score(solution_rows, submission_rows, beta)
    result = fbeta_score(frame(solution_rows), frame(submission_rows), classes=TOY_CLASSES, beta=beta)
    assert {name: counts(result, name) for name in result.classes} == expected_counts
    for name in result.classes:  # the per-tomogram counts add up to the micro-averaged ones
        summed = [sum(c) for c in zip(*(by_class[name] for by_class in result.per_tomogram.values()), strict=True)]
        assert tuple(summed) == counts(result, name)
    assert result.score == pytest.approx(expected_score, rel=1e-12, abs=1e-15)


# --- perfect submissions, row order, id column ------------------------------------------------------------------------


def test_perfect_submission_on_ts_73_6_scores_exactly_one():
    solution = read_points_csv(TS_73_6)
    assert len(solution) == 217
    assert set(solution["particle_type"]) == {c.name for c in CZII_CLASSES}
    result = fbeta_score(solution, solution)
    assert result.score == 1.0
    assert all(c.fbeta == 1.0 and c.fp == 0 and c.fn == 0 for c in result.classes.values())

    with_id = pd.read_csv(TS_73_6)  # keeps its id column
    shuffled = with_id.sample(frac=1.0, random_state=0)
    assert fbeta_score(with_id, shuffled).to_dict() == result.to_dict()

    # A partly wrong submission gives the same result whatever the row order.
    partial = with_id.iloc[::3].assign(x=lambda d: d["x"] + 40.0)
    a = fbeta_score(solution, partial)
    b = fbeta_score(solution.sample(frac=1.0, random_state=1), partial.sample(frac=1.0, random_state=2))
    assert a.to_dict() == b.to_dict()
    assert 0.0 < a.score < 1.0


def test_perfect_submission_on_synthetic_multi_tomogram_solution_scores_exactly_one():
    rng = np.random.default_rng(0)
    rows = [
        (f"TS_{t}", c.name, *rng.uniform(0, 6000, size=3))
        for t in range(5)
        for c in CZII_CLASSES
        for _ in range(rng.integers(1, 30))
    ]
    solution = frame(rows)
    result = fbeta_score(solution, solution.sample(frac=1.0, random_state=3).assign(id=range(len(solution))))
    assert result.score == 1.0
    assert sum(c.tp for c in result.classes.values()) == len(solution)


def test_many_tomograms_score_perfectly():
    # Timing lives in benchmarks, not here; this checks the grouping keeps tomograms and classes apart at scale.
    rng = np.random.default_rng(1)
    n_tomograms, per_class = 300, 20
    n = n_tomograms * len(CZII_CLASSES) * per_class
    solution = pd.DataFrame(
        {
            "experiment": np.repeat([f"TS_{i}" for i in range(n_tomograms)], len(CZII_CLASSES) * per_class),
            "particle_type": np.tile(np.repeat([c.name for c in CZII_CLASSES], per_class), n_tomograms),
            "x": rng.uniform(0, 6000, n),
            "y": rng.uniform(0, 6000, n),
            "z": rng.uniform(0, 2000, n),
        }
    )
    result = fbeta_score(solution, solution)
    assert result.score == 1.0
    assert all(c.tp == n_tomograms * per_class for c in result.classes.values())


# --- reading CSVs -----------------------------------------------------------------------------------------------------


def test_read_points_csv_types_and_id(tmp_path):
    path = tmp_path / "picks.csv"
    path.write_text("id,experiment,particle_type,x,y,z\n0,001,ribosome,1,2.5,3e2\n1,NA,apo-ferritin, 4 ,5,6\n")
    points = read_points_csv(path)
    assert list(points.columns) == COLUMNS
    assert points["experiment"].tolist() == ["001", "NA"]
    assert points[["x", "y", "z"]].dtypes.tolist() == [np.float64] * 3
    assert points.loc[0, "z"] == 300.0 and points.loc[1, "x"] == 4.0


def test_read_points_csv_missing_file(tmp_path):
    with pytest.raises(DataError, match="nope.csv.*does not exist"):
        read_points_csv(tmp_path / "nope.csv")


def test_read_points_csv_missing_column(tmp_path):
    path = tmp_path / "picks.csv"
    path.write_text("experiment,particle_type,x,y\nT1,ribosome,1,2\n")
    with pytest.raises(DataError, match="lacks column.*z"):
        read_points_csv(path)


@pytest.mark.parametrize("value", ["abc", "", "inf", "nan"])
def test_read_points_csv_bad_coordinate_names_the_row(tmp_path, value):
    path = tmp_path / "picks.csv"
    path.write_text(f"experiment,particle_type,x,y,z\nT1,ribosome,1,2,3\nT1,ribosome,1,{value},3\n")
    with pytest.raises(DataError, match="non-finite y.*data row 2"):
        read_points_csv(path)


def test_read_points_csv_not_csv(tmp_path):
    path = tmp_path / "picks.csv"
    path.write_text("experiment,particle_type,x,y,z\nT1,ribosome,1,2,3,4,5\n")
    with pytest.raises(DataError, match="cannot be read as CSV"):
        read_points_csv(path)
    path.write_text("experiment,particle_type,x,y,z\nT1,ribosome,1,2,3\nT1,ribosome,1,2,3,4,5\n")
    with pytest.raises(DataError, match="cannot be read as CSV"):
        read_points_csv(path)
    path.write_text("experiment,particle_type,x,y,z\nT1,ribosome,1,2\n")  # a short row leaves z empty
    with pytest.raises(DataError, match="non-finite z.*data row 1"):
        read_points_csv(path)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="cannot be read as CSV"):
        read_points_csv(empty)


# --- result formats ---------------------------------------------------------------------------------------------------


def test_to_dict_is_json_serialisable_with_exact_keys():
    solution = frame([("T1", "ribosome", 0, 0, 0), ("T1", "apo-ferritin", 500, 0, 0)])
    result = fbeta_score(solution, frame([("T1", "ribosome", 5, 0, 0)]))
    data = json.loads(json.dumps(result.to_dict()))
    assert set(data) == {"score", "classes"}
    assert set(data["classes"]) == {"ribosome", "apo-ferritin"}
    for entry in data["classes"].values():
        assert set(entry) == {"tp", "fp", "fn", "precision", "recall", "fbeta"}
    assert data["classes"]["ribosome"]["tp"] == 1
    assert data["score"] == pytest.approx(1 / 7)


def test_to_text_has_a_line_per_class_and_the_score():
    result = ScoreResult(0.25, {"ribosome": ClassScore(1, 2, 3, 1 / 3, 0.25, 0.2537, 1.0)}, 4.0, 0.5)
    text = result.to_text()
    ribosome_line = next(line for line in text.splitlines() if line.startswith("ribosome"))
    assert ribosome_line.split() == ["ribosome", "1", "2", "3", "0.3333", "0.2500", "0.2537", "1"]
    assert "0.250000" in text.splitlines()[-1]


def test_score_command_prints_text_and_json():
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "src", "score", str(TS_73_6), str(TS_73_6)]
    text = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, check=True).stdout
    assert "score (F4, distance multiplier 0.5): 1.000000" in text and "ribosome" in text
    out = subprocess.run([*cmd, "--json", "--beta", "1"], cwd=repo, capture_output=True, text=True, check=True).stdout
    payload = json.loads(out)
    assert set(payload) == {"score", "classes"} and payload["score"] == 1.0
    assert set(payload["classes"]["ribosome"]) == {"tp", "fp", "fn", "precision", "recall", "fbeta"}
