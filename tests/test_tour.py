"""The README's quick tour, run as written in a fresh copy of the repository on tiny data, leaves the committed study
alone: `git status` is clean afterwards (issue 25, item 1)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import REPO
from tests.test_pipeline import _fresh_copy
from tests.test_train import tiny_params

TOUR_HEADING = "## A quick tour"
SERVER_LINE = "mlflow ui "  # the UI serves until Ctrl-C: the one line the test leaves out


def tour_commands(readme: str) -> list[str]:
    """The shell lines of the README's quick-tour block (its first indented block), continuations joined, comments
    dropped, the MLflow UI left out."""
    lines = readme[readme.index(TOUR_HEADING) :].splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("    "))
    block = []
    for line in lines[first:]:
        if not line.startswith("    "):
            break
        block.append(line.strip())
    joined = re.sub(r"\\\s*\n\s*", " ", "\n".join(block)).splitlines()  # the trailing-backslash continuations
    commands = [re.sub(r"\s+#.*$", "", line).strip() for line in joined]
    return [c for c in commands if c and not c.startswith(SERVER_LINE)]


def _tiny_tour_params(raw: dict) -> dict:
    """tiny_params with a smaller split (2 test runs instead of 8) and one epoch: the tour's cost is its commands,
    not its training."""
    raw = tiny_params(raw, epochs=1)
    raw["synth"]["runs"] = 10
    raw["split"]["test_runs"] = 2
    return raw


def _git(repo: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=tour", "-c", "user.email=tour@example.org", *args]
    return subprocess.run(command, cwd=repo, capture_output=True, text=True, check=True).stdout


def test_the_tour_leaves_git_status_clean(tmp_path):
    commands = tour_commands((REPO / "README.md").read_text())
    assert commands[0].startswith("python -m src workspace tour") and any(" train " in f" {c} " for c in commands)
    repo = _fresh_copy(tmp_path / "repo")
    raw = _tiny_tour_params(yaml.safe_load((repo / "params.yaml").read_text()))
    (repo / "params.yaml").write_text(yaml.safe_dump(raw))
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "a fresh clone, tiny params")
    committed = (repo / "metrics" / "unet-c16-p64-s1-r0.json").read_bytes()

    env = {k: v for k, v in os.environ.items() if k not in ("CRYOET_MLRUNS", "MLFLOW_TRACKING_URI")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # `python` is this interpreter
    script = "set -eo pipefail\n" + "\n".join(commands)
    result = subprocess.run(["bash", "-c", script], cwd=repo, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    assert _git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    assert (repo / "metrics" / "unet-c16-p64-s1-r0.json").read_bytes() == committed
    tour = repo / "tour"
    trained = json.loads((tour / "metrics" / "unet-c16-p64-s1-r0.json").read_text())
    assert trained["mlflow_run_id"] != json.loads(committed)["mlflow_run_id"]
    assert (tour / "mlruns" / "mlflow.db").exists() and not (repo / "mlruns").exists()  # the workspace's own store
    for output in ("synth.png", "hits.png", "submission.csv", "submission.star", "solution.csv", "paper"):
        assert (tour / output).exists(), output
    assert "imported 56 runs" in result.stdout


def _workspace(folder: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "src", "workspace", str(folder)]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True)


def test_a_workspace_keeps_its_params_and_refuses_a_folder_it_did_not_make(tmp_path):
    folder = tmp_path / "tour"
    assert _workspace(folder).returncode == 0
    params = yaml.safe_load((folder / "params.yaml").read_text())
    assert params["train"]["metrics_dir"] == "metrics"  # outputs: relative, so inside the workspace
    assert Path(params["report"]["step_times"][0]).is_absolute()  # inputs: the repository's files
    assert (folder / "src").resolve() == REPO / "src" and (folder / ".gitignore").read_text().endswith("*\n")
    (folder / "params.yaml").write_text((folder / "params.yaml").read_text() + "# mine\n")
    again = _workspace(folder)
    assert again.returncode == 0 and "kept its params.yaml" in again.stdout
    assert (folder / "params.yaml").read_text().endswith("# mine\n")

    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    refused = _workspace(tmp_path / "other")
    assert refused.returncode == 2 and "is a non-empty folder that is not a workspace" in refused.stderr
