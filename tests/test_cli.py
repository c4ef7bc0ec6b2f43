"""The command lines show their values (issue 25, item 6): params' defaults in --help, the export formats, one style
and --version for `python -m src` and `python -m src.report`, hints that name the option that fixes an error, and a
timestamped line per tomogram where no progress bar shows (output to a file or a pipe)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.test_inference import save_tiny_checkpoint

LINE = r"^\d\d:\d\d:\d\d "  # a progress line's timestamp


def cli(*args: str, module: str = "src", cwd: Path = REPO) -> subprocess.CompletedProcess:
    """`python -m <module> <args>` as a user runs it, with stdout and stderr captured (so neither is a terminal)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def _flat(help_text: str) -> str:
    return " ".join(help_text.split())  # click wraps help at the terminal's width


def test_help_shows_params_values_and_their_keys():
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    synth = _flat(cli("synth", "--help").stdout)
    assert f"[default: {raw['synth']['runs']}, from params: synth.runs]" in synth
    assert f"[default: {','.join(map(str, raw['synth']['shape']))}, from params: synth.shape]" in synth
    assert "--picks-naming <competition|copick>" in synth
    train = _flat(cli("train", "--help").stdout)
    assert f"one of {', '.join(raw['study']['models'])} (params: study.models)" in train
    assert f"[default: {raw['train']['seeds'][0]}, the first, from params: train.seeds]" in train
    report = _flat(cli("--help", module="src.report").stdout)
    assert f"[default: {raw['report']['out']}, from params: report.out]" in report


def test_help_without_params_names_the_key(tmp_path):
    """Help shows even where params.yaml does not load, naming the key."""
    (tmp_path / "params.yaml").write_text("synth: [unclosed\n")
    result = cli("synth", "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "[from params: synth.runs]" in _flat(result.stdout)


def test_formats_are_shown_as_choices():
    from src.__main__ import EXPORT_FORMATS
    from src.exports import FORMATS

    assert EXPORT_FORMATS == FORMATS
    assert "--format <star|tbl|napari|chimerax>" in _flat(cli("predict", "--help").stdout)
    assert "--to <star|tbl|napari|chimerax>" in _flat(cli("export", "--help").stdout)


@pytest.mark.parametrize("module", ["src", "src.report"])
def test_one_style_and_a_version_on_both(module):
    version = cli("--version", module=module)
    assert version.returncode == 0 and version.stdout.startswith("cryoet-attention-unet 0.1.0 (git ")
    shown = cli("--help", module=module).stdout
    assert shown.startswith(f"Usage: python -m {module} [OPTIONS] COMMAND [ARGS]...")
    assert "\nOptions:\n" in shown and "--version" in shown
    assert not re.search("[╭│─]", shown)  # click's plain layout, not rich's boxes


def test_a_missing_voxel_size_names_the_option(tmp_path):
    import mrcfile
    import numpy as np

    path = tmp_path / "no_size.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(np.zeros((8, 8, 8), dtype=np.float32))  # voxel size 0 in the header
    result = cli("info", str(path))
    assert result.returncode == 2
    assert result.stderr.strip().endswith("the MRC header gives no voxel size; give it with --voxel-spacing")
    assert "voxel spacing 10 A" in cli("info", str(path), "--voxel-spacing", "10").stdout


def test_an_unknown_run_names_the_runs_the_option_takes(tiny_project, tmp_path):
    result = cli("thresholds", "--model", str(tmp_path / "m.pt"), "--copick", str(tiny_project), "--runs", "TS_9")
    assert result.returncode == 2
    assert result.stderr.strip().endswith("--runs takes TS_SYN_000, TS_SYN_001")


def _lines(stderr: str, what: str) -> list[str]:
    return [line for line in stderr.splitlines() if re.match(LINE + re.escape(what), line)]


def test_data_says_each_tomogram_when_not_on_a_terminal(tmp_path):
    from tests.test_train import tiny_params

    raw = tiny_params(yaml.safe_load((REPO / "params.yaml").read_text()))
    raw["synth"]["runs"] = 5  # the fewest that params allow: 1 test run and 2 x 2 in the samples
    raw["split"].update(test_runs=1, runs_per_sample=2, val_fraction=0.5)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    result = cli("data", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    made = _lines(result.stderr, "synthetic tomograms: ")
    assert [line[9:].split(" (")[0] for line in made] == [f"synthetic tomograms: {i}/5 done" for i in range(1, 6)]
    checked = _lines(result.stderr, "checking runs: ")
    assert [line[9:].split(" (")[0] for line in checked] == [
        f"checking runs: {i + 1}/5 TS_SYN_00{i} done" for i in range(5)
    ]


def test_predict_says_each_tomogram_when_not_on_a_terminal(tiny_project, tmp_path):
    model = tmp_path / "model.pt"
    save_tiny_checkpoint(model)
    result = cli("predict", "--model", str(model), "--copick", str(tiny_project), "--out", str(tmp_path / "s.csv"))
    assert result.returncode == 0, result.stderr
    said = _lines(result.stderr, "tomograms: ")
    assert len(said) == 2 and all(re.search(r"tomograms: \d/2 TS_SYN_00\d done \(\d+\.\d s\)$", s) for s in said)
    assert "wrote" in result.stdout
