"""Shared fixtures of the fault suite: a tiny project workspace per test, the CLI as a user runs it, and the check that
a fault ends in one clean sentence.

A workspace is a folder with its own params.yaml (five 32 x 64 x 64 synthetic runs), the `data` stage's project in
data/project and the `split` stage's data/splits.json, made once per session with the CLI and copied for each test.

`run_cli` runs each command in its own process, as `python -m src` would, but forked from this one with the CLI and
its light imports already loaded (a fresh interpreter spends 0.3-1 s importing before it can fail; the suite runs
about a hundred commands). A crash still shows as a negative exit code. Set FAULTS_SUBPROCESS=1 to run every command
in a fresh `python -m src` instead.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

import src.__main__ as cli
import src.data.copick_io  # noqa: F401  (loaded once here, so that each forked command starts warm)
import src.models.attention  # noqa: F401  (torch: the commands that build networks check params.yaml's models with it)
import src.report.runs  # noqa: F401  (pandas and mlflow's client: the report and `tracking import` start warm)
from tests.conftest import REPO

RUN = "TS_SYN_000"
SPACING = yaml.safe_load((REPO / "params.yaml").read_text())["data"]["voxel_spacing"]  # the folder the default writes
ZARR = f"data/project/static/ExperimentRuns/{RUN}/VoxelSpacing{SPACING:.3f}/denoised.zarr"
PICKS = f"data/project/overlay/ExperimentRuns/{RUN}/Picks"
CLI_TIMEOUT = 60  # seconds; a command that hangs (or trains instead of failing) is killed and fails its case


def run_cli(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, fresh: bool = False, module: str = "src"
) -> tuple[int, str, str]:
    """`python -m <module> <args>` (the CLI, or `src.report`) in `cwd` with this checkout's code: (returncode, stdout,
    stderr). `fresh`: in a new interpreter rather than a fork of this one."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "CRYOET_MLRUNS": str(cwd / "mlruns"), **(env or {})}
    if fresh or os.environ.get("FAULTS_SUBPROCESS") == "1" or not hasattr(os, "fork"):
        proc = subprocess.run(
            [sys.executable, "-m", module, *args],
            cwd=cwd,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
        )
        return proc.returncode, proc.stdout, proc.stderr
    return _run_forked(args, cwd, full_env, module)


def _entry(module: str):
    """The function `python -m <module>` runs."""
    if module == "src.report":
        from src.report.__main__ import app

        return app
    return cli.main


def _run_forked(args: list[str], cwd: Path, env: dict[str, str], module: str = "src") -> tuple[int, str, str]:
    """The CLI's `main()` in a forked child, its stdout and stderr in files, as `python -m src` ends: SystemExit's
    code, or 1 and a traceback for an uncaught exception, or minus the signal that killed it."""
    with tempfile.TemporaryDirectory() as tmp:
        out_path, err_path = Path(tmp) / "stdout", Path(tmp) / "stderr"
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 1
            try:
                out, err = open(out_path, "w"), open(err_path, "w")  # noqa: SIM115
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                sys.stdout, sys.stderr = out, err
                os.chdir(cwd)
                os.environ.clear()
                os.environ.update(env)
                from numcodecs import blosc

                blosc.use_threads = False  # Blosc's thread pool does not survive a fork
                sys.argv = [f"python -m {module}", *args]
                try:
                    _entry(module)()
                    code = 0
                except SystemExit as exit_:
                    code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
                    if not isinstance(exit_.code, int | None):
                        print(exit_.code, file=sys.stderr)
                except BaseException:
                    traceback.print_exc()
                    code = 1
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        deadline = time.monotonic() + CLI_TIMEOUT
        while (waited := os.waitpid(pid, os.WNOHANG))[0] == 0:
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                waited = os.waitpid(pid, 0)
                break
            time.sleep(0.01)
        code = os.waitstatus_to_exitcode(waited[1])
        return code, out_path.read_text(), err_path.read_text()


def assert_clean_error(result: tuple[int, str, str], names: tuple[str, ...] | list[str] | str) -> str:
    """Exit code 2, exactly one line `error: ...` naming each of `names`, no traceback, no crash; the line."""
    code, out, err = result
    output = out + err
    shown = f"exit {code}\n--- stdout\n{out[-3000:]}\n--- stderr\n{err[-3000:]}"
    assert "Traceback" not in output, shown
    assert "Segmentation" not in output and code not in (-11, 139), shown
    assert code == 2, shown
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, shown
    for name in [names] if isinstance(names, str) else names:
        assert name in lines[0], f"{name!r} not in {lines[0]!r}"
    return lines[0]


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under `folder`, with each file's size and modification time: what a failed command must not
    change (nothing lost, nothing half-written such as `.<name>.partial-<pid>`)."""
    state = {}
    for path in sorted(folder.rglob("*")):
        st = path.lstat()
        state[str(path.relative_to(folder))] = (st.st_size, st.st_mtime_ns) if path.is_file() else (-1, 0)
    return state


def edit_params(work: Path, key: str, value) -> None:
    """Set a dotted key of the workspace's params.yaml (e.g. `predict.overlap`)."""
    raw = yaml.safe_load((work / "params.yaml").read_text())
    *parents, last = key.split(".")
    node = raw
    for part in parents:
        node = node[part]
    node[last] = value
    (work / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


@pytest.fixture(scope="session")
def fault_base(tmp_path_factory) -> Path:
    """The session's workspace, made with the CLI: params.yaml, data/project (5 runs), data/splits.json."""
    base = tmp_path_factory.mktemp("faults") / "work"
    base.mkdir()
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["synth"].update(runs=5, shape=[32, 64, 64])
    raw["split"].update(test_runs=1, runs_per_sample=2, val_fraction=0.5)
    (base / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    for command in (["data"], ["split"]):
        code, out, err = run_cli(command, base, fresh=True)
        assert code == 0, out + err
    return base


@pytest.fixture
def workspace(fault_base, tmp_path) -> Path:
    """A fresh copy of the session's workspace for one test to damage."""
    work = tmp_path / "work"
    shutil.copytree(fault_base, work, symlinks=True)
    return work


@dataclass(frozen=True)
class Case:
    """One fault: what is done to a fresh workspace, the command then run there, and what its one-line error names."""

    id: str
    damage: Callable[[Path], None]
    args: list[str]
    names: tuple[str, ...]  # what the error line must name
    module: str = "src"  # the CLI that runs `args`: src or src.report
    env: dict[str, str] = field(default_factory=dict)  # more environment for the command


def assert_fails_cleanly_writing_nothing(case: Case, workspace: Path) -> None:
    """Damage the workspace, run the case's command: one clean error naming what it must, and no file changed."""
    case.damage(workspace)
    before = snapshot(workspace)
    result = run_cli(case.args, workspace, env=case.env, module=case.module)
    assert_clean_error(result, case.names)
    after = snapshot(workspace)
    assert after == before, f"files changed: {sorted(set(after) ^ set(before)) or 'sizes or times'}"


def write(rel: str, content: str | bytes) -> Callable[[Path], None]:
    """A damage: (over)write the workspace file `rel` with `content`."""

    def damage(work: Path) -> None:
        path = work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)

    return damage
