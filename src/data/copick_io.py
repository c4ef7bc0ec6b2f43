"""Reading and writing the copick filesystem layout, and single MRC or zarr tomograms.

Why not the copick library: this module reads the layout itself, and nothing in src/ imports `copick`. copick 1.31
cannot list the competition's bare `Picks/<object>.json` files (it splits every picks name into
`<user>_<session>_<object>` and raises IndexError), needs a config that Kaggle did not ship, and reports the folder's
10.0 A instead of the zarr's true 10.012444 A; it checks no spacing, units, NaNs or out-of-volume picks, and reads no
single MRC files. It is also no faster (a 184 x 630 x 630 tomogram loads in about the same time either way). copick
stays pinned only as the interoperability check (tests/test_synth.py asserts that copick reads what we write the same
way); copick-utils was unpinned because nothing used it (src/data/masks.py paints the label spheres).

Layout (what the CZII competition shipped and copick reads):

    copick_config.json
    static/ExperimentRuns/<run>/VoxelSpacing10.000/<tomo_type>.zarr   OME-NGFF multiscale, levels 0,1,2, (z, y, x)
    overlay/ExperimentRuns/<run>/Picks/<object>.json                    competition naming (no user or session)
    overlay/ExperimentRuns/<run>/Picks/<user>_<session>_<object>.json   copick naming

Picks are in Angstrom; a point's centre is `location + transformation_[:3, 3]` (copick's convention). Tomogram arrays
are (z, y, x); voxel index i sits at i * voxel_spacing Angstrom, as in the competition's data. Everything read is
validated, and every problem raises `DataError` with one sentence naming the file.
"""

from __future__ import annotations

import itertools
import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import zarr
from numcodecs import blosc

from src.atomic import atomic_output
from src.classes import CZII_CLASSES, ParticleClass, by_name, classes_from_copick
from src.errors import DataError, UserError
from src.metric import COORDS, POINT_COLUMNS
from src.names import check_name
from src.ranges import check_voxel_spacing

CONFIG_NAME = "copick_config.json"
SHOWN_RUNS = 8  # runs an error lists before "and N more"

# `predict --picks-to-copick` writes picks under this copick user; they are never read back as ground truth.
PREDICTION_USER = "predict"
# The folder name is a rounded spacing (the CZII data say 10.000 for 10.012444 A); allow that much disagreement.
SPACING_TOLERANCE = 0.01  # relative; a larger mismatch means a model would see particles at the wrong size


@dataclass
class Tomogram:
    """A tomogram volume (z, y, x) with its true voxel spacing in Angstrom."""

    data: np.ndarray
    voxel_spacing: float
    name: str = ""

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def extent(self) -> np.ndarray:
        """Size in Angstrom along x, y, z (the order of pick coordinates)."""
        return np.array(self.data.shape[::-1], dtype=float) * self.voxel_spacing


@dataclass
class VolumeShape:
    """A tomogram's shape (z, y, x) and voxel spacing, read from its metadata without its voxels."""

    shape: tuple[int, ...]
    voxel_spacing: float


def spacing_folder(voxel_spacing: float) -> str:
    return f"VoxelSpacing{voxel_spacing:.3f}"


def root_path(config_path: Path, root: str | None) -> Path | None:
    """A copick root URL as a local path; relative roots are taken relative to the config's folder."""
    if root is None:
        return None
    if "://" in root:
        protocol, path = root.split("://", 1)
        if protocol not in ("local", "file"):
            raise DataError(f"{config_path}: only local copick roots can be read here, got '{root}'")
    else:
        path = root
    path = Path(path)
    return path if path.is_absolute() else (config_path.parent / path)


# --- tomograms ------------------------------------------------------------------------------------------------


def _check_volume(data: np.ndarray, where: str) -> np.ndarray:
    if data.ndim != 3:
        raise DataError(f"{where}: expected a 3-D (z, y, x) volume, got shape {data.shape}")
    if min(data.shape) < 1:
        raise DataError(f"{where}: the volume is empty, shape {data.shape}")
    finite = np.isfinite(data)
    if not finite.all():
        raise DataError(f"{where}: {np.size(finite) - np.count_nonzero(finite)} voxels are NaN or infinite")
    return data


def _zarr_spacing(group: zarr.Group, where: str) -> float | None:
    """The level-0 voxel spacing from OME-NGFF multiscales metadata, if present."""
    multiscales = group.attrs.get("multiscales")
    if not multiscales:
        return None
    try:
        transforms = multiscales[0]["datasets"][0]["coordinateTransformations"]
        scale = next(t["scale"] for t in transforms if t["type"] == "scale")
    except (KeyError, IndexError, StopIteration, TypeError):
        raise DataError(f"{where}: malformed OME-NGFF multiscales metadata") from None
    if len(set(np.round(scale[-3:], 6))) != 1:
        raise DataError(f"{where}: anisotropic voxel spacing {scale[-3:]} is not supported")
    return float(scale[-1])


_BLOSC_HEADER = struct.Struct("<BBBBIII")  # version, versionlz, flags, typesize, nbytes, blocksize, cbytes


def check_zarr_chunks(array: zarr.Array, folder: Path) -> None:
    """Every chunk file of a zarr v2 `array` stored in `folder` is present and, for Blosc, as long as its header says.

    zarr reads a missing chunk as its fill value (a silent block of zeros), and Blosc decompresses a truncated chunk
    past its end (wrong values, or a segfault), so a damaged store is refused here, before anything is decompressed.
    Only the chunk headers are read (16 bytes each).
    """
    compressor = array.compressor
    blosc_chunks = compressor is not None and compressor.codec_id == "blosc"
    raw_size = int(np.prod(array.chunks)) * array.dtype.itemsize if compressor is None and not array.filters else None
    separator = getattr(array, "_dimension_separator", None) or "."
    for index in itertools.product(*(range(n) for n in array.cdata_shape)):
        chunk = folder / separator.join(map(str, index))
        try:
            size = chunk.stat().st_size
            with chunk.open("rb") as f:
                header = f.read(_BLOSC_HEADER.size) if blosc_chunks else b""
        except FileNotFoundError:
            raise DataError(f"{chunk}: chunk file missing (zarr would silently read zeros there)") from None
        except OSError as err:
            raise DataError(f"{chunk}: cannot read the chunk file ({err.strerror})") from None
        if blosc_chunks:
            if len(header) < _BLOSC_HEADER.size:
                raise DataError(f"{chunk}: chunk file truncated ({size} bytes, shorter than a Blosc header)")
            cbytes = _BLOSC_HEADER.unpack(header)[6]
            if cbytes != size:
                raise DataError(f"{chunk}: chunk file truncated ({size} bytes, its Blosc header says {cbytes})")
        elif raw_size is not None and size != raw_size:
            raise DataError(f"{chunk}: chunk file has {size} bytes, expected {raw_size} (uncompressed)")


def read_zarr_tomogram(
    path: str | Path, expected_spacing: float | None = None, voxel_spacing: float | None = None, override: bool = False
) -> Tomogram:
    """Level 0 of an OME-NGFF zarr tomogram (or a plain zarr array), checked for missing or truncated chunks, shape,
    spacing and finite values.

    `expected_spacing`: a nominal spacing (a copick folder's) that the metadata must agree with; `voxel_spacing`: an
    explicit spacing, used where the metadata gives none (and else checked against it like `expected_spacing`);
    with `override`, `voxel_spacing` replaces the metadata's (a wrong header).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such tomogram")
    try:
        node = zarr.open(str(path), mode="r")
        if isinstance(node, zarr.Group):
            spacing = _zarr_spacing(node, str(path))
            level = node.attrs["multiscales"][0]["datasets"][0]["path"] if "multiscales" in node.attrs else "0"
            array = node[level]
        else:
            spacing, array = None, node
        if not isinstance(array.store, zarr.DirectoryStore):
            raise DataError(f"{path}: only a zarr folder (DirectoryStore) can be read here")
        check_zarr_chunks(array, Path(array.store.path) / array.path)
        data = np.asarray(array[...], dtype=np.float32)
    except DataError:
        raise
    except Exception as err:  # zarr raises many types for a damaged store
        raise DataError(f"{path}: cannot read the zarr tomogram ({type(err).__name__}: {err})") from None
    if override and voxel_spacing is not None:
        spacing, voxel_spacing = voxel_spacing, None
    if spacing is None:
        if voxel_spacing is None:
            raise DataError(
                f"{path}: no voxel spacing in the zarr metadata (.zattrs key 'multiscales', its level-0 "
                "coordinateTransformations 'scale'); give it with --voxel-spacing (info, predict --tomogram)"
            )
        spacing = voxel_spacing
    for nominal in (expected_spacing, voxel_spacing):
        if nominal is not None and abs(spacing - nominal) > SPACING_TOLERANCE * nominal:
            raise DataError(
                f"{path}: voxel spacing {spacing:g} A in the metadata disagrees with the expected {nominal:g} A"
            )
    return Tomogram(_check_volume(data, str(path)), spacing, _run_name(path))


def _run_name(path: Path) -> str:
    """The experiment a tomogram belongs to: <run> of .../ExperimentRuns/<run>/VoxelSpacing<s>/<type>.zarr, else
    the file's stem (so a CSV predicted from a copick zarr can be scored against that run's picks)."""
    parts = path.resolve().parts
    if len(parts) >= 4 and parts[-4] == "ExperimentRuns" and parts[-2].startswith("VoxelSpacing"):
        return parts[-3]
    return path.stem


def read_mrc_tomogram(path: str | Path, voxel_spacing: float | None = None) -> Tomogram:
    """An MRC tomogram; `voxel_spacing` (Angstrom) replaces its header's, which may then be missing (0)."""
    import mrcfile

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such tomogram")
    try:
        with mrcfile.open(path, permissive=False) as mrc:
            data = np.asarray(mrc.data, dtype=np.float32)
            spacing = float(mrc.voxel_size.x)
    except Exception as err:
        raise DataError(f"{path}: cannot read the MRC file ({type(err).__name__}: {err})") from None
    if voxel_spacing is not None:
        spacing = voxel_spacing
    elif spacing <= 0:
        raise DataError(f"{path}: the MRC header gives no voxel size; give it with --voxel-spacing")
    return Tomogram(_check_volume(data, str(path)), spacing, path.stem)


def read_tomogram_file(path: str | Path, voxel_spacing: float | None = None) -> Tomogram:
    """A single tomogram from an .mrc/.rec or .zarr path; `voxel_spacing` (Angstrom) replaces its header's. Its
    spacing must be a plausible one (a header in nm, or in m, would otherwise rescale to nonsense)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".mrc", ".rec", ".map"):
        tomo = read_mrc_tomogram(path, voxel_spacing)
    elif suffix == ".zarr":
        tomo = read_zarr_tomogram(path, voxel_spacing=voxel_spacing, override=True)
    else:
        raise DataError(f"{path}: unknown tomogram format '{suffix}' (expected .mrc or .zarr)")
    check_voxel_spacing(tomo.voxel_spacing, f"{path}: spacing", DataError)
    return tomo


def _downsample2(volume: np.ndarray) -> np.ndarray:
    """2x mean pooling; odd sizes are padded by repeating the edge, so 315 becomes 158 as in the CZII data."""
    pad = [(0, s % 2) for s in volume.shape]
    v = np.pad(volume, pad, mode="edge")
    z, y, x = (s // 2 for s in v.shape)
    return v.reshape(z, 2, y, 2, x, 2).mean(axis=(1, 3, 5), dtype=np.float32)


def write_zarr_tomogram(path: str | Path, volume: np.ndarray, voxel_spacing: float, levels: int = 3) -> None:
    """An OME-NGFF (0.4) multiscale zarr with levels 0..levels-1, each half the previous, axes z, y, x in Angstrom."""
    from ome_zarr.writer import write_multiscale

    pyramid = [np.asarray(volume, dtype=np.float32)]
    for _ in range(levels - 1):
        pyramid.append(_downsample2(pyramid[-1]))
    axes = [{"name": a, "type": "space", "unit": "angstrom"} for a in "zyx"]
    transforms = [[{"type": "scale", "scale": [voxel_spacing * 2**i] * 3}] for i in range(levels)]
    # Multithreaded Blosc does not always give the same bytes for the same data; one thread keeps "same seed, same
    # bytes" true (and DVC hashes stable).
    threads, blosc.use_threads = blosc.use_threads, False
    with atomic_output(path, folder=True) as tmp:
        group = zarr.open_group(str(tmp), mode="w")
        # Nested chunk keys ("0/0/0"), as copick's FSStore expects and the CZII data have.
        storage = {"chunks": (64, 64, 64), "dimension_separator": "/"}
        try:
            write_multiscale(pyramid, group, axes=axes, coordinate_transformations=transforms, storage_options=storage)
        finally:
            blosc.use_threads = threads


# --- picks ----------------------------------------------------------------------------------------------------


def picks_file_name(object_name: str, naming: str, user_id: str = "curation", session_id: str = "0") -> str:
    check_name(object_name, "object name", error=DataError)
    if naming == "competition":
        return f"{object_name}.json"
    if naming == "copick":
        check_name(user_id, "user id", error=DataError)
        check_name(session_id, "session id", error=DataError)
        return f"{user_id}_{session_id}_{object_name}.json"
    raise DataError(f"unknown picks naming '{naming}' (expected competition or copick)")


def write_picks_json(
    path: str | Path,
    object_name: str,
    run_name: str,
    points_xyz: np.ndarray,
    voxel_spacing: float,
    rotations: np.ndarray | None = None,
    user_id: str = "curation",
    session_id: str = "0",
    root: str | Path | None = None,
) -> None:
    """A copick picks file; `points_xyz` (N, 3) in Angstrom, optional `rotations` (N, 3, 3) go into transformation_.

    With `root` (a copick project's overlay root), a path that resolves outside it (through '..' or a symbolic link)
    is refused."""
    path = Path(path)
    for what, name in (("object name", object_name), ("run name", run_name), ("user id", user_id)):
        check_name(name, what, path, DataError)
    check_name(str(session_id), "session id", path, DataError)
    if root is not None:
        inside(path, root)
    points = []
    for i, xyz in enumerate(np.asarray(points_xyz, dtype=float).reshape(-1, 3)):
        transform = np.eye(4)
        if rotations is not None:
            transform[:3, :3] = rotations[i]
        points.append(
            {
                "location": {"x": float(xyz[0]), "y": float(xyz[1]), "z": float(xyz[2])},
                "transformation_": transform.tolist(),
                "instance_id": 0,
                "score": 1.0,
            }
        )
    payload = {
        "pickable_object_name": object_name,
        "user_id": user_id,
        "session_id": session_id,
        "run_name": run_name,
        "voxel_spacing": voxel_spacing,
        "unit": "angstrom",
        "points": points,
        "trust_orientation": rotations is not None,
    }
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=1))


def inside(path: str | Path, root: str | Path, folder: bool = False) -> Path:
    """`path` resolved (symbolic links followed; a file's own name is not, since writing replaces a link there); a
    DataError unless it lies under `root` (resolved too)."""
    path, root = Path(path), Path(root).resolve()
    resolved = path.resolve() if folder else path.parent.resolve() / path.name
    if not resolved.is_relative_to(root) or path.name in ("", ".", ".."):
        raise DataError(f"{path} resolves to {resolved}, outside the copick project's root {root}; not written")
    return resolved


def _object_of_picks_file(path: Path, known: set[str]) -> tuple[str, str | None]:
    """(object name, user id or None) from a picks file name, in competition or copick naming."""
    stem = path.stem
    if stem in known:
        return stem, None
    parts = stem.split("_", 2)
    if len(parts) == 3:
        return parts[2], parts[0]
    return stem, None


def read_picks_json(path: Path, run: str) -> tuple[str, np.ndarray]:
    """(object name, (N, 3) centres in Angstrom as x, y, z) from one picks file."""
    try:
        payload = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: not a readable JSON picks file ({err})") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("points", []), list):
        raise DataError(f"{path}: not a copick picks file (expected an object with a 'points' list)")
    unit = payload.get("unit", "angstrom")
    if unit != "angstrom":
        raise DataError(f"{path}: picks in unit '{unit}', expected angstrom")
    centres = []
    for i, point in enumerate(payload.get("points") or []):
        try:
            loc = point["location"]
            xyz = np.array([loc["x"], loc["y"], loc["z"]], dtype=float)
            transform = point.get("transformation_")
            if transform is not None:
                xyz = xyz + np.asarray(transform, dtype=float)[:3, 3]
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{path}: point {i} has no valid location") from None
        if not np.isfinite(xyz).all():
            raise DataError(f"{path}: point {i} has a non-finite coordinate")
        centres.append(xyz)
    return payload.get("pickable_object_name", path.stem), np.array(centres, dtype=float).reshape(-1, 3)


def check_points_inside(picks: pd.DataFrame, tomo: Tomogram | VolumeShape, where: str) -> None:
    """Points must lie inside the volume (within half a voxel of its edge voxels' centres)."""
    if picks.empty:
        return
    xyz = picks[COORDS].to_numpy()
    upper = (np.array(tomo.shape[::-1]) - 0.5) * tomo.voxel_spacing
    lower = -0.5 * tomo.voxel_spacing
    outside = ((xyz < lower) | (xyz > upper)).any(axis=1)
    if outside.any():
        row = picks[outside].iloc[0]
        raise DataError(
            f"{where}: {outside.sum()} picks lie outside the {tuple(tomo.shape)} volume, e.g. {row.particle_type} at "
            f"({row.x:.1f}, {row.y:.1f}, {row.z:.1f}) A; extent is "
            f"{(np.array(tomo.shape[::-1]) * tomo.voxel_spacing).round(1).tolist()} A (x, y, z)"
        )


# --- a copick project -----------------------------------------------------------------------------------------


class CopickProject:
    """A copick filesystem project, read the way the competition shipped it or the way copick writes it."""

    def __init__(self, config_path: str | Path, weights: dict[str, float] | None = None, picks_user: str | None = None):
        """`config_path`: a copick config, a folder holding `copick_config.json`, or a folder in the competition's
        layout as Kaggle shipped it (`overlay/` and `static/`, no config: the six CZII classes are assumed)."""
        self.config_path = Path(config_path)
        if self.config_path.is_dir() and (self.config_path / CONFIG_NAME).exists():
            self.config_path = self.config_path / CONFIG_NAME
        if self.config_path.is_dir():
            self.config = competition_config(self.config_path)
            self.config_path = self.config_path / CONFIG_NAME  # roots are relative to the folder, as if it were here
        elif not self.config_path.exists():
            raise DataError(f"{self.config_path}: no copick config here")
        else:
            try:
                self.config = json.loads(self.config_path.read_text())
            except (OSError, json.JSONDecodeError) as err:
                raise DataError(f"{self.config_path}: not a readable JSON copick config ({err})") from None
        if "overlay_root" not in self.config:
            raise DataError(f"{self.config_path}: copick config has no overlay_root")
        self.classes: tuple[ParticleClass, ...] = classes_from_copick(self.config, weights)
        self.overlay_root = root_path(self.config_path, self.config["overlay_root"])
        self.static_root = root_path(self.config_path, self.config.get("static_root")) or self.overlay_root
        if picks_user is not None:
            check_name(picks_user, "picks user", "data.picks_user", DataError)
        self.picks_user = picks_user

    def run_names(self) -> list[str]:
        names = set()
        for root in {self.static_root, self.overlay_root}:
            runs = root / "ExperimentRuns"
            if runs.is_dir():
                found = [p.name for p in runs.iterdir() if p.is_dir() and not p.name.startswith(".")]
                for name in found:
                    check_name(name, "run name", runs, DataError)
                names.update(found)
        if not names:
            raise DataError(f"{self.config_path}: no runs under {self.static_root}/ExperimentRuns")
        return sorted(names)

    def check_runs(self, names: list[str], option: str = "--runs") -> None:
        """A UserError naming the first of `names` that is not a run here, with the runs `option` may name."""
        known = self.run_names()
        unknown = sorted(set(names) - set(known))
        if unknown:
            listed = ", ".join(known[:SHOWN_RUNS]) + (
                f" and {len(known) - SHOWN_RUNS} more" if len(known) > SHOWN_RUNS else ""
            )
            raise UserError(
                f"run {unknown[0]} is not in the copick project {self.config_path}; {option} takes {listed}"
            )

    def tomogram_path(self, run: str, tomo_type: str, voxel_spacing: float) -> Path:
        check_name(run, "run name", self.config_path, DataError)
        check_name(tomo_type, "tomogram type", self.config_path, DataError)
        return self.static_root / "ExperimentRuns" / run / spacing_folder(voxel_spacing) / f"{tomo_type}.zarr"

    def folder_spacing(self, run: str, wanted: float | None, default: float) -> float:
        """The VoxelSpacing folder of `run` whose value is nearest `wanted` (e.g. a model's trained spacing: the CZII
        folder says 10.000 for a true 10.012), within SPACING_TOLERANCE; else the run's only folder if it has one
        (a mismatch is then refused or rescaled by whoever reads it, naming both spacings); else `default`."""
        check_name(run, "run name", self.config_path, DataError)
        folders = (self.static_root / "ExperimentRuns" / run).glob("VoxelSpacing*")
        values = []
        for folder in folders:
            try:
                values.append(float(folder.name.removeprefix("VoxelSpacing")))
            except ValueError:
                continue
        near = [v for v in values if wanted and abs(v - wanted) <= SPACING_TOLERANCE * wanted]
        if near:
            return min(near, key=lambda v: abs(v - wanted))
        return values[0] if len(values) == 1 else default

    def tomogram(self, run: str, tomo_type: str, voxel_spacing: float) -> Tomogram:
        """Level 0 of a run's tomogram; `voxel_spacing` is the folder's value, the true one comes from the zarr."""
        path = self.tomogram_path(run, tomo_type, voxel_spacing)
        if not path.exists():
            available = sorted(p.name for p in path.parent.glob("*.zarr")) if path.parent.exists() else []
            raise DataError(f"run {run} has no '{tomo_type}' tomogram at {path} (available: {available or 'none'})")
        tomo = read_zarr_tomogram(path, expected_spacing=voxel_spacing)
        tomo.name = run
        return tomo

    def picks_files(self, run: str) -> list[Path]:
        check_name(run, "run name", self.config_path, DataError)
        files = []
        for root in dict.fromkeys([self.overlay_root, self.static_root]):
            folder = root / "ExperimentRuns" / run / "Picks"
            if folder.is_dir():
                files.extend(sorted(folder.glob("*.json")))
        return files

    def overlay_picks_folder(self, run: str) -> Path:
        """`<overlay>/ExperimentRuns/<run>/Picks`, where picks are written; refused if it resolves outside the overlay
        root (a run folder or Picks folder that is a symbolic link to elsewhere)."""
        check_name(run, "run name", self.config_path, DataError)
        folder = self.overlay_root / "ExperimentRuns" / run / "Picks"
        inside(folder, self.overlay_root, folder=True)
        return folder

    def volume_shape(self, run: str, tomo_type: str, voxel_spacing: float) -> VolumeShape:
        """Shape and true spacing of a run's tomogram from its metadata alone (no voxels read)."""
        path = self.tomogram_path(run, tomo_type, voxel_spacing)
        try:
            node = zarr.open(str(path), mode="r")
            spacing = _zarr_spacing(node, str(path)) if isinstance(node, zarr.Group) else None
            if isinstance(node, zarr.Group):
                multiscales = node.attrs.get("multiscales")
                node = node[multiscales[0]["datasets"][0]["path"] if multiscales else "0"]
            array = node
            return VolumeShape(tuple(array.shape), spacing or voxel_spacing)
        except DataError:
            raise
        except Exception as err:  # a missing or damaged store: name it
            raise DataError(
                f"run {run}: cannot read the shape of its '{tomo_type}' tomogram at {path} ({err})"
            ) from None

    def picks(self, run: str, tomogram: Tomogram | VolumeShape | None = None) -> pd.DataFrame:
        """All particle picks of a run as a DataFrame (experiment, particle_type, x, y, z in Angstrom).

        With a tomogram (or its shape) given, points outside its volume are an error.
        """
        known = by_name(self.classes)
        frames = []
        for path in self.picks_files(run):
            object_name, user = _object_of_picks_file(path, set(known))
            if user == PREDICTION_USER and self.picks_user != PREDICTION_USER:
                continue
            if self.picks_user is not None and user not in (None, self.picks_user):
                continue
            declared, xyz = read_picks_json(path, run)
            if declared != object_name:
                raise DataError(f"{path}: the file says object '{declared}' but its name says '{object_name}'")
            if object_name not in known:
                raise DataError(f"{path}: unknown class '{object_name}' (the copick config lists {sorted(known)})")
            frame = pd.DataFrame(xyz, columns=COORDS)
            frame.insert(0, "particle_type", object_name)
            frame.insert(0, "experiment", run)
            frames.append(frame)
        picks = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=POINT_COLUMNS)
        picks = picks.astype({"x": float, "y": float, "z": float})
        if tomogram is not None:
            check_points_inside(picks, tomogram, f"run {run}")
        return picks


def copick_config(classes: tuple[ParticleClass, ...], name: str, description: str) -> dict:
    """A copick config whose roots are the `static/` and `overlay/` folders beside it (relative, so it can move)."""
    return {
        "name": name,
        "description": description,
        "version": "1.0.0",
        "config_type": "filesystem",
        "pickable_objects": [c.copick_object() for c in classes],
        "overlay_root": "local://overlay",
        "static_root": "local://static",
        "overlay_fs_args": {"auto_mkdir": True},
    }


def competition_config(folder: Path) -> dict:
    """The config of a folder in the competition's layout, which Kaggle shipped without one: its own roots and the
    six CZII classes (whose table is the competition's)."""
    if not (folder / "overlay" / "ExperimentRuns").is_dir() and not (folder / "static" / "ExperimentRuns").is_dir():
        raise DataError(f"{folder}: neither a copick config nor a folder with overlay/ExperimentRuns or static/")
    return copick_config(CZII_CLASSES, name=folder.name, description=f"the competition's layout at {folder}")


def absolute_config(project: CopickProject) -> dict:
    """The project's copick config with absolute roots. copick (1.31) takes a relative `local://` root relative to the
    current folder, not to the config's, so only this form opens from anywhere; the project's own config keeps its
    relative roots, as a DVC output must not name this machine's paths."""
    return {
        **project.config,
        "overlay_root": f"local://{project.overlay_root.resolve()}",
        "static_root": f"local://{project.static_root.resolve()}",
    }


def default_absolute_config_path(project: CopickProject) -> Path:
    """Beside the project's folder, outside it: `data/project` -> `data/project.copick.json` (a file inside would
    change the DVC output)."""
    folder = project.config_path.parent
    return folder.with_name(f"{folder.name}.copick.json")


def write_copick_config(path: str | Path, classes: tuple[ParticleClass, ...], name: str, description: str) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(copick_config(classes, name, description), indent=2))


def voxel_to_angstrom(zyx: np.ndarray, voxel_spacing: float) -> np.ndarray:
    """(N, 3) voxel indices (z, y, x) -> (N, 3) Angstrom (x, y, z)."""
    return np.asarray(zyx, dtype=float)[:, ::-1] * voxel_spacing


def angstrom_to_voxel(xyz: np.ndarray, voxel_spacing: float) -> np.ndarray:
    """(N, 3) Angstrom (x, y, z) -> (N, 3) fractional voxel coordinates (z, y, x)."""
    return np.asarray(xyz, dtype=float)[:, ::-1] / voxel_spacing
