"""A scratch workspace: a folder with its own params.yaml where every command writes its outputs (data, split, models,
metrics, paper, MLflow store) instead of the repository's, so that trying things (the README's quick tour) leaves the
committed study alone.

Every path in params.yaml and on the command line is relative to the current folder, so a command run inside the
workspace reads its params.yaml and writes there. The folder holds links to the code (`src`, so `python -m src` runs
in it) and to `profiles/`, a `.gitignore` that ignores all of it wherever it lies, and a marker that sends the MLflow
store to its own mlruns/ (src/tracking.py).
"""

from __future__ import annotations

from pathlib import Path

from src.errors import UserError

MARKER = ".cryoet-workspace"
LINKS = ("src", "profiles")  # the code, and the profiles `python -m src profile` applies to the workspace's params
IGNORE_EVERYTHING = "# a scratch workspace (python -m src workspace): nothing here is committed\n*\n"
# params paths to files outside the workspace, kept pointing there: a copick project, the portal download (large and
# shared), the measured step times the report reads
INPUT_PATHS = (("data", "copick_config"), ("data", "portal_dir"), ("report", "step_times"))


def workspace_root(folder: Path | None = None) -> Path | None:
    """`folder` (default: the current one) if it is a workspace, else None."""
    folder = Path.cwd() if folder is None else folder
    return folder.resolve() if (folder / MARKER).is_file() else None


def make_workspace(folder: Path, repo: Path) -> bool:
    """Make `folder` a workspace of the repository at `repo`, with a copy of its params.yaml; a folder that is a
    workspace already keeps its params.yaml (its links are renewed). Returns whether params.yaml was written."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder} is a file; give a folder for the workspace")
    if folder.is_dir() and workspace_root(folder) is None and any(folder.iterdir()):
        raise UserError(f"{folder} is a non-empty folder that is not a workspace (no {MARKER} in it); give another")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".gitignore").write_text(IGNORE_EVERYTHING)
    for name in LINKS:
        _link(folder / name, repo / name)
    fresh = not (folder / "params.yaml").exists()
    if fresh:
        _copy_params(repo / "params.yaml", folder / "params.yaml", repo)
    (folder / MARKER).write_text(f"a workspace of {repo.resolve()} (python -m src workspace)\n")
    return fresh


def _link(link: Path, target: Path) -> None:
    if link.is_symlink():
        link.unlink()
    elif link.exists():
        raise UserError(f"{link} exists and is not a link to {target}; move it away")
    link.symlink_to(target.resolve(), target_is_directory=True)


def _copy_params(source: Path, target: Path, repo: Path) -> None:
    """params.yaml as it is, comments kept, with its relative input paths made absolute (they name the repository's
    files, not the workspace's)."""
    from src.params import load_params
    from src.profiles import read_yaml, round_trip_yaml

    load_params(source)  # refuse params that would not load before copying them
    yaml = round_trip_yaml()
    params = read_yaml(yaml, source)
    for section, key in INPUT_PATHS:
        value = params[section][key]
        if isinstance(value, list):
            for i, item in enumerate(value):
                value[i] = _from_repo(item, repo)
        else:
            params[section][key] = _from_repo(value, repo)
    with target.open("w") as f:
        yaml.dump(params, f)


def _from_repo(path: str | None, repo: Path) -> str | None:
    """A relative path of the repository's params.yaml as an absolute one."""
    return path if path is None or Path(path).is_absolute() else str((repo / path).resolve())
