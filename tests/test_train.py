"""Training cells for real (tiny): MLflow logging, metrics files, crash safety and resume, and the DVC grid."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import torch
import yaml

from src import tracking
from tests.conftest import REPO
from tests.test_pipeline import _fresh_copy

CELL = "unet_se-c16-p64-s1-r0"


def tiny_params(raw: dict, epochs: int = 2) -> dict:
    raw["synth"]["shape"] = [32, 64, 64]
    raw["study"]["channels"] = {"c16": [16, 16, 32, 32], "c32": [16, 32, 32, 64]}
    raw["study"]["patches"] = {"p64": [16, 32, 32], "p96": [16, 32, 32], "p128": [16, 48, 48]}
    raw["train"]["patch_scale"] = [1.0, 1.0, 1.0]
    raw["train"].update(epochs=epochs, steps_per_epoch=3, val_every=1)
    raw["predict"]["threshold_grid"] = [0.1, 0.9, 0.4]
    return raw


def _env(store: Path) -> dict:
    return {**os.environ, "CRYOET_MLRUNS": str(store), "PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A folder with tiny params, the synthetic data and the split, as `dvc repro split` would leave them."""
    ws = tmp_path_factory.mktemp("ws")
    raw = tiny_params(yaml.safe_load((REPO / "params.yaml").read_text()), epochs=3)
    (ws / "params.yaml").write_text(yaml.safe_dump(raw))
    for stage in ("data", "split"):
        subprocess.run(
            [sys.executable, "-m", "src", stage], cwd=ws, env=_env(ws / "mlruns"), check=True, capture_output=True
        )
    return ws


def _train(ws: Path, store: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "src", "train", "--cell", CELL, *extra],
        cwd=ws,
        env=_env(store),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _weights(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def _runs(store: Path):
    client = mlflow.MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("attention-unet-cryoet")
    return client, client.search_runs([experiment.experiment_id])


def _paper_batch(ws: Path) -> None:
    """The paper's kind of batch, small: one tomogram per step, several crops of it, prepared ahead in a thread."""
    raw = yaml.safe_load((ws / "params.yaml").read_text())
    raw["train"].update(batch_size=1, crops_per_volume=3, prefetch=2)
    (ws / "params.yaml").write_text(yaml.safe_dump(raw))


def test_killed_training_is_marked_failed_and_resume_matches_uninterrupted(workspace, tmp_path):
    """At the paper's kind of batch (several crops of one tomogram per step, prepared ahead in a thread)."""
    ws = tmp_path / "ws"
    shutil.copytree(workspace, ws)
    _paper_batch(ws)
    store = tmp_path / "mlruns"
    partial = ws / "models" / f".{CELL}.partial"

    proc = _train(ws, store)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        last = partial / "last.pt"
        if last.exists() and torch.load(last, weights_only=False)["state"]["epoch"] >= 1:
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert not (ws / "models" / CELL).exists() and not (ws / "metrics" / f"{CELL}.json").exists()
    client, runs = _runs(store)
    assert [r.info.status for r in runs] == ["FAILED"]

    resumed = _train(ws, store, "--resume")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert not partial.exists()
    client, runs = _runs(store)
    assert [r.info.status for r in runs] == ["FINISHED"] and len(runs) == 1  # the same run, continued

    fresh = tmp_path / "fresh"
    shutil.copytree(workspace, fresh)
    _paper_batch(fresh)
    straight = _train(fresh, tmp_path / "mlruns2")
    _, err = straight.communicate(timeout=300)
    assert straight.returncode == 0, err
    a, b = _weights(ws / "models" / CELL / "model.pt"), _weights(fresh / "models" / CELL / "model.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    history = [json.loads((d / "models" / CELL / "history.json").read_text()) for d in (ws, fresh)]
    assert [h["train_loss"] for h in history[0]] == [h["train_loss"] for h in history[1]]


@pytest.mark.skipif(shutil.which("dvc") is None, reason="dvc not installed")
def test_tiny_grid_through_dvc_repro_into_a_fresh_store(tmp_path):
    repo = _fresh_copy(tmp_path / "repo")
    raw = tiny_params(yaml.safe_load((repo / "params.yaml").read_text()))
    (repo / "params.yaml").write_text(yaml.safe_dump(raw))
    store = tmp_path / "store"
    cells = ["unet-c16-p64-s1-r0", "unet_ag-c16-p64-s1-r0"]
    stages = {c: f"train@{c.removesuffix('-r0')}-0" for c in cells}  # dvc.yaml's matrix names the seed by value
    env = {**os.environ, "CRYOET_MLRUNS": str(store)}
    rerun = "rerun@unet-c16-p64-s1-0"  # the rerun block's run of the first cell: 1 thread instead of 2
    result = subprocess.run(
        ["dvc", "repro", *stages.values(), rerun], cwd=repo, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    client, runs = _runs(store)
    by_name = {r.info.run_name: r for r in runs}
    assert sorted(by_name) == sorted([*cells, f"{cells[0]}-t1"])
    again = json.loads((repo / "metrics" / "reruns" / f"{cells[0]}.json").read_text())
    grid = json.loads((repo / "metrics" / f"{cells[0]}.json").read_text())
    assert again["rerun_threads"] == 1 and "rerun_threads" not in grid
    assert (again["hardware"]["torch_threads"], grid["hardware"]["torch_threads"]) == (1, 2)
    assert again["hardware"]["repro"]["exact"] and again["hardware"]["repro"]["cpu_threads"] == 1
    assert (
        by_name[f"{cells[0]}-t1"].data.tags["dvc_stage"] == rerun
        and by_name[f"{cells[0]}-t1"].data.tags["rerun_threads"] == "1"
    )
    assert (repo / "models" / "reruns" / cells[0] / "model.pt").exists()
    assert (repo / "metrics" / "reruns" / "mlflow" / f"{cells[0]}.json").exists()
    assert again["weights_sha256"] != grid["weights_sha256"]  # other rounding, other weights
    for cell in cells:
        record = json.loads((repo / "metrics" / f"{cell}.json").read_text())
        run = by_name[cell]
        assert record["mlflow_run_id"] == run.info.run_id and run.info.status == "FINISHED"
        assert run.data.metrics["test_score"] == pytest.approx(record["test_score"])
        assert run.data.tags["dvc_stage"] == stages[cell] and run.data.tags["model"] == record["model"]
        assert tracking.read_sizes(run.data.params) == ((16, 16, 32, 32), (16, 32, 32))
        assert run.data.params["epochs"] == "2" and run.data.params["seed"] == "0"
        assert record["seed"] == 0 and record["hardware"]["torch_threads"] >= 1 and record["hardware"]["deterministic"]
        assert run.data.params["attention"] == raw["study"]["models"][record["model"]]["attention"]
        assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 2
        assert {"train_minutes", "seconds_per_epoch", "inference_seconds_per_tomogram"} <= set(run.data.metrics)
        assert any(k.startswith("test_fbeta/") for k in run.data.metrics)
        assert (repo / "models" / cell / "model.pt").exists()
        split = json.loads((repo / "data" / "splits.json").read_text())
        assert sorted(record["test_counts"]) == sorted(split["test"])  # TP/FP/FN per test tomogram and class
        for by_class in record["test_counts"].values():
            assert all(set(c) == {"tp", "fp", "fn"} for c in by_class.values())
        assert "test_counts.json" in [a.path for a in client.list_artifacts(run.info.run_id)]
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    first = lock["stages"][stages[cells[0]]]["params"]["params.yaml"]
    assert set(first) >= {
        "study.channels.c16",
        "study.patches.p64",
        "study.models.unet.attention",
        "study.models.unet.attention_kwargs",
    }
    assert "study.channels.c32" not in first and "study.models.unet_ag.attention" not in first


class ToyGain(torch.nn.Module):
    """A toy attention block for the registry test: a learned per-channel sigmoid gain."""

    def __init__(self, spatial_dims: int, in_channels: int, init: float = 0.0) -> None:
        super().__init__()
        self.logit = torch.nn.Parameter(torch.full((1, in_channels) + (1,) * spatial_dims, float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.logit)


def test_a_fifth_attention_module_through_the_registry_alone(workspace, tmp_path, monkeypatch):
    """A new block plus one registry entry plus its params: it trains a real cell beside the baseline, and the
    report shows it with its own label and colour."""
    from src.models.attention import REGISTERED, register_attention
    from src.params import load_params
    from src.report.build import build_report
    from src.study import Study
    from src.training.train import train_cell

    ws = tmp_path / "ws"
    shutil.copytree(workspace, ws)
    raw = yaml.safe_load((ws / "params.yaml").read_text())
    raw["study"]["models"]["unet_toy"] = {
        "attention": "toy",
        "attention_kwargs": {"init": 1.0},
        "label": "U-Net + toy gain",
        "color": "tab:red",
    }
    raw["train"]["epochs"] = 1
    raw["report"]["step_times"] = None  # the committed step-time CSV describes the study's models, not this one
    (ws / "params.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(ws)
    monkeypatch.setenv(tracking.ENV_STORE, str(tmp_path / "mlruns"))
    register_attention("toy", "encoder", ToyGain)
    try:
        params = load_params(ws / "params.yaml")
        study = Study.from_params(params)
        assert len(study.configurations()) == 5 * 2 * 3 * 2  # the replicate block adds seeds, not configurations
        assert {c.model for c in study.cells() if c.replicate} == set(study.models)
        for model in ("unet", "unet_toy"):
            record = train_cell(study.parse(f"{model}-c16-p64-s1"), params, progress=False)
            assert 0.0 <= record["test_score"] <= 1.0
    finally:
        REGISTERED.pop("toy")
    checkpoint = torch.load(ws / "models" / "unet_toy-c16-p64-s1-r0" / "model.pt", weights_only=False)
    assert checkpoint["model_config"]["attention"] == "toy"
    assert checkpoint["model_config"]["attention_kwargs"] == {"init": 1.0}
    toy_params = [k for k in checkpoint["state_dict"] if k.startswith("encoder_attention")]
    assert len(toy_params) == 4  # one gain per encoder block, the bottleneck included

    written = build_report(ws / "metrics", ws / "paper", params.report, study)
    table = (ws / "paper" / "table3.md").read_text()
    assert "unet_toy" in table and "unet" in table
    statistics = (ws / "paper" / "statistics.md").read_text()
    assert "unet_toy" in statistics
    assert (ws / "paper" / "per_class.png") in written and (ws / "paper" / "per_class.png").stat().st_size > 0


def test_a_patch_larger_than_a_training_tomogram_is_one_sentence_before_any_work(workspace, tmp_path):
    """Real data (copick source), where the volume's shape is known only from its files: refused before training."""
    ws = tmp_path / "ws"
    shutil.copytree(workspace, ws)
    raw = yaml.safe_load((ws / "params.yaml").read_text())
    raw["data"].update(source="copick", copick_config=str(ws / "data" / "project" / "copick_config.json"))
    raw["study"]["patches"]["p64"] = [64, 64, 64]  # the tiny tomograms are 32 deep
    (ws / "params.yaml").write_text(yaml.safe_dump(raw))
    proc = _train(ws, tmp_path / "mlruns")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    assert "Traceback" not in err and "larger than run" in err and "train.patch_scale" in err
    assert not (ws / "models").exists() or not any((ws / "models").iterdir())


def test_the_trained_model_is_logged_as_an_mlflow_pytorch_model_with_signature_and_plan(
    workspace, tmp_path, monkeypatch
):
    """The logged model loads back with `mlflow.pytorch.load_model`, holds model.pt's weights, maps
    [batch, 1, D, H, W] to [batch, classes + 1, D, H, W], and carries its signature and post-processing plan."""
    from src.params import load_params
    from src.study import Study
    from src.training.train import train_cell

    ws = tmp_path / "ws"
    shutil.copytree(workspace, ws)
    raw = yaml.safe_load((ws / "params.yaml").read_text())
    raw["train"]["epochs"] = 1
    (ws / "params.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(ws)
    monkeypatch.setenv(tracking.ENV_STORE, str(tmp_path / "mlruns"))
    params = load_params(ws / "params.yaml")
    record = train_cell(Study.from_params(params).parse("unet-c16-p64-s1"), params, progress=False, device="cpu")

    client, runs = _runs(tmp_path / "mlruns")
    assert record["hardware"]["device"] == "cpu"  # --device is recorded with the run, in metrics and as tags
    assert 0 < record["validation_minutes"] < record["train_minutes"] and record["peak_rss_mb"] > 100
    assert runs[0].data.tags["device"] == "cpu" and runs[0].data.tags["hardware.device"] == "cpu"
    experiment = client.get_experiment_by_name("attention-unet-cryoet")
    assert experiment.tags[tracking.EXPERIMENT_KIND_TAG] == tracking.CLASSIC_VIEW
    logged = mlflow.search_logged_models(experiment_ids=[experiment.experiment_id], output_format="list")
    assert [m.source_run_id for m in logged] == [record["mlflow_run_id"]]
    uri = f"models:/{logged[0].model_id}"
    info = mlflow.models.get_model_info(uri)
    checkpoint = torch.load(ws / "models" / "unet-c16-p64-s1-r0" / "model.pt", weights_only=False)
    n_out = checkpoint["model_config"]["out_channels"]
    assert [s.shape for s in info.signature.inputs.inputs] == [(-1, 1, -1, -1, -1)]
    assert [s.shape for s in info.signature.outputs.inputs] == [(-1, n_out, -1, -1, -1)]
    assert info.metadata["postprocess"] == checkpoint["postprocess"]

    model = mlflow.pytorch.load_model(uri)
    weights = model.state_dict()
    assert weights.keys() == checkpoint["state_dict"].keys()
    assert all(torch.equal(weights[k].cpu(), checkpoint["state_dict"][k]) for k in weights)
    with torch.no_grad():
        out = model.eval()(torch.zeros(2, 1, 16, 32, 32))
    assert tuple(out.shape) == (2, n_out, 16, 32, 32)


def test_training_tomograms_at_two_spacings_are_refused(tiny_project, params):
    """A model is trained at one pixel size, which its checkpoint records and validation, test and predict read at: a
    sample whose training runs differ in spacing is one sentence naming both, not the last run's spacing recorded."""
    from src.data.copick_io import CopickProject
    from src.errors import DataError
    from src.training.train import training_volumes

    project = CopickProject(tiny_project / "copick_config.json")
    runs = project.run_names()
    assert training_volumes(project, runs, params)[1] == pytest.approx(
        project.tomogram(runs[0], "denoised", 10.0).voxel_spacing
    )

    class SecondRunBinned:  # the same project, its second run read as if binned twice
        classes = project.classes

        def tomogram(self, run, tomo_type, spacing):
            tomo = project.tomogram(run, tomo_type, spacing)
            if run == runs[1]:
                tomo.voxel_spacing *= 2
            return tomo

        def picks(self, run, tomo=None):
            return project.picks(run, tomo)

    with pytest.raises(DataError, match=f"differ in voxel spacing.*{runs[0]}.*{runs[1]}"):
        training_volumes(SecondRunBinned(), runs, params)
