"""The `data` stage: make or locate the copick project that every later stage reads, and check all of it.

- synthetic: generate the embedded synthetic project into `data.out`;
- copick: an existing copick project (e.g. the competition's train/ folder as shipped); `data.out` gets a copy of its
  config with absolute roots, so the large tomograms stay where they are;
- portal: download a CryoET Data Portal dataset into `data.portal_dir`, then as copick.
Every run's tomogram and picks are read back and validated; `data.out/manifest.json` records what was found.
"""

from __future__ import annotations

import json
from pathlib import Path

from src.atomic import atomic_output
from src.classes import CZII_CLASSES
from src.data.copick_io import CONFIG_NAME, CopickProject, absolute_config
from src.errors import UserError
from src.fields import OBJECT, WHOLE, field, map_of, read_object
from src.params import Params
from src.progress import each

MANIFEST_NAME = "manifest.json"


def read_manifest(path: str | Path) -> dict:
    """A project's manifest.json, checked where the split reads it: each run's picks per class, whole numbers."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} not found: run `dvc repro data` first")
    manifest = read_object(path, "a project manifest (python -m src data writes it)")
    for run, summary in field(manifest, "runs", map_of(OBJECT), path).items():
        field(summary, "picks", map_of(WHOLE), path, prefix=f"runs.{run}.")
    return manifest


def project_config(params: Params) -> Path:
    """Where later stages find the project's copick config."""
    return Path(params.data.out) / CONFIG_NAME


def open_project(params: Params) -> CopickProject:
    return CopickProject(project_config(params), params.classes.weights, params.data.picks_user)


def _link_external(source: Path, out: Path) -> None:
    """Write `out/copick_config.json`: the external project's config (a copick config, or the one a folder in the
    competition's layout implies) with its roots made absolute."""
    config = absolute_config(CopickProject(source))
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG_NAME).write_text(json.dumps(config, indent=2))


def validate_project(project: CopickProject, tomo_type: str, voxel_spacing: float, progress: bool = True) -> dict:
    """Read every run's tomogram and picks (raising DataError on the first problem); a summary per run."""
    runs = {}
    for run in each(project.run_names(), "checking runs", "run", progress):
        tomo = project.tomogram(run, tomo_type, voxel_spacing)
        picks = project.picks(run, tomo)
        runs[run] = {
            "shape": list(tomo.data.shape),
            "voxel_spacing": tomo.voxel_spacing,
            "picks": {c.name: int((picks.particle_type == c.name).sum()) for c in project.classes},
        }
    return runs


def prepare_data(params: Params, progress: bool = True, workers: int = 1, force: bool = False) -> dict:
    """Build `data.out` (in a temporary folder, renamed at the end so a failure leaves nothing half-written);
    `workers`: processes making synthetic runs at once; `force`: replace a `data.out` this program did not make."""
    d = params.data
    if d.source not in ("synthetic", "copick", "portal"):
        raise UserError(f"data.source must be synthetic, copick or portal, got '{d.source}'")
    if d.source == "copick" and not (d.copick_config and Path(d.copick_config).exists()):
        raise UserError(
            f"data.copick_config must name an existing copick config or project folder, got '{d.copick_config}'"
        )
    with atomic_output(d.out, folder=True, force=force) as tmp:
        if d.source == "synthetic":
            from src.data.synth import synthesize_project

            synthesize_project(tmp, params.synth, CZII_CLASSES, d.voxel_spacing, progress=progress, workers=workers)
        elif d.source == "portal":
            from src.data.portal import download_dataset

            external = download_dataset(d.portal_dataset, d.portal_dir, CZII_CLASSES, d.tomo_type, d.voxel_spacing)
            _link_external(external, tmp)
        else:
            _link_external(Path(d.copick_config), tmp)
        project = CopickProject(tmp / CONFIG_NAME, params.classes.weights, d.picks_user)
        manifest = {
            "source": d.source,
            "tomo_type": d.tomo_type,
            "classes": [c.name for c in project.classes],
            "runs": validate_project(project, d.tomo_type, d.voxel_spacing, progress),
        }
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
