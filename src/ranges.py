"""Ranges of the numbers that come from outside: params.yaml's fields (src/params.py declares an interval on each),
command-line options (the typer callbacks below) and the voxel spacings of tomograms and picks files.

An interval is written as "[0, 1)", "(0, inf)" and so on. NaN lies in none, and infinity only in one closed at inf,
so a range check is also a finiteness check.
"""

from __future__ import annotations

from src.errors import UserError

# Angstrom per voxel. Cryo-ET tomograms lie between about 1 A (unbinned) and about 40 A (binned 4-8 x); a value
# outside this is almost surely in other units (nm) or a typo, and resampling to it makes a meaningless volume.
VOXEL_SPACING = "[0.5, 100]"


def inside(value: float, interval: str) -> bool:
    """Whether `value` lies in `interval` ("[0, 1)", "(0, inf)", ...)."""
    lo, hi = (float(v) for v in interval[1:-1].split(","))
    above = value > lo or (interval[0] == "[" and value == lo)
    return above and (value < hi or (interval[-1] == "]" and value == hi))


def check_number(value: float, name: str, interval: str, error: type[UserError] = UserError) -> float:
    """`value`, or an `error` saying that `name` must lie in `interval`."""
    if not inside(value, interval):
        raise error(f"{name} {value:g} is out of range: it must be a number in {interval}")
    return value


def check_voxel_spacing(value: float, name: str, error: type[UserError] = UserError) -> float:
    """`value`, or an `error` saying that `name` is no plausible cryo-ET voxel spacing in Angstrom."""
    if not inside(value, VOXEL_SPACING):
        lo, hi = VOXEL_SPACING[1:-1].split(", ")
        raise error(f"{name} {value:g} is not a plausible cryo-ET voxel spacing (expected Angstrom, from {lo} to {hi})")
    return value


def _option_name(param) -> str:
    return max(param.opts, key=len)  # "--voxel-spacing" rather than a short alias


def option_range(interval: str):
    """A typer callback for a numeric option: its value if not given or in `interval`, else a UserError naming it
    (raised while the command line is parsed, so before any work)."""

    def check(ctx, param, value):
        return value if value is None else check_number(value, _option_name(param), interval)

    return check


def voxel_spacing_option(ctx, param, value):
    """A typer callback for a voxel spacing option: its value if not given or plausible (see VOXEL_SPACING)."""
    return value if value is None else check_voxel_spacing(value, _option_name(param))
