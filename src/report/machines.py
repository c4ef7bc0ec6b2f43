"""Which machine each run trained on, so that durations are compared only between runs of one machine.

"Same machine" is read from the hardware record of each metrics file (`src/hardware.py`), by the fields that set a
run's speed: the CPU model, the GPU model, the device type (cpu or cuda; cuda:0 and cuda:1 of one node are the same
kind of machine) and the number of torch threads. Core count, flags and library versions are left out: they do not
split one machine into two. A run without a hardware record (files written before it existed) is on an unknown
machine; a grid where every run is unknown is taken as one machine, since nothing says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

MACHINE_FIELDS = ("cpu", "gpu", "device", "torch_threads")  # what "the same machine" compares
UNKNOWN = "machine not recorded"


@dataclass(frozen=True)
class Machine:
    cpu: str | None
    gpu: str | None
    device: str | None  # the device type: "cpu" or "cuda"
    torch_threads: int | None
    cpu_count: int | None = None  # shown in the label, not compared

    @property
    def label(self) -> str:
        """Every compared field in words, e.g. "2-core AMD EPYC CPU, 2 torch threads" or "NVIDIA H100 (AMD EPYC
        host, 8 torch threads)"."""
        threads = f"{self.torch_threads} torch threads" if self.torch_threads else "torch threads not recorded"
        if self.gpu:
            return f"{self.gpu} ({self.cpu or 'unknown CPU'} host, {threads})"
        cores = f"{self.cpu_count}-core " if self.cpu_count else ""
        device = "" if self.device in (None, "cpu") else f" ({self.device})"
        return f"{cores}{self.cpu or 'unknown'} CPU{device}, {threads}"

    @property
    def key(self) -> tuple:
        return tuple(getattr(self, f) for f in MACHINE_FIELDS)


def machine_of(hardware) -> Machine | None:
    """The machine of one hardware record; None for a run without one."""
    if not isinstance(hardware, dict) or not hardware:
        return None
    device = hardware.get("device")
    threads = hardware.get("torch_threads")
    return Machine(
        cpu=hardware.get("cpu"),
        gpu=hardware.get("gpu"),
        device=str(device).split(":", 1)[0] if device else None,
        torch_threads=int(threads) if threads is not None else None,
        cpu_count=hardware.get("cpu_count"),
    )


@dataclass(frozen=True)
class MachineGroup:
    """The runs of one machine: its label and the runs' cell names (with their seed suffix)."""

    label: str
    runs: tuple[str, ...]


def machine_labels(runs: pd.DataFrame) -> pd.Series:
    """Each run's machine label (UNKNOWN where it recorded no hardware), indexed as `runs`."""
    hardware = runs["hardware"] if "hardware" in runs else pd.Series([None] * len(runs), index=runs.index)
    machines = [machine_of(h) for h in hardware]
    # Runs that differ only in a field not compared (e.g. core count) share the first one's label.
    labels: dict[tuple, str] = {}
    for m in machines:
        if m is not None:
            labels.setdefault(m.key, m.label)
    return pd.Series([labels[m.key] if m else UNKNOWN for m in machines], index=runs.index, dtype=object)


def machine_groups(runs: pd.DataFrame) -> list[MachineGroup]:
    """The runs grouped by machine, the group with the most runs first (ties by label, so the order is fixed)."""
    labels = machine_labels(runs)
    names = runs["run_cell"] if "run_cell" in runs else runs["cell"]
    groups = {label: tuple(sorted(names[labels == label])) for label in set(labels)}
    order = sorted(groups, key=lambda label: (-len(groups[label]), label))
    return [MachineGroup(label, groups[label]) for label in order]


def _names(runs: tuple[str, ...], most: int = 8) -> str:
    shown = ", ".join(runs[:most])
    return shown + (f" and {len(runs) - most} more" if len(runs) > most else "")


def machine_note(groups: list[MachineGroup]) -> str | None:
    """The sentence every table, page and figure that shows time carries when the runs come from several machines
    (None for one): which machines, and that time is compared only on the largest group's runs."""
    if len(groups) < 2:
        return None
    main, others = groups[0], groups[1:]
    elsewhere = sum(len(g.runs) for g in others)
    listed = "; ".join(f"{runs_count(len(g.runs))} on {g.label} ({_names(g.runs)})" for g in others)
    return (
        f"The runs come from {len(groups)} machines (one machine: the same {', '.join(MACHINE_FIELDS[:-1])} and "
        f"{MACHINE_FIELDS[-1]} in the metrics files' hardware record): {runs_count(len(main.runs))} on "
        f"{main.label}; {listed}. Durations are comparable only within one machine, so the time comparisons use "
        f"only the {len(main.runs)} runs of the largest group and leave the other {elsewhere} out"
    )


def runs_count(n: int) -> str:
    return f"{n} run{'s' if n != 1 else ''}"
