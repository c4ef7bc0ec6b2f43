"""`--device` on train and predict: a device this machine has is used; anything else is one sentence, before work."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from src.__main__ import app
from src.errors import UserError
from src.hardware import pick_device
from tests.conftest import REPO

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")


def test_cpu_and_the_default_are_devices():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device(None) == torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("name", ["tpu", "cuda:x", "gpu0", "meta"])
def test_an_unknown_device_is_one_sentence(name):
    with pytest.raises(UserError, match="give cpu, cuda or cuda:N"):
        pick_device(name)


@no_gpu
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_a_gpu_this_machine_lacks_is_one_sentence(name):
    with pytest.raises(UserError, match="no CUDA GPU is visible"):
        pick_device(name)


@no_gpu
@pytest.mark.parametrize(
    "command", ["train --cell unet-c16-p64-s1", "predict --tomogram x.mrc --out o.csv --model m.pt"]
)
def test_the_cli_refuses_a_missing_gpu_before_any_work(command, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("DVC_STAGE", "train@unet-c16-p64-s1-0")  # as DVC runs it: past the committed-cell guard
    out = tmp_path / "o.csv"
    args = command.replace("o.csv", str(out)).split() + ["--device", "cuda"]
    result = CliRunner().invoke(app, args)  # `python -m src` prints it as one line
    assert isinstance(result.exception, UserError) and "no CUDA GPU is visible" in str(result.exception)
    assert not out.exists() and not (REPO / "models" / ".unet-c16-p64-s1-r0.partial").exists()
