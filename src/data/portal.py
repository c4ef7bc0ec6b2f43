"""CryoET Data Portal -> the same copick layout, through the portal's own client (`cryoet_data_portal`).

Tomograms arrive as OME-NGFF zarr (`Tomogram.download_omezarr`); point annotations arrive as ndjson files whose
locations are in voxels of their voxel spacing, which `portal_points_to_angstrom` converts to copick picks.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from src.atomic import atomic_output, check_output
from src.classes import ParticleClass
from src.data.copick_io import spacing_folder, write_copick_config, write_picks_json
from src.errors import DataError, UserError
from src.names import check_name
from src.progress import each

# How the portal names the CZII objects (object_name, lower case) -> our class names; matched by substring.
PORTAL_NAME_HINTS: dict[str, tuple[str, ...]] = {
    "apo-ferritin": ("ferritin",),
    "beta-amylase": ("amylase",),
    "beta-galactosidase": ("galactosidase",),
    "ribosome": ("ribosome",),
    "thyroglobulin": ("thyroglobulin",),
    "virus-like-particle": ("virus-like", "capsid", "vlp"),
}
# Our tomogram type names (as in the CZII data) from the portal's processing / reconstruction method.
TOMO_TYPE_OF = {"denoised": "denoised", "wbp": "wbp", "raw": "wbp", "filtered": "ctfdeconvolved"}


class PortalUnreachable(UserError):
    pass


def class_for_portal_object(object_name: str, classes: tuple[ParticleClass, ...]) -> str | None:
    name = object_name.lower()
    for c in classes:
        if c.name in name or any(h in name for h in PORTAL_NAME_HINTS.get(c.name, ())):
            return c.name
    return None


def portal_points_to_angstrom(ndjson_text: str, voxel_spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) centres in Angstrom (x, y, z) and (N, 3, 3) rotations from a portal point ndjson (voxel units)."""
    centres, rotations = [], []
    for i, line in enumerate(ndjson_text.splitlines()):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            loc = item["location"]
            centres.append([float(loc["x"]), float(loc["y"]), float(loc["z"])])
            rotations.append(np.asarray(item.get("xyz_rotation_matrix", np.eye(3)), dtype=float).reshape(3, 3))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise DataError(f"portal annotation line {i + 1} is not a point with a location") from None
    return np.array(centres, dtype=float).reshape(-1, 3) * voxel_spacing, np.array(rotations).reshape(-1, 3, 3)


def _tomo_type(tomogram) -> str:
    processing = (getattr(tomogram, "processing", "") or "").lower()
    method = (getattr(tomogram, "reconstruction_method", "") or "").lower()
    return TOMO_TYPE_OF.get(processing, TOMO_TYPE_OF.get(method, processing or method or "unknown"))


def _download_run(run, out: Path, classes: tuple[ParticleClass, ...], tomo_type: str, folder_spacing: float) -> None:
    """One portal run's `tomo_type` tomogram and point picks, into the copick layout under `out`."""
    check_name(run.name, "run name", "the CryoET Data Portal", DataError)
    for spacing in run.tomogram_voxel_spacings:
        if abs(spacing.voxel_spacing - folder_spacing) > 0.5:
            continue
        tomo_dir = out / "static" / "ExperimentRuns" / run.name / spacing_folder(folder_spacing)
        for tomogram in spacing.tomograms:
            if _tomo_type(tomogram) != tomo_type:
                continue
            tomo_dir.mkdir(parents=True, exist_ok=True)
            tomogram.download_omezarr(str(tomo_dir))
            downloaded = next(tomo_dir.glob("*.zarr"))
            if downloaded.name != f"{tomo_type}.zarr":
                shutil.move(downloaded, tomo_dir / f"{tomo_type}.zarr")
        for annotation in spacing.annotations:
            name = class_for_portal_object(annotation.object_name, classes)
            if name is None:
                continue
            for shape in annotation.annotation_shapes:
                for file in shape.annotation_files:
                    if file.format != "ndjson":
                        continue
                    staging = out / ".download"
                    staging.mkdir(exist_ok=True)
                    file.download(str(staging))
                    text = next(staging.glob("*.ndjson")).read_text()
                    shutil.rmtree(staging)
                    xyz, rot = portal_points_to_angstrom(text, spacing.voxel_spacing)
                    picks = out / "overlay" / "ExperimentRuns" / run.name / "Picks" / f"{name}.json"
                    write_picks_json(picks, name, run.name, xyz, spacing.voxel_spacing, rot)


def download_dataset(
    dataset_id: int,
    out: str | Path,
    classes: tuple[ParticleClass, ...],
    tomo_type: str,
    folder_spacing: float,
    force: bool = False,
) -> Path:
    """Download one portal dataset's `tomo_type` tomograms and point picks into a copick project at `out` (which may
    replace only a folder that this program made, unless `force`)."""
    from cryoet_data_portal import Client, Run

    out = check_output(out, folder=True, force=force)
    try:
        client = Client()
        runs = Run.find(client, [Run.dataset_id == dataset_id])
    except Exception as err:  # the client raises transport errors of several libraries
        raise PortalUnreachable(
            f"cannot reach the CryoET Data Portal to fetch dataset {dataset_id} "
            f"({type(err).__name__}); check the network or use data.source: copick with local files"
        ) from None
    if not runs:
        raise DataError(f"the CryoET Data Portal has no runs in dataset {dataset_id}")
    try:
        # A broken download leaves nothing that looks like a project.
        with atomic_output(out, folder=True, force=force) as tmp:
            write_copick_config(
                tmp / "copick_config.json", classes, f"portal-{dataset_id}", f"CryoET Data Portal {dataset_id}"
            )
            for run in each(runs, f"dataset {dataset_id}", "run", label=lambda r: r.name):
                _download_run(run, tmp, classes, tomo_type, folder_spacing)
    except UserError:
        raise
    except Exception as err:  # transport and file errors of several libraries, mid-download
        raise PortalUnreachable(
            f"downloading dataset {dataset_id} from the CryoET Data Portal failed ({type(err).__name__}: {err}); "
            f"nothing was kept at {out}"
        ) from None
    return out / "copick_config.json"
