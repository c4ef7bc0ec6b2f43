import shutil

import pytest
import yaml

from src.params import ParamsError, load_params, parse_params
from src.profiles import apply_profile
from tests.conftest import REPO


def test_params_yaml_loads_and_defaults_are_the_demo(params):
    assert params.data.source == "synthetic"
    assert params.synth.shape == (64, 160, 160)
    assert params.split.test_runs + 2 * params.split.runs_per_sample <= params.synth.runs


def test_unknown_and_missing_keys_are_errors():
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["split"]["sed"] = 1
    with pytest.raises(ParamsError, match=r"params.split: unknown keys \['sed'\]"):
        parse_params(raw)
    del raw["split"]["sed"], raw["masks"]["label_radius_fraction"]
    with pytest.raises(ParamsError, match="missing keys \\['label_radius_fraction'\\]"):
        parse_params(raw)
    raw["masks"]["label_radius_fraction"] = "big"
    with pytest.raises(ParamsError, match="expected float"):
        parse_params(raw)


def test_profiles_switch_to_paper_scale_and_back(tmp_path, params):
    target = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", target)
    apply_profile("paper", target, REPO / "profiles")
    paper = load_params(target)
    assert paper.synth.shape == (184, 630, 630) and paper.split.runs_per_sample == 35
    assert paper.data.source == "copick" and paper.synth.placement.count_scale == 1.0
    assert paper.train.epochs == 200 and paper.train.patch_scale == (1.0, 1.0, 1.0)
    assert "# Every tunable number" in target.read_text()  # comments kept
    apply_profile("demo", target, REPO / "profiles")
    assert load_params(target) == params
