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
    runs = [f"TS_{i}" for i in range(10)]
    a, b = make_split(runs, params.split), make_split(list(reversed(runs)), params.split)
    assert a == b
    assert sorted(_all(a)) == sorted(runs)
    assert len(a["test"]) == 2 and all(len(s["train"]) == 3 and len(s["val"]) == 1 for s in a["samples"].values())
    assert make_split(runs, dataclasses.replace(params.split, seed=1)) != a


def test_paper_scale_split(params):
    paper = dataclasses.replace(params.split, test_runs=9, runs_per_sample=35)
    split = make_split([f"TS_{i:02d}" for i in range(79)], paper)
    assert len(split["test"]) == 9 and split["unused"] == []
    for parts in split["samples"].values():
        assert len(parts["train"]) + len(parts["val"]) == 35 and len(parts["val"]) == 9
    assert len(set(_all(split))) == 79


def test_too_few_runs_is_a_clear_error(params):
    with pytest.raises(UserError, match="needs 10 runs .* but the project has 7"):
        make_split([f"TS_{i}" for i in range(7)], params.split)
