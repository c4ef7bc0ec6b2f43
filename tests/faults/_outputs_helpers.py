"""Helpers of the output and resume fault tables: run the real CLI in a subprocess, snapshot folders, check errors."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import REPO


def cli_env(store: Path) -> dict:
    return {**os.environ, "CRYOET_MLRUNS": str(store), "PYTHONPATH": str(REPO)}


def run_cli(args: list[str], cwd: Path, store: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "src", *args],
        cwd=cwd,
        env=cli_env(store),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def snapshot(root: Path) -> dict[str, str]:
    """{relative path: sha256 of the bytes, or '->target' for a link, or '/' for a folder} of everything under root."""
    found = {}
    if not root.exists():
        return found
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            found[rel] = "->" + os.readlink(path)
        elif path.is_dir():
            found[rel] = "/"
        else:
            found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def partial_leftovers(root: Path) -> list[str]:
    """Temporary siblings that a finished command must not leave behind."""
    return [str(p) for p in root.rglob("*") if ".partial-" in p.name or ".old-" in p.name or ".probe-" in p.name]


def assert_one_error(result: subprocess.CompletedProcess, names: str | tuple[str, ...]) -> str:
    """Exit 2, exactly one `error:` line (naming each of `names`), no traceback; returns that line."""
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    for name in (names,) if isinstance(names, str) else names:
        assert name in errors[0], (name, errors[0])
    return errors[0]


def assert_outcome(case: Case, out: Outcome) -> None:
    """The checks every table case gets: no traceback; a clean one-line error or the expected exit code; files
    unchanged by a refused command; nothing written outside the project."""
    result = out.result
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    if case.rc == 2:
        assert_one_error(result, case.names)
    else:
        assert result.returncode == case.rc, (result.returncode, result.stderr[-3000:])
    if case.unchanged:
        assert out.after == out.before, "files changed by a refused command"
    assert out.outside_after == out.outside_before, "something was written outside the project"


@dataclass
class Case:
    """One (fault, command) pair: `setup` prepares the case folder (the command's cwd); `args` are the CLI arguments;
    `rc` the expected exit code; `names` what the one error line must name (rc 2); `after` further checks."""

    id: str
    args: list[str]
    setup: Callable[[Path], None] = lambda d: None
    rc: int = 2
    names: str | tuple[str, ...] = ()
    after: Callable[[Path, subprocess.CompletedProcess], None] | None = None
    unchanged: bool = True  # a refused command must leave its folder exactly as it was
    skip: str | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class Outcome:
    folder: Path
    result: subprocess.CompletedProcess
    before: dict[str, str]
    after: dict[str, str]
    outside_before: dict[str, str]
    outside_after: dict[str, str]


def forked_cli(args: list[str], cwd: Path, store: Path) -> subprocess.CompletedProcess:
    """The command forked from this process, warm (the fault suite's `run_cli`), as a CompletedProcess."""
    from tests.faults.conftest import run_cli as run_forked

    code, out, err = run_forked(args, cwd, env={"CRYOET_MLRUNS": str(store)})
    return subprocess.CompletedProcess(args, code, out, err)


def run_table(
    cases: list[Case], base: Path, store: Path | None, workers: int = 4, forked: bool = False
) -> dict[str, Outcome]:
    """Set up every case in `base/<id>/work` (with `base/<id>/outside` as the place nothing may be written to), then
    run them all, `workers` at a time in fresh interpreters, or with `forked` one after the other, each forked from
    this process (a fork is only safe from a process's one thread); `store`: the MLflow store (None: `mlruns` in each
    case's folder)."""

    def one(case: Case) -> tuple[str, Outcome]:
        folder, outside = base / case.id / "work", base / case.id / "outside"
        folder.mkdir(parents=True)
        outside.mkdir()
        case.setup(folder)
        before, outside_before = snapshot(folder), snapshot(outside)
        result = (forked_cli if forked else run_cli)(case.args, folder, store or folder / "mlruns")
        return case.id, Outcome(folder, result, before, snapshot(folder), outside_before, snapshot(outside))

    todo = [c for c in cases if c.skip is None]
    if forked:
        return dict(map(one, todo))
    with ThreadPoolExecutor(workers) as pool:
        return dict(pool.map(one, todo))
