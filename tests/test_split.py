import dataclasses

import pytest

from src.data.split import make_split
from src.errors import UserError


def _all(split):
    runs = list(split["test"]) + list(split["unused"])
    for parts in split["samples"].values():
        runs += parts["train"] + parts["val"]
    return runs


def test_default_split_is_deterministic_and_disjoint(params):
    sp = params.split
    runs = [f"TS_{i}" for i in range(sp.test_runs + 2 * sp.runs_per_sample)]
    a, b = make_split(runs, sp), make_split(list(reversed(runs)), sp)
    assert a == b
    assert sorted(_all(a)) == sorted(runs)
    n_val = round(sp.val_fraction * sp.runs_per_sample)
    assert len(a["test"]) == sp.test_runs
    assert all(len(s["train"]) == sp.runs_per_sample - n_val and len(s["val"]) == n_val for s in a["samples"].values())
    assert make_split(runs, dataclasses.replace(params.split, seed=1)) != a


def test_paper_scale_split(params):
    paper = dataclasses.replace(params.split, test_runs=9, runs_per_sample=35)
    split = make_split([f"TS_{i:02d}" for i in range(79)], paper)
    assert len(split["test"]) == 9 and split["unused"] == []
    for parts in split["samples"].values():
        assert len(parts["train"]) + len(parts["val"]) == 35 and len(parts["val"]) == 9
    assert len(set(_all(split))) == 79


def test_too_few_runs_is_a_clear_error(params):
    needed = params.split.test_runs + 2 * params.split.runs_per_sample
    with pytest.raises(UserError, match=f"needs {needed} runs .* but the project has {needed - 1}"):
        make_split([f"TS_{i}" for i in range(needed - 1)], params.split)
