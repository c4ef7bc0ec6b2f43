"""The same numbers on every x86-64 CPU: the thread count and the instruction set a cell computes with.

On a CPU two things besides the code and the data decide a run's floating-point results: how many threads split each
reduction (torch, OpenMP, MKL, OpenBLAS) and which SIMD kernels the libraries pick for the CPU at hand (torch's
ATen, oneDNN, MKL, numpy, OpenBLAS). params.yaml's `repro:` section fixes both, and `apply()` turns it into the
libraries' own switches. Those are read when a library loads, so `apply()` runs first thing in the command line,
before numpy or torch is imported; every launcher (`dvc repro`, `grid run`, a SLURM job) starts cells through it.

- cpu_threads: n threads, whatever the core count (a 16-core machine computes like a 2-core one).
- cpu_isa avx2: torch's kernels at AVX2 (ATEN_CPU_CAPABILITY), oneDNN at AVX2 (ONEDNN_MAX_CPU_ISA), MKL in its
  COMPATIBLE branch (MKL_CBWR; its AVX2 branch runs other code on AMD than on Intel), numpy without its AVX-512 kernels
  (NPY_DISABLE_CPU_FEATURES), OpenBLAS with its Haswell kernels (OPENBLAS_CORETYPE). `native` leaves them all alone:
  faster on AVX-512 machines, not portable.

This module imports neither numpy nor torch at load, so importing it sets nothing in motion.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml

ISAS = ("avx2", "native")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# numpy's dispatch targets above AVX2 (2.x names, and the 1.x ones for an older numpy): disabling one the CPU lacks is
# a no-op, so one list serves every machine.
NUMPY_AVX512 = (
    "X86_V4 AVX512_ICL AVX512_SPR AVX512F AVX512CD AVX512_KNL AVX512_KNM AVX512_SKX AVX512_CLX AVX512_CNL AVX512_FP16"
)
ISA_VARIABLES = {
    "avx2": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "MKL_CBWR": "COMPATIBLE",
        "NPY_DISABLE_CPU_FEATURES": NUMPY_AVX512,
        "OPENBLAS_CORETYPE": "Haswell",
    },
    "native": {},
}


def environment(cpu_threads: int, cpu_isa: str) -> dict[str, str]:
    """The environment variables that make a process compute with `cpu_threads` threads (0: the libraries' default)
    and the instruction set `cpu_isa`."""
    if cpu_isa not in ISAS:
        raise ValueError(f"repro.cpu_isa = {cpu_isa} (must be one of {', '.join(ISAS)})")
    env = dict(ISA_VARIABLES[cpu_isa])
    if cpu_threads > 0:
        env |= {name: str(cpu_threads) for name in THREAD_VARIABLES}
    return env


def read_settings(path: str | Path = "params.yaml") -> tuple[int, str] | None:
    """(cpu_threads, cpu_isa) from a params file's `repro:` section; None where there is no such file or section or
    it cannot be read (the command's own params check then says what is wrong)."""
    try:
        section = (yaml.safe_load(Path(path).read_text()) or {}).get("repro")
        threads, isa = int(section["cpu_threads"]), str(section["cpu_isa"])
    except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError, KeyError, TypeError, ValueError):
        return None
    return (threads, isa) if threads >= 0 and isa in ISAS else None


def apply(path: str | Path = "params.yaml") -> dict[str, str]:
    """Set the switches of the params file's `repro:` section in this process's environment (children inherit them);
    returns what it set. Too late for a library already loaded: `in_effect()` records what actually applied."""
    settings = read_settings(path)
    if settings is None:
        return {}
    env = environment(*settings)
    os.environ.update(env)
    os.environ["CRYOET_REPRO"] = f"{settings[0]},{settings[1]}"  # what was asked, for the run's record
    if "torch" in sys.modules:  # in-process callers (tests): threads can still be set
        pin_threads()
    return env


def use_threads(threads: int) -> None:
    """Compute with `threads` threads instead of the params' count, keeping the instruction set (the rerun block);
    recorded like the params' settings. Before torch loads, or at least before its first computation."""
    asked = os.environ.get("CRYOET_REPRO", "")
    isa = asked.partition(",")[2] or "native"
    os.environ.update({name: str(threads) for name in THREAD_VARIABLES})
    os.environ["CRYOET_REPRO"] = f"{threads},{isa}"
    if "torch" in sys.modules:
        pin_threads()


def pin_threads() -> None:
    """torch's intra-op threads to the asked count: torch caps OMP_NUM_THREADS at the core count when it loads, so a
    1-core machine would otherwise compute with 1 thread where the settings say 2 (and give other numbers)."""
    import torch

    threads = os.environ.get("CRYOET_REPRO", "").partition(",")[0]
    if threads.isdigit() and int(threads) > 0:
        torch.set_num_threads(int(threads))


def in_effect() -> dict:
    """What this process computes with: the settings asked for, the switches seen, the kernels torch and numpy chose,
    and whether it all matches the portable settings (so that another machine can give the same bits)."""
    import numpy as np
    import torch

    asked = os.environ.get("CRYOET_REPRO", "")
    threads, _, isa = asked.partition(",")
    expected = environment(int(threads), isa) if threads.isdigit() and isa in ISAS else {}
    numpy_features = _numpy_dispatch()
    record = {
        "cpu_threads": int(threads) if threads.isdigit() else None,
        "cpu_isa": isa or None,
        "torch_threads": torch.get_num_threads(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "numpy_simd": numpy_features,
        "switches": {k: os.environ.get(k) for k in sorted({*ISA_VARIABLES["avx2"], *THREAD_VARIABLES})},
        "numpy_version": np.__version__,
    }
    record["exact"] = bool(
        expected
        and isa == "avx2"
        and all(os.environ.get(k) == v for k, v in expected.items())
        and (int(threads) == 0 or torch.get_num_threads() == int(threads))
        and record["torch_cpu_capability"] == "AVX2"
        and not any(f.startswith(("X86_V4", "AVX512")) for f in numpy_features)
    )
    return record


def _numpy_dispatch() -> list[str]:
    """numpy's SIMD targets above its baseline that this process uses."""
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:  # numpy 1.x
        from numpy.core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    return [f for f in __cpu_dispatch__ if __cpu_features__.get(f)]
