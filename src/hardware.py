"""What a run ran on: the facts that decide whether another machine can reproduce its numbers bit for bit."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from src import repro
from src.errors import UserError

# CPU features that change which floating-point kernels (and so which roundings) torch picks.
MATH_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile")


def _cpuinfo() -> dict[str, str]:
    """The first processor's entries of /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    first = text.split("\n\n", 1)[0]
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in first.splitlines()) if k.strip()}


def pick_device(name: str | None = None) -> torch.device:
    """The device `--device` names (cpu, cuda, cuda:N); None: the first GPU where one is seen, else the CPU. A
    UserError for a name torch does not know or a GPU this machine does not have."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r} is not a device: give cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"--device {name!r} is not supported: give cpu, cuda or cuda:N")
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if count == 0:
            raise UserError(f"--device {name}: no CUDA GPU is visible here (torch {torch.__version__}); use cpu")
        if (device.index or 0) >= count:
            raise UserError(f"--device {name}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
    return device


def use_deterministic_algorithms() -> None:
    """torch's deterministic kernels where they exist (a warning, not an error, where an op has none); call before
    the first CUDA operation, since cuBLAS reads its workspace setting then."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    repro.pin_threads()  # repro.cpu_threads, whatever the core count


def hardware_record(device: torch.device | str) -> dict:
    """CPU model and math flags, GPU, thread count, whether deterministic algorithms were on, and the repro settings
    in effect (threads, instruction set caps, the kernels torch and numpy chose: src/repro.py)."""
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    device = torch.device(device)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {
        "device": str(device),
        "cpu": info.get("model name") or platform.processor() or platform.machine(),
        "cpu_flags": [f for f in MATH_FLAGS if f in flags],
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "cuda": torch.version.cuda if gpu else None,
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "torch_version": torch.__version__,
        "platform": platform.platform(),
        "repro": repro.in_effect(),
    }
