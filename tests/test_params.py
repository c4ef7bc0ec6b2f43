import dataclasses
import shutil
import typing

import pytest
import yaml

from src.errors import UserError
from src.params import Params, ParamsError, load_params, parse_params
from src.profiles import apply_profile
from tests.conftest import REPO


def test_params_yaml_loads_and_defaults_are_the_demo(repo_params):
    params = repo_params
    assert params.data.source == "synthetic"
    assert params.synth.shape == (48, 128, 128) and params.synth.voxel_spacing > 20
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


def test_profiles_switch_to_paper_scale_and_back(tmp_path, repo_params):
    target = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", target)
    apply_profile("paper", target, REPO / "profiles")
    paper = load_params(target)
    assert paper.synth.shape == (184, 630, 630) and paper.split.runs_per_sample == 35
    assert paper.data.source == "copick" and paper.synth.placement.count_scale == 1.0
    assert paper.train.epochs == 200 and paper.train.patch_scale == (1.0, 1.0, 1.0)
    assert "# Every tunable number" in target.read_text()  # comments kept
    apply_profile("demo", target, REPO / "profiles")
    assert load_params(target) == repo_params


def test_every_range_problem_is_reported_at_once(params):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["predict"]["overlap"] = 1.0
    raw["predict"]["sw_batch_size"] = 0
    raw["train"]["lr"] = -0.001
    raw["masks"]["label_radius_fraction"] = -0.5
    raw["synth"]["placement"]["counts"]["ribosome"] = -1
    raw["synth"]["imaging"]["snr"] = float("nan")
    raw["study"]["patches"]["p128"] = [32, 1000, 128]
    with pytest.raises(ParamsError) as err:
        parse_params(raw)
    message = str(err.value)
    assert message.startswith("7 params out of range: ") and "\n" not in message
    for part in (
        "predict.overlap = 1.0 (must be in [0, 1))",
        "predict.sw_batch_size = 0 (must be in [1, inf))",
        "train.lr = -0.001",
        "masks.label_radius_fraction = -0.5 (must be in (0, 1])",
        "synth.placement.counts.ribosome = -1.0",
        "synth.imaging.snr = nan",
        f"study.patches.p128 x train.patch_scale = [16, 500, 64] (must fit in synth.shape = {list(params.synth.shape)}",
    ):
        assert part in message


def test_every_numeric_param_declares_a_range():
    def numeric_fields(cls, where):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            hint = hints[f.name]
            if dataclasses.is_dataclass(hint):
                yield from numeric_fields(hint, f"{where}.{f.name}")
            elif hint is not bool and {int, float} & set(_leaf_types(hint)):
                yield f"{where}.{f.name}", f

    def _leaf_types(hint):
        args = typing.get_args(hint)
        return [hint] if not args else [t for a in args for t in _leaf_types(a)]

    missing = [name for name, f in numeric_fields(Params, "params") if "range" not in f.metadata]
    assert missing == []


def test_yaml_and_os_errors_are_one_sentence(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text((REPO / "params.yaml").read_text().replace("  seed: 0\n", "\tseed: 0\n", 1))
    with pytest.raises(ParamsError, match=r"params.yaml: not valid YAML, .*'\\t'.* at line \d+, column 1$"):
        load_params(bad)
    with pytest.raises(ParamsError, match="cannot read it"):
        load_params(tmp_path)
    bad.write_text("")
    with pytest.raises(ParamsError, match="is empty"):
        load_params(bad)


def test_help_shows_which_param_an_option_defaults_to():
    """`[default: 16, from params: synth.runs]` in an option's help is text, not markup for the help renderer to
    drop (tests/test_cli.py checks the values)."""
    from typer.testing import CliRunner

    from src.__main__ import app

    result = CliRunner().invoke(app, ["synth", "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "from params: synth.runs]" in result.output and "from params: synth.shape]" in result.output


def test_a_reversed_lookalike_mass_range_is_refused_when_params_load():
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["synth"]["distractors"]["lookalike_mass_kda"] = [700.0, 150.0]
    with pytest.raises(ParamsError, match=r"synth\.distractors\.lookalike_mass_kda = \[700\.0, 150\.0\]"):
        parse_params(raw)


def test_every_demo_patch_is_as_deep_as_the_largest_particle(repo_params):
    params = repo_params
    """Issue 11: a patch shallower than a particle never shows the network a whole one."""
    from src.classes import CZII_CLASSES
    from src.study import Study

    study = Study.from_params(params)
    largest = max(2 * c.radius for c in CZII_CLASSES) / params.synth.voxel_spacing
    for key in study.patch_keys:
        depth = study.trained_patch(key, params.train.patch_scale)[0]
        assert depth >= largest, f"{key}: {depth} voxels deep, the largest particle is {largest:.1f}"


def test_a_key_given_twice_is_refused_where_params_are_read(tmp_path):
    text = (REPO / "params.yaml").read_text()
    twice = tmp_path / "params.yaml"
    twice.write_text(text.replace("\ntrain:\n", "\ntrain:\n  epochs: 99\n", 1))
    with pytest.raises(ParamsError, match=r"params.yaml: not valid YAML, found duplicate key 'epochs' at line \d+"):
        load_params(twice)
    with pytest.raises(UserError, match=r"params.yaml: not valid YAML, found duplicate key \"epochs\".* at line \d+"):
        apply_profile("paper", twice, REPO / "profiles")
    assert twice.read_text().count("epochs: 99") == 1  # not rewritten


def test_yaml_merge_keys_may_still_override():
    from src.params import UniqueKeyLoader

    text = "base: &b {p: 1, q: 2}\nmine:\n  <<: *b\n  p: 3\n"
    assert yaml.load(text, Loader=UniqueKeyLoader)["mine"] == {"p": 3, "q": 2}


def test_an_empty_model_map_is_refused():
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["study"]["models"] = {}
    with pytest.raises(ParamsError, match=r"study.models = \{\} \(must name at least one\)"):
        parse_params(raw)
