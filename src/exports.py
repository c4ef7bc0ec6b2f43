"""Picks out to the tools of the field: RELION 5 STAR, Dynamo table, napari points CSV, ChimeraX markers.

Input is what this project writes: the submission CSV (experiment, particle_type, x, y, z in Angstrom) or copick picks
JSON files. Points are in Angstrom with voxel index i at i * voxel spacing (the competition's convention), so a
voxel coordinate is simply Angstrom / spacing; each format then gets the origin and axis order it documents:

    star      RELION 5 tomography particles: rlnTomoName; rlnCenteredCoordinateX/Y/ZAngst (RELION 5's own: Angstrom
              from the tomogram's centre, which needs the tomogram's size, known with --copick or a tomogram) and
              rlnCoordinateX/Y/Z in the tomogram's pixels (0-based; what RELION 5 falls back to without the centred
              ones, reading them as RELION 4 did in tilt-series pixels, so a binned tomogram's need its binning at
              import; and what other tools read); an optics table with the pixel size
              (rlnImagePixelSize, rlnTomoTiltSeriesPixelSize); rlnClassNumber and rlnClassName (RELION keeps a
              column it does not know).
    tbl       Dynamo table (dynamotable): x, y, z in pixels, 1-based (MATLAB), tomo index 1.., class, apix; beside it a
              .doc table map naming each tomo index's run (dynamotable's format) and a .classes.csv naming each class.
    napari    a folder of napari points CSVs (its built-in reader), one per run and class, <folder>/<run>/<class>.csv,
              so that each class opens as its own layer, named after it: index, axis-0, axis-1, axis-2 = z, y, x in
              pixels (0-based), plus experiment and particle_type columns, which napari reads as point features.
    chimerax  ChimeraX/Chimera marker file (.cmm): one marker set per class, in Angstrom, class colour and radius.

A CSV does not carry a pixel size: it comes from `voxel_spacing` (one for every run) or `spacings` (per run, e.g.
read from a copick project's zarr metadata). A copick picks file states its own. A tomogram's size (for RELION 5's
centred coordinates) comes from `sizes` (per run, from the same metadata); without it the STAR has pixels only.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
import pandas as pd

from src.atomic import atomic_output, check_output
from src.classes import CZII_CLASSES, ParticleClass, by_name, display_colors
from src.data.copick_io import read_picks_json
from src.errors import DataError, UserError
from src.metric import COORDS, POINT_COLUMNS, read_points_csv
from src.names import check_name
from src.ranges import check_voxel_spacing

FORMATS = ("star", "tbl", "napari", "chimerax")
SUFFIXES = {"star": ".star", "tbl": ".tbl", "napari": ".napari", "chimerax": ".cmm"}
FOLDER_FORMATS = {"napari"}  # written as a folder of files (one per run and class)
SPACING = "voxel_spacing"  # the column that `points_with_spacing` adds (Angstrom per pixel of each point's tomogram)
SIZE = ["size_x", "size_y", "size_z"]  # the columns `points_with_sizes` adds: the tomogram's size in pixels
NAPARI_COLUMNS = ["index", "axis-0", "axis-1", "axis-2"]  # napari's points CSV: its reader takes the rest as features
CENTRED = ["rlnCenteredCoordinateXAngst", "rlnCenteredCoordinateYAngst", "rlnCenteredCoordinateZAngst"]


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


def points_with_sizes(points: pd.DataFrame, sizes: dict[str, tuple[int, ...]] | None) -> pd.DataFrame:
    """`points` with the SIZE columns: each run's tomogram size in pixels (x, y, z) from `sizes` (run: (z, y, x), a
    tomogram's shape), NaN for a run it does not name."""
    out = points.copy()
    for i, column in enumerate(SIZE):
        out[column] = out["experiment"].map({run: shape[2 - i] for run, shape in (sizes or {}).items()}).astype(float)
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


def centred_angstrom(points: pd.DataFrame) -> np.ndarray | None:
    """(N, 3) x, y, z in Angstrom from the centre of each point's tomogram, as RELION 5 states positions (its centre
    is size / 2 pixels, a float division, particle_set.cpp); None unless every point's tomogram size is known."""
    if any(c not in points for c in SIZE) or points[SIZE].isna().to_numpy().any():
        return None
    centre = points[SIZE].to_numpy(dtype=float) / 2 * points[[SPACING]].to_numpy(dtype=float)
    return points[COORDS].to_numpy(dtype=float) - centre


def class_names(points: pd.DataFrame, classes: tuple[ParticleClass, ...] = CZII_CLASSES) -> pd.DataFrame:
    """The class map of `points`: class number (as `class_numbers`) and name, one row per class present."""
    numbers = class_numbers(points, classes)
    return pd.DataFrame({"class": list(numbers.values()), "particle_type": list(numbers.keys())})


# --- the writers: each takes points with a pixel size per row and writes one file (napari: one folder) ---------


def write_star(points: pd.DataFrame, path: Path, classes: tuple[ParticleClass, ...] = CZII_CLASSES) -> None:
    """RELION 5 tomography particles: an optics group per pixel size, the particles in centred Angstrom (when the
    tomograms' sizes are known) and in tomogram pixels, with class number and name."""
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
    counter = points.groupby("experiment").cumcount() + 1
    particles = pd.DataFrame(
        {
            "rlnTomoName": points["experiment"].astype(str).to_numpy(),
            "rlnTomoParticleName": (points["experiment"].astype(str) + "/" + counter.astype(str)).to_numpy(),
        }
    )
    centred = centred_angstrom(points)
    if centred is not None:
        for i, column in enumerate(CENTRED):
            particles[column] = centred[:, i]
    xyz = _pixels(points)
    for i, column in enumerate(["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]):
        particles[column] = xyz[:, i]
    particles["rlnOpticsGroup"] = points[SPACING].map(groups).to_numpy()
    particles["rlnClassNumber"] = points["particle_type"].map(class_numbers(points, classes)).to_numpy()
    particles["rlnClassName"] = points["particle_type"].astype(str).to_numpy()  # the number alone names nothing
    with atomic_output(path) as tmp:
        # six decimals: a pixel size such as 10.012444 A keeps every digit (3 would shift a far particle by a pixel)
        starfile.write({"optics": optics, "particles": particles}, tmp, float_format="%.6f")


def write_tbl(points: pd.DataFrame, path: Path, classes: tuple[ParticleClass, ...] = CZII_CLASSES) -> None:
    """A Dynamo table (1-based pixels), its table map (`<name>.doc`: tomo index, run; dynamotable's format) and its
    class map (`<name>.classes.csv`: class, particle_type), since a table's class is a bare number."""
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
    # The three files are written first and renamed into place together: a failure leaves the old ones, not a new
    # map beside an old table.
    with (
        atomic_output(path.with_suffix(".doc")) as tmp_doc,
        atomic_output(path.with_suffix(".classes.csv")) as tmp_classes,
        atomic_output(path) as tmp,
    ):
        tmp_doc.write_text(table_map)
        class_names(points, classes).to_csv(tmp_classes, index=False)
        written = tmp.with_name(tmp.name + ".tbl")  # dynamotable appends ".tbl" to a name without it
        try:
            dynamotable.write(table, str(tmp))
            written.rename(tmp)
        finally:
            written.unlink(missing_ok=True)  # a half-written table under a name no clean-up would know


def write_napari(
    points: pd.DataFrame, folder: Path, classes: tuple[ParticleClass, ...] = CZII_CLASSES, force: bool = False
) -> None:
    """A folder of napari points CSVs, `<run>/<class>.csv`: napari's built-in reader makes one points layer of each
    file, named after it (it does not split a file by a column), so one file per class gives a layer per class."""
    with atomic_output(folder, folder=True, force=force) as tmp:
        for (run, name), group in points.groupby(["experiment", "particle_type"], sort=True):
            run_folder = tmp / check_name(str(run), "run name", "the picks")
            run_folder.mkdir(exist_ok=True)
            napari_points(group).to_csv(
                run_folder / f"{check_name(str(name), 'class name', 'the picks')}.csv", index=False, float_format="%.3f"
            )


def napari_points(points: pd.DataFrame) -> pd.DataFrame:
    """napari's points CSV of `points`: NAPARI_COLUMNS (axis-0..2 = z, y, x pixels), then the features experiment and
    particle_type."""
    index, *axes = NAPARI_COLUMNS
    frame = pd.DataFrame({index: range(len(points))})
    zyx = _pixels(points)[:, ::-1]
    for i, axis in enumerate(axes):
        frame[axis] = zyx[:, i]
    frame["experiment"] = points["experiment"].astype(str).to_numpy()
    frame["particle_type"] = points["particle_type"].astype(str).to_numpy()
    return frame


def write_chimerax(points: pd.DataFrame, path: Path, classes: tuple[ParticleClass, ...] = CZII_CLASSES) -> None:
    """Chimera/ChimeraX markers in Angstrom: one marker set per run and class, in the class colour and radius."""
    known = by_name(classes)
    colours = display_colors(classes)  # the palette `show` draws with, so that a class looks the same in both
    lines = ["<marker_sets>"]
    marker_id = 0
    for (run, name), group in points.groupby(["experiment", "particle_type"], sort=True):
        c = known.get(name)
        r, g, b = colours.get(name, (0.5, 0.5, 0.5))
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
    points: pd.DataFrame,
    fmt: str,
    out: str | Path,
    classes: tuple[ParticleClass, ...] = CZII_CLASSES,
    force: bool = False,
) -> Path:
    """Write `points` (with a pixel size per row, see `points_with_spacing`, and optionally the tomograms' sizes,
    `points_with_sizes`) in format `fmt` to `out` (a folder for FOLDER_FORMATS; `force` replaces one this program did
    not make)."""
    if fmt not in WRITERS:
        raise UserError(f"unknown export format '{fmt}' (expected one of {', '.join(FORMATS)})")
    if SPACING not in points or points[SPACING].isna().any():
        raise UserError("every point needs a pixel size to be exported (points_with_spacing)")
    out = Path(out)
    if fmt in FOLDER_FORMATS:
        check_output(out, folder=True, force=force)
        WRITERS[fmt](points.reset_index(drop=True), out, classes, force=force)
    else:
        check_output(out)
        WRITERS[fmt](points.reset_index(drop=True), out, classes)
    return out


def default_output(picks: Path, fmt: str) -> Path:
    """<picks without suffix>.<format's suffix>: the napari folder is `<picks>.napari`."""
    return picks.with_name(picks.stem + SUFFIXES[fmt])
