"""Picks out to the tools of the field: RELION 5 STAR, Dynamo table, napari points CSV, ChimeraX markers.

Input is what this project writes: the submission CSV (experiment, particle_type, x, y, z in Angstrom) or copick picks
JSON files. Points are in Angstrom with voxel index i at i * voxel spacing (the competition's convention), so a
voxel coordinate is simply Angstrom / spacing; each format then gets the origin and axis order it documents:

    star      RELION 5 tomography particles: rlnTomoName, rlnCoordinateX/Y/Z in the tomogram's pixels (0-based),
              an optics table with the pixel size (rlnImagePixelSize, rlnTomoTiltSeriesPixelSize), rlnClassNumber.
    tbl       Dynamo table (dynamotable): x, y, z in pixels, 1-based (MATLAB), tomo index 1.., class, apix; a .doc
              table map beside it names each tomo index's run.
    napari    napari's points CSV (its built-in reader): index, axis-0, axis-1, axis-2 = z, y, x in pixels (0-based),
              plus experiment and particle_type columns, which napari reads as point features.
    chimerax  ChimeraX/Chimera marker file (.cmm): one marker set per class, in Angstrom, class colour and radius.

A CSV does not carry a pixel size: it comes from `voxel_spacing` (one for every run) or `spacings` (per run, e.g.
read from a copick project's zarr metadata). A copick picks file states its own.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
import pandas as pd

from src.atomic import atomic_output, check_output
from src.classes import CZII_CLASSES, ParticleClass, by_name
from src.data.copick_io import read_picks_json
from src.errors import DataError, UserError
from src.metric import COORDS, POINT_COLUMNS, read_points_csv
from src.ranges import check_voxel_spacing

FORMATS = ("star", "tbl", "napari", "chimerax")
SUFFIXES = {"star": ".star", "tbl": ".tbl", "napari": ".csv", "chimerax": ".cmm"}
SPACING = "voxel_spacing"  # the column that `points_with_spacing` adds (Angstrom per pixel of each point's tomogram)


# --- reading picks ----------------------------------------------------------------------------------------------


def read_picks(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Points (experiment, particle_type, x, y, z in Angstrom, voxel_spacing or NaN) of submission CSVs and copick
    picks JSON files; a copick file's run, object and spacing come from its own fields."""
    frames = []
    for path in map(Path, paths):
        if path.suffix.lower() == ".json":
            payload = _json(path)
            run = str(payload.get("run_name") or "")
            if not run:
                raise DataError(f"{path}: a copick picks file without a run_name cannot be exported")
            name, xyz = read_picks_json(path, run)
            frame = pd.DataFrame(xyz, columns=COORDS)
            frame.insert(0, "particle_type", name)
            frame.insert(0, "experiment", run)
            frame[SPACING] = _stated_spacing(payload, path)
        else:
            frame = read_points_csv(path)[POINT_COLUMNS].copy()
            frame[SPACING] = np.nan
        frames.append(frame)
    if not frames:
        raise UserError("give at least one picks file (a submission CSV or copick picks JSON)")
    return pd.concat(frames, ignore_index=True)


def _stated_spacing(payload: dict, path: Path) -> float:
    """The pixel size a copick picks file states (NaN: none), checked: a spacing of -20 would give negative pixel
    coordinates, and one in nm coordinates ten times too large."""
    stated = payload.get("voxel_spacing")
    if stated is None:
        return np.nan
    if isinstance(stated, bool) or not isinstance(stated, int | float):
        raise DataError(f"{path}: voxel_spacing {stated!r} is not a number")
    return check_voxel_spacing(float(stated), f"{path}: voxel_spacing", DataError)


def _json(path: Path) -> dict:
    try:
        payload = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: not a readable JSON picks file ({err})") from None
    if not isinstance(payload, dict):
        raise DataError(f"{path}: not a copick picks file (expected a JSON object)")
    return payload


def points_with_spacing(
    points: pd.DataFrame, voxel_spacing: float | None = None, spacings: dict[str, float] | None = None
) -> pd.DataFrame:
    """`points` with every row's pixel size filled: `voxel_spacing` overrides all, else `spacings[run]`, else what the
    file stated; a run left without one is an error (a pixel coordinate needs it)."""
    out = points.copy()
    if SPACING not in out:
        out[SPACING] = np.nan
    if voxel_spacing is not None:
        out[SPACING] = check_voxel_spacing(float(voxel_spacing), "--voxel-spacing")
    elif spacings:
        known = out["experiment"].map(spacings)
        out[SPACING] = known.where(known.notna(), out[SPACING]).astype(float)
    missing = out.loc[out[SPACING].isna(), "experiment"]
    if len(missing):
        raise UserError(
            f"no pixel size for run {missing.iloc[0]}: give --voxel-spacing A, or --copick PROJECT to read each run's "
            "from its tomogram"
        )
    return out


def class_numbers(points: pd.DataFrame, classes: tuple[ParticleClass, ...] = CZII_CLASSES) -> dict[str, int]:
    """Class number per particle type: the class's label where known (1..6 for CZII), new ones after."""
    known = {c.name: c.label for c in classes}
    numbers = dict(known)
    for name in sorted(set(points["particle_type"]) - set(known)):
        numbers[name] = max(numbers.values(), default=0) + 1
    return {name: numbers[name] for name in sorted(set(points["particle_type"]), key=numbers.get)}


def _pixels(points: pd.DataFrame) -> np.ndarray:
    """(N, 3) x, y, z in each point's tomogram pixels, 0-based."""
    return points[COORDS].to_numpy(dtype=float) / points[[SPACING]].to_numpy(dtype=float)


# --- the writers: each takes points with a pixel size per row and writes one file ------------------------------


def write_star(points: pd.DataFrame, path: Path, classes: tuple[ParticleClass, ...] = CZII_CLASSES) -> None:
    """RELION 5 tomography particles: an optics group per pixel size and the particles in tomogram pixels."""
    import starfile

    spacing_values = sorted(set(points[SPACING].astype(float)))
    groups = {s: i + 1 for i, s in enumerate(spacing_values)}
    optics = pd.DataFrame(
        {
            "rlnOpticsGroup": list(groups.values()),
            "rlnOpticsGroupName": [f"opticsGroup{g}" for g in groups.values()],
            "rlnImagePixelSize": spacing_values,
            "rlnTomoTiltSeriesPixelSize": spacing_values,
        }
    )
    xyz = _pixels(points)
    numbers = class_numbers(points, classes)
    counter = points.groupby("experiment").cumcount() + 1
    particles = pd.DataFrame(
        {
            "rlnTomoName": points["experiment"].astype(str).to_numpy(),
            "rlnTomoParticleName": (points["experiment"].astype(str) + "/" + counter.astype(str)).to_numpy(),
            "rlnCoordinateX": xyz[:, 0],
            "rlnCoordinateY": xyz[:, 1],
            "rlnCoordinateZ": xyz[:, 2],
            "rlnOpticsGroup": points[SPACING].map(groups).to_numpy(),
            "rlnClassNumber": points["particle_type"].map(numbers).to_numpy(),
        }
    )
    with atomic_output(path) as tmp:
        # six decimals: a pixel size such as 10.012444 A keeps every digit (3 would shift a far particle by a pixel)
        starfile.write({"optics": optics, "particles": particles}, tmp, float_format="%.6f")


def write_tbl(points: pd.DataFrame, path: Path, classes: tuple[ParticleClass, ...] = CZII_CLASSES) -> None:
    """A Dynamo table (1-based pixels) and its table map (`<name>.doc`: tomo index, run; dynamotable's format)."""
    import dynamotable

    runs = {run: i + 1 for i, run in enumerate(dict.fromkeys(points["experiment"].astype(str)))}
    xyz = _pixels(points) + 1.0  # Dynamo (MATLAB) counts pixels from 1
    numbers = class_numbers(points, classes)
    table = pd.DataFrame(
        {
            "tomo": points["experiment"].astype(str).map(runs).to_numpy(),
            "class": points["particle_type"].map(numbers).to_numpy(),
            "x": xyz[:, 0],
            "y": xyz[:, 1],
            "z": xyz[:, 2],
            "apix": points[SPACING].to_numpy(dtype=float),
        }
    )
    if path.suffix != ".tbl":
        raise UserError(f"a Dynamo table's name ends in .tbl, got {path.name}")
    table_map = "".join(f"{index} {run}\n" for run, index in runs.items())
    with atomic_output(path.with_suffix(".doc")) as tmp_doc:
        tmp_doc.write_text(table_map)
    with atomic_output(path) as tmp:
        dynamotable.write(table, str(tmp))  # it appends ".tbl" to a name without it
        tmp.with_name(tmp.name + ".tbl").rename(tmp)


def write_napari(points: pd.DataFrame, path: Path, classes: tuple[ParticleClass, ...] = CZII_CLASSES) -> None:
    """napari's points CSV: index, axis-0..2 (z, y, x pixels) and the features experiment, particle_type."""
    zyx = _pixels(points)[:, ::-1]
    frame = pd.DataFrame({"index": range(len(points))})
    for i in range(3):
        frame[f"axis-{i}"] = zyx[:, i]
    frame["experiment"] = points["experiment"].astype(str).to_numpy()
    frame["particle_type"] = points["particle_type"].astype(str).to_numpy()
    with atomic_output(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.3f")


def write_chimerax(points: pd.DataFrame, path: Path, classes: tuple[ParticleClass, ...] = CZII_CLASSES) -> None:
    """Chimera/ChimeraX markers in Angstrom: one marker set per run and class, in the class colour and radius."""
    known = by_name(classes)
    lines = ["<marker_sets>"]
    marker_id = 0
    for (run, name), group in points.groupby(["experiment", "particle_type"], sort=True):
        c = known.get(name)
        r, g, b = (c.color[i] / 255 for i in range(3)) if c else (0.5, 0.5, 0.5)
        radius = c.radius if c else 50.0
        lines.append(f"<marker_set name={quoteattr(f'{run} {name}')}>")
        for x, y, z in group[COORDS].to_numpy(dtype=float):
            marker_id += 1
            lines.append(
                f'<marker id="{marker_id}" x="{x:.2f}" y="{y:.2f}" z="{z:.2f}" '
                f'r="{r:.3f}" g="{g:.3f}" b="{b:.3f}" radius="{radius:g}"/>'
            )
        lines.append("</marker_set>")
    lines.append("</marker_sets>")
    with atomic_output(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


WRITERS: dict[str, Callable[..., None]] = {
    "star": write_star,
    "tbl": write_tbl,
    "napari": write_napari,
    "chimerax": write_chimerax,
}


def export_points(
    points: pd.DataFrame, fmt: str, out: str | Path, classes: tuple[ParticleClass, ...] = CZII_CLASSES
) -> Path:
    """Write `points` (with a pixel size per row, see `points_with_spacing`) in format `fmt` to `out`."""
    if fmt not in WRITERS:
        raise UserError(f"unknown export format '{fmt}' (expected one of {', '.join(FORMATS)})")
    if SPACING not in points or points[SPACING].isna().any():
        raise UserError("every point needs a pixel size to be exported (points_with_spacing)")
    out = Path(out)
    check_output(out)
    WRITERS[fmt](points.reset_index(drop=True), out, classes)
    return out


def default_output(picks: Path, fmt: str) -> Path:
    """<picks without suffix>.<format's suffix>; the napari CSV gets `.napari.csv` so as not to replace a CSV input."""
    suffix = ".napari.csv" if fmt == "napari" else SUFFIXES[fmt]
    return picks.with_name(picks.stem + suffix)
