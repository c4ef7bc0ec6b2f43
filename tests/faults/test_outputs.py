"""Fault table of outputs and names (issue 15, items 1 and 2), through the real CLI, each command in its own process.

Outputs: a file output over an existing folder is refused; a folder output replaces only a folder that this program
made (its marker file) or an empty one, otherwise only with --force; an output path under a regular file, in /proc or
in a read-only folder is one sentence. Names: class, run, user and tomogram-type names that would become paths are
checked where they are read, and picks written into a copick project never land outside its overlay root.

Every refused case must exit 2 with exactly one `error:` line naming the thing at fault, no traceback, and leave its
folder and the `outside` folder beside it exactly as they were. All cases run at once in a module fixture.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from src.atomic import MARKER
from src.classes import CZII_CLASSES
from src.inference.checkpoint import save_checkpoint
from src.models import build_model
from tests.conftest import REPO, make_project
from tests.faults._outputs_helpers import Case, assert_outcome, partial_leftovers, run_table

RUN = "TS_SYN_000"
SYNTH = ["--runs", "1", "--shape", "16,32,32"]
DEAD_PID = 2**22 + 12345  # above any Linux pid_max: no such process
ROOT = os.geteuid() == 0
RES: dict[str, Path] = {}  # shared inputs, filled by the `outcomes` fixture


# --- case folders ------------------------------------------------------------------------------------------------


def outside(d: Path) -> Path:
    return d.parent / "outside"


def project(d: Path, name: str = "proj") -> Path:
    shutil.copytree(RES["project"], d / name, symlinks=True)
    return d / name


def foreign(d: Path, name: str = "mine") -> Path:
    (d / name).mkdir()
    (d / name / "keep.txt").write_text("not made by the program\n")
    return d / name


def afile(d: Path, name: str = "afile") -> Path:
    (d / name).write_text("a regular file\n")
    return d / name


def params(d: Path, **sections) -> None:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    # The smallest params that load: a split that fits the runs, patches that fit the volume.
    raw["synth"].update(runs=5, shape=[16, 32, 32])
    raw["split"].update(test_runs=1, runs_per_sample=2, val_fraction=0.5)
    raw["train"]["patch_scale"] = [0.25, 0.25, 0.25]
    for section, values in sections.items():
        raw[section].update(values)
    (d / "params.yaml").write_text(yaml.safe_dump(raw))


def checkpoint(d: Path, kind: str = "ok") -> None:
    shutil.copy(RES[f"ckpt_{kind}"], d / f"{kind}.pt")


def with_project(*extra):
    def setup(d: Path) -> None:
        params(d)
        project(d)
        for step in extra:
            step(d)

    return setup


def bad_class_config(name: str):
    def step(d: Path) -> None:
        config = d / "proj" / "copick_config.json"
        raw = json.loads(config.read_text())
        raw["pickable_objects"][0]["name"] = name
        config.write_text(json.dumps(raw))

    return step


def link_outside(rel: str):
    """Replace `proj/<rel>` by a symbolic link to the `outside` folder (its content moved there first)."""

    def step(d: Path) -> None:
        path = d / "proj" / rel
        shutil.rmtree(path)
        path.symlink_to(outside(d), target_is_directory=True)

    return step


# --- checks after a command that succeeded -------------------------------------------------------------------


def made_project(name: str):
    def check(d: Path, result) -> None:
        assert (d / name / MARKER).is_file() and (d / name / "copick_config.json").is_file()
        assert not (d / name / "keep.txt").exists()

    return check


def wrote_csv(name: str):
    def check(d: Path, result) -> None:
        assert (d / name).read_text().startswith("id,experiment,particle_type,x,y,z")

    return check


def stale_cleared(d: Path, result) -> None:
    assert not (d / f".p.partial-{DEAD_PID}").exists() and not (d / f".p.old-{DEAD_PID}").exists()
    made_project("p")(d, result)


def live_kept(d: Path, result) -> None:
    assert (d / f".p.partial-{os.getpid()}" / "junk").is_file()  # a live process's work is not touched
    made_project("p")(d, result)


def predicted_picks_inside(d: Path, result) -> None:
    picks = sorted((d / "proj" / "overlay" / "ExperimentRuns").glob("*/Picks/predict_0_*.json"))
    assert len(picks) == 2 * len(CZII_CLASSES)


def stale(pid: int):
    def step(d: Path) -> None:
        (d / f".p.partial-{pid}").mkdir()
        (d / f".p.partial-{pid}" / "junk").write_text("half a project\n")
        if pid == DEAD_PID:
            (d / f".p.old-{pid}").mkdir()

    return step


def link_to_outside(d: Path) -> None:
    (outside(d) / "keep.txt").write_text("not made by the program\n")
    (d / "link").symlink_to(outside(d), target_is_directory=True)


def read_only(d: Path) -> None:
    (d / "ro").mkdir()
    (d / "ro").chmod(0o555)


NOT_ROOT = "root writes into read-only folders" if ROOT else None
PROC = "/proc/cryoet-fault-test"

CASES = [
    # item 1: a file output whose target is an existing folder is refused (it used to delete the folder)
    Case("predict-out-folder", ["predict", "--model", "ok.pt", "--copick", "proj", "--out", "mine"],
         with_project(foreign, checkpoint), names="mine"),
    Case("predict-out-link-to-folder", ["predict", "--model", "ok.pt", "--copick", "proj", "--out", "link"],
         with_project(foreign, checkpoint, lambda d: (d / "link").symlink_to("mine")), names="link"),
    Case("solution-out-folder", ["solution", "proj", "--out", "mine"], with_project(foreign), names="mine"),
    Case("show-out-folder", ["show", "proj", "--run", RUN, "--out", "mine"], with_project(foreign), names="mine"),
    # item 1: a folder output replaces only a folder this program made
    Case("synth-out-foreign-folder", ["synth", "--out", "mine", *SYNTH], with_project(foreign), names="mine"),
    Case("synth-out-regular-file", ["synth", "--out", "afile", *SYNTH], with_project(afile), names="afile"),
    Case("synth-out-link-to-foreign-folder", ["synth", "--out", "link", *SYNTH],
         with_project(link_to_outside),
         names="link"),
    Case("data-out-foreign-folder", ["data"], lambda d: (params(d, data={"out": "mine"}), foreign(d)), names="mine"),
    Case("data-out-regular-file", ["data"], lambda d: (params(d, data={"out": "afile"}), afile(d)), names="afile"),
    Case("synth-out-foreign-folder-force", ["synth", "--out", "mine", *SYNTH, "--force"], with_project(foreign),
         rc=0, unchanged=False, after=made_project("mine")),
    Case("synth-out-own-folder", ["synth", "--out", "proj", *SYNTH], with_project(), rc=0, unchanged=False,
         after=made_project("proj")),
    Case("synth-out-empty-folder", ["synth", "--out", "empty", *SYNTH], with_project(lambda d: (d / "empty").mkdir()),
         rc=0, unchanged=False, after=made_project("empty")),
    Case("synth-out-missing-parents", ["synth", "--out", "new/deeper/p", *SYNTH], with_project(), rc=0,
         unchanged=False, after=made_project("new/deeper/p")),
    Case("data-out-own-folder", ["data"], lambda d: (params(d, data={"out": "proj"}), project(d)), rc=0,
         unchanged=False, after=lambda d, r: (d / "proj" / "manifest.json").is_file()),
    Case("solution-out-existing-file", ["solution", "proj", "--out", "afile"], with_project(afile), rc=0,
         unchanged=False, after=wrote_csv("afile")),
    Case("solution-out-missing-parents", ["solution", "proj", "--out", "new/deeper/x.csv"], with_project(), rc=0,
         unchanged=False, after=wrote_csv("new/deeper/x.csv")),
    # item 1: an output path under a regular file, in /proc, in a read-only folder
    Case("predict-out-under-file", ["predict", "--model", "ok.pt", "--copick", "proj", "--out", "afile/x.csv"],
         with_project(afile, checkpoint), names="afile"),
    Case("solution-out-under-file", ["solution", "proj", "--out", "afile/x.csv"], with_project(afile), names="afile"),
    Case("show-out-under-file", ["show", "proj", "--run", RUN, "--out", "afile/x.png"], with_project(afile),
         names="afile"),
    Case("synth-out-under-file", ["synth", "--out", "afile/p", *SYNTH], with_project(afile), names="afile"),
    Case("data-out-under-file", ["data"], lambda d: (params(d, data={"out": "afile/p"}), afile(d)), names="afile"),
    Case("predict-out-in-proc", ["predict", "--model", "ok.pt", "--copick", "proj", "--out", f"{PROC}.csv"],
         with_project(checkpoint), names=PROC),
    Case("solution-out-in-proc", ["solution", "proj", "--out", f"{PROC}.csv"], with_project(), names=PROC),
    Case("show-out-in-proc", ["show", "proj", "--run", RUN, "--out", f"{PROC}.png"], with_project(), names=PROC),
    Case("synth-out-in-proc", ["synth", "--out", PROC, *SYNTH], with_project(), names=PROC),
    Case("solution-out-read-only", ["solution", "proj", "--out", "ro/x.csv"], with_project(read_only),
         names="ro/x.csv", skip=NOT_ROOT),
    Case("synth-out-read-only", ["synth", "--out", "ro/p", *SYNTH], with_project(read_only), names="ro/p",
         skip=NOT_ROOT),
    # item 5 (in atomic.py): temporary siblings of dead processes are cleared, those of live ones kept
    Case("synth-clears-stale-partial", ["synth", "--out", "p", *SYNTH], with_project(stale(DEAD_PID)), rc=0,
         unchanged=False, after=stale_cleared),
    Case("synth-keeps-live-partial", ["synth", "--out", "p", *SYNTH], with_project(stale(os.getpid())), rc=0,
         unchanged=False, after=live_kept),
    # item 2: names that become paths are checked where they are read
    Case("predict-checkpoint-class-traversal",
         ["predict", "--model", "evil.pt", "--copick", "proj", "--out", "s.csv", "--picks-to-copick"],
         with_project(lambda d: checkpoint(d, "evil")), names=("evil.pt", "class name")),
    Case("thresholds-checkpoint-class-traversal",
         ["thresholds", "--model", "evil.pt", "--copick", "proj", "--runs", RUN],
         with_project(lambda d: checkpoint(d, "evil")), names=("evil.pt", "class name")),
    Case("info-config-class-traversal", ["info", "proj"], with_project(bad_class_config("../../../outside/x")),
         names=("class name", "../../../outside/x")),
    Case("solution-config-class-traversal", ["solution", "proj", "--out", "s.csv"],
         with_project(bad_class_config("../../../outside/x")), names="../../../outside/x"),
    Case("info-config-class-slash", ["info", "proj"], with_project(bad_class_config("a/b")), names="a/b"),
    Case("info-config-class-empty", ["info", "proj"], with_project(bad_class_config("")), names="class name"),
    Case("solution-run-traversal", ["solution", "proj", "--runs", "../../../outside", "--out", "s.csv"],
         with_project(), names=("run name", "../../../outside")),
    Case("show-run-traversal", ["show", "proj", "--run", "../../outside", "--out", "x.png"], with_project(),
         names="../../outside"),
    Case("show-tomo-type-traversal", ["show", "proj", "--run", RUN, "--tomo-type", "../../x", "--out", "x.png"],
         with_project(), names=("tomogram type", "../../x")),
    Case("predict-tomo-type-traversal",
         ["predict", "--model", "ok.pt", "--copick", "proj", "--out", "s.csv", "--tomo-type", "../../x"],
         with_project(checkpoint), names=("tomogram type", "../../x")),
    Case("info-run-folder-unsafe-name", ["info", "proj"],
         with_project(lambda d: (d / "proj" / "static" / "ExperimentRuns" / "bad name").mkdir()), names="bad name"),
    Case("info-picks-user-traversal", ["info", "proj"],
         lambda d: (params(d, data={"picks_user": "../x"}), project(d)), names=("picks user", "../x")),
    # item 2: every write into a copick project stays inside its overlay root, symbolic links included
    Case("predict-picks-run-folder-links-outside",
         ["predict", "--model", "ok.pt", "--copick", "proj", "--out", "s.csv", "--picks-to-copick"],
         with_project(checkpoint, link_outside(f"overlay/ExperimentRuns/{RUN}")), names=("outside", RUN)),
    Case("predict-picks-folder-links-outside",
         ["predict", "--model", "ok.pt", "--copick", "proj", "--out", "s.csv", "--picks-to-copick"],
         with_project(checkpoint, link_outside(f"overlay/ExperimentRuns/{RUN}/Picks")), names=("outside", "Picks")),
    Case("predict-picks-to-copick", ["predict", "--model", "ok.pt", "--copick", "proj", "--out", "s.csv",
                                     "--picks-to-copick"],
         with_project(checkpoint), rc=0, unchanged=False, after=predicted_picks_inside),
]  # fmt: skip


def _save(path: Path, classes) -> Path:
    torch.manual_seed(0)
    model = build_model("none", (4, 8, 16, 32)).eval()
    save_checkpoint(
        path,
        model,
        model_name="unet",
        classes=classes,
        voxel_spacing=10.012444,
        patch_size=(16, 32, 32),
        thresholds={c.name: 0.3 for c in classes},
    )
    return path


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory, params):
    shared = tmp_path_factory.mktemp("shared")
    RES["project"] = shared / "project"
    make_project(RES["project"], params)
    RES["ckpt_ok"] = _save(shared / "ok.pt", CZII_CLASSES)
    bad = (dataclasses.replace(CZII_CLASSES[0], name="../../../../../../outside/x"), *CZII_CLASSES[1:])
    RES["ckpt_evil"] = _save(shared / "evil.pt", bad)
    base = tmp_path_factory.mktemp("cases")
    # Forked from this process: a fresh interpreter per case spends seconds importing torch before it can fail.
    return run_table(CASES, base, base / "mlruns", forked=True)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_output_and_name_faults(case: Case, outcomes):
    if case.skip:
        pytest.skip(case.skip)
    out = outcomes[case.id]
    result = out.result
    assert_outcome(case, out)
    folder = out.folder
    leftovers = [p for p in partial_leftovers(folder) if f"-{os.getpid()}" not in p]
    assert not leftovers, leftovers
    if case.after is not None:
        case.after(folder, result)
    assert not Path(PROC + ".csv").exists()
