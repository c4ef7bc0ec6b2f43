"""dvc.cells.yaml is params.yaml's grid, and each training stage depends on its own model's attention block: adding
a block retrains that model's cells and nothing else, editing one retrains its model's cells alone (issue 26)."""

import shutil
import subprocess
import sys

import pytest
import yaml

from src.cell_stages import check_cells
from src.errors import UserError
from src.params import load_params
from tests.conftest import REPO
from tests.test_pipeline import _fresh_copy

TRAINING = ("train", "replicate", "rerun")


def test_the_committed_cells_file_is_params_yaml_grid():
    check_cells(load_params(REPO / "params.yaml"), REPO / "dvc.cells.yaml")


def _stages(repo) -> dict[str, tuple]:
    """Each DVC stage (as DVC resolves dvc.yaml) -> its deps' paths and its params' keys."""
    from dvc.repo import Repo

    with Repo(str(repo)) as r:
        return {
            s.name: (
                tuple(str(d.def_path) for d in s.deps if not hasattr(d, "params")),
                tuple(sorted(k for d in s.deps if hasattr(d, "params") for k in d.params)),
            )
            for s in r.index.stages
        }


def _cells(repo) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "src", "cells"], cwd=repo, capture_output=True, text=True)


@pytest.mark.skipif(shutil.which("dvc") is None, reason="dvc not installed")
def test_a_fifth_block_adds_its_model_s_stages_and_changes_no_other(tmp_path):
    repo = _fresh_copy(tmp_path / "repo")
    before = _stages(repo)
    per_model = {
        m: [s for s in before if s.split("@")[0] in TRAINING and s.split("@")[1].startswith(f"{m}-")]
        for m in ("unet", "unet_ag", "unet_se", "unet_cbam")
    }
    for model, attention in (("unet", "none"), ("unet_ag", "ag"), ("unet_se", "se"), ("unet_cbam", "cbam")):
        depending = [s for s, (deps, _) in before.items() if f"src/models/blocks/{attention}.py" in deps]
        assert sorted(depending) == sorted(per_model[model])  # editing its block re-runs its model's cells alone

    (repo / "src/models/blocks/toy.py").write_text(
        '"""A toy gain."""\nimport torch\n\n\nclass Toy(torch.nn.Module):\n'
        "    def __init__(self, spatial_dims, channels):\n        super().__init__()\n\n"
        '    def forward(self, x):\n        return x\n\n\nSITE = "encoder"\nBLOCK = Toy\n'
    )
    raw = yaml.safe_load((repo / "params.yaml").read_text())
    raw["study"]["models"]["unet_toy"] = {"attention": "toy", "attention_kwargs": {}, "label": "toy", "color": "red"}
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(UserError, match="not params.yaml's grid"):
        check_cells(load_params(repo / "params.yaml"), repo / "dvc.cells.yaml")
    done = _cells(repo)
    assert done.returncode == 0 and done.stdout.startswith(f"{len(per_model['unet']) * 5} cells"), done.stderr
    after = _stages(repo)

    new = sorted(set(after) - set(before))
    assert new == sorted(
        s.replace("@unet-", "@unet_toy-") for s in per_model["unet"]
    )  # its grid, replicate and rerun cells
    assert all(
        after[s][0] == tuple(d.replace("none.py", "toy.py") for d in before[s.replace("_toy", "", 1)][0]) for s in new
    )
    changed = [s for s in before if after[s] != before[s]]
    assert changed == []  # no other stage's deps or params (the report reads `study` whole, as before)
    assert not any("src/models/blocks/toy.py" in after[s][0] for s in before)


def test_a_pipeline_without_its_cells_file_is_refused_and_a_workspace_is_not_checked(tmp_path):
    p = load_params(REPO / "params.yaml")
    check_cells(p, tmp_path / "dvc.cells.yaml")  # no dvc.yaml: a workspace, no stages
    (tmp_path / "dvc.yaml").write_text((REPO / "dvc.yaml").read_text())
    with pytest.raises(UserError, match=r"dvc.cells.yaml is missing: run `python -m src cells`"):
        check_cells(p, tmp_path / "dvc.cells.yaml")
