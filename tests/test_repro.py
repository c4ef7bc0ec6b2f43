"""The same numbers on every x86-64 CPU: another CPU emulated on this one, with the libraries' own switches.

- numpy takes another CPU's SIMD paths under NPY_DISABLE_CPU_FEATURES, OpenBLAS another CPU's kernels under
  OPENBLAS_CORETYPE, glibc's libm its non-FMA variants under GLIBC_TUNABLES: the synthetic data must not move.
- torch takes other kernels under ATEN_CPU_CAPABILITY, oneDNN under ONEDNN_MAX_CPU_ISA, MKL under MKL_CBWR, and
  another thread count under OMP_NUM_THREADS and another core count under taskset: once params.yaml's `repro:`
  settings apply, a tiny cell's weights and metrics must not move; with them off (native, all cores) they do.
- The committed fingerprint (tests/data/repro_fingerprint.json) is that tiny cell's weights and metrics hash under
  the default settings, checked on whatever machine CI runs on: every landing checks portability. After a change
  that moves numbers on purpose, rewrite it with `REPRO_FINGERPRINT_UPDATE=1 python -m pytest tests/test_repro.py`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.test_train import tiny_params

REPO = Path(__file__).resolve().parents[1]
FINGERPRINT = REPO / "tests" / "data" / "repro_fingerprint.json"
CELL = "unet_cbam-c16-p64-s1-r0"  # CBAM: global pooling and small dense layers, the ISA-sensitive paths (MKL)
REPRODUCED = ("test_score", "test_fbeta", "test_counts", "thresholds", "best_epoch", "val_best_score", "weights_sha256")
# Another CPU, as far as one machine can pretend: lower SIMD levels everywhere, one thread, one core.
FOREIGN_TORCH = {
    "ATEN_CPU_CAPABILITY": "default",
    "ONEDNN_MAX_CPU_ISA": "SSE41",
    "MKL_CBWR": "AUTO",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
FOREIGN_LIBM = {"OPENBLAS_CORETYPE": "Sandybridge", "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2,-FMA"}


def _run(args: list[str], cwd: Path, env: dict, one_core: bool = False) -> subprocess.CompletedProcess:
    prefix = ["taskset", "-c", "0"] if one_core and shutil.which("taskset") else []
    result = subprocess.run(
        [*prefix, sys.executable, "-m", "src", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def _numpy_top_level() -> list[str]:
    """numpy's dispatched SIMD targets this CPU runs (above numpy's baseline)."""
    code = (
        "from numpy._core._multiarray_umath import __cpu_dispatch__ as d, __cpu_features__ as f; "
        "print(*[x for x in d if f.get(x)])"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()


def _workspace(root: Path, repro: dict, epochs: int = 1) -> Path:
    raw = tiny_params(yaml.safe_load((REPO / "params.yaml").read_text()), epochs=epochs)
    raw["synth"]["runs"] = 12
    raw["split"]["test_runs"] = 4
    raw["repro"] = repro
    root.mkdir(parents=True)
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    return root


def _tree_bytes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_synthetic_data_are_the_same_bytes_under_another_cpus_simd(tmp_path):
    top = _numpy_top_level()
    if not top:
        pytest.skip("this CPU has no numpy SIMD level above the baseline to take away")
    native = {"cpu_threads": 2, "cpu_isa": "native"}  # nothing capped: the synthesis must be portable by itself
    ws = _workspace(tmp_path / "ws", native)
    args = ["synth", "--runs", "2", "--shape", "24,48,48"]
    _run([*args, "--out", "here"], ws, {})
    foreign = {"NPY_DISABLE_CPU_FEATURES": " ".join(top), **FOREIGN_LIBM}
    _run([*args, "--out", "there", "--workers", "2"], ws, foreign)
    here, there = _tree_bytes(ws / "here"), _tree_bytes(ws / "there")
    assert here and here == there


def _train_cell(ws: Path, store: Path, env: dict, one_core: bool = False) -> dict:
    model, channels, patch, sample, seed = CELL.split("-")
    args = ["train", "--model", model, "--channels", channels, "--patch", patch, "--sample", sample]
    _run([*args, "--seed", seed[1:]], ws, {"CRYOET_MLRUNS": str(store), **env}, one_core)
    record = json.loads((ws / "metrics" / f"{CELL}.json").read_text())
    return {k: record[k] for k in REPRODUCED}


def _digest(record: dict) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """Tiny data and split, made once (the data stage is portable by the test above)."""
    ws = _workspace(tmp_path_factory.mktemp("repro") / "base", {"cpu_threads": 2, "cpu_isa": "avx2"})
    for stage in ("data", "split"):
        _run([stage], ws, {"CRYOET_MLRUNS": str(ws / "mlruns")})
    return ws


@pytest.fixture(scope="module")
def native_cell(base, tmp_path_factory) -> dict:
    """The tiny cell under the default repro settings, as `dvc repro` runs it here."""
    ws = tmp_path_factory.mktemp("native") / "ws"
    shutil.copytree(base, ws)
    return _train_cell(ws, ws / "mlruns", {})


def _cpu_has_avx2() -> bool:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return " avx2" in flags and " fma" in flags


@pytest.mark.skipif(not _cpu_has_avx2(), reason="exact reproduction is promised on x86-64 CPUs with AVX2 and FMA")
def test_a_cell_gives_the_same_weights_under_another_cpu_and_core_count(base, native_cell, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(base, ws)
    foreign = _train_cell(ws, tmp_path / "mlruns", {**FOREIGN_TORCH, **FOREIGN_LIBM}, one_core=True)
    assert foreign == native_cell
    # The emulation is real: without the repro settings the same foreign environment moves the weights.
    raw = yaml.safe_load((ws / "params.yaml").read_text())
    raw["repro"] = {"cpu_threads": 0, "cpu_isa": "native"}
    (ws / "params.yaml").write_text(yaml.safe_dump(raw))
    shutil.rmtree(ws / "models")
    (ws / "metrics" / f"{CELL}.json").unlink()
    loose = _train_cell(ws, tmp_path / "mlruns-native", {**FOREIGN_TORCH, **FOREIGN_LIBM}, one_core=True)
    assert loose["weights_sha256"] != native_cell["weights_sha256"]


@pytest.mark.skipif(not _cpu_has_avx2(), reason="exact reproduction is promised on x86-64 CPUs with AVX2 and FMA")
def test_the_committed_fingerprint_reproduces_on_this_machine(native_cell):
    found = {"cell": CELL, "weights_sha256": native_cell["weights_sha256"], "metrics_sha256": _digest(native_cell)}
    if os.environ.get("REPRO_FINGERPRINT_UPDATE"):
        FINGERPRINT.write_text(json.dumps(found, indent=2) + "\n")
    committed = json.loads(FINGERPRINT.read_text())
    assert found == committed, (
        f"this machine trains {CELL} (tiny params, default repro settings) to other numbers than the committed "
        f"fingerprint: {found} against {committed}. A change that moves numbers on purpose rewrites it with "
        "REPRO_FINGERPRINT_UPDATE=1; otherwise another CPU computed differently (see src/repro.py)."
    )


def test_the_weights_hash_sees_every_bit_of_every_tensor():
    import torch

    from src.inference.checkpoint import weights_sha256

    weights = {"counter": torch.tensor(3), "half": torch.ones(2, dtype=torch.bfloat16), "w": torch.zeros(2, 3)}
    same = {k: v.clone() for k, v in weights.items()}
    assert weights_sha256(weights) == weights_sha256(same)
    for name in weights:
        changed = {k: v.clone() for k, v in weights.items()}
        flat = changed[name].reshape(-1).view(torch.uint8)
        flat[0] ^= 1  # one bit of one tensor
        assert weights_sha256(changed) != weights_sha256(weights), name
    assert weights_sha256({"w": torch.zeros(3, 2)}) != weights_sha256({"w": torch.zeros(2, 3)})


def test_the_repro_switches_are_set_before_the_libraries_load():
    from src import repro

    env = repro.environment(2, "avx2")
    assert env["ATEN_CPU_CAPABILITY"] == "avx2" and env["MKL_CBWR"] == "COMPATIBLE" and env["OMP_NUM_THREADS"] == "2"
    assert repro.environment(0, "native") == {}
    with pytest.raises(ValueError):
        repro.environment(2, "avx512")
    # The command line sets them before numpy or torch loads: a fresh `python -m src` process sees them in effect.
    code = (
        "import sys; sys.argv = ['src', '--help']; import runpy\n"
        "try: runpy.run_module('src', run_name='__main__')\n"
        "except SystemExit: pass\n"
        "from src import repro; import torch; repro.pin_threads(); r = repro.in_effect()\n"
        "print(r['exact'], r['torch_threads'], r['torch_cpu_capability'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **FOREIGN_TORCH},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[-3:]
    assert out == [str(_cpu_has_avx2()), "2", "AVX2" if _cpu_has_avx2() else "DEFAULT"]
