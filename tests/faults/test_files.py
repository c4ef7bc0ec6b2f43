"""Fault table of our own files (issue 24, items 3, 6, 8 and 9), through the real CLI.

Readers: a metrics file, run export, split file, manifest or checkpoint plan with a field of the wrong type, not UTF-8,
not JSON or not an object is one sentence naming the file and the field, and changes nothing. Writers: on a full disk
(a tiny tmpfs, where mounting one is allowed) `profile`, `export`, `report --out` and `train` end in one sentence with
the old files intact and nothing half-written; `tracking import` is all or nothing per run. The store: one copied from
another folder is refused before anything is written under the original.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import mlflow
import pytest

from src import tracking
from tests.conftest import REPO
from tests.faults.conftest import (
    RUN,
    Case,
    assert_clean_error,
    assert_fails_cleanly_writing_nothing,
    run_cli,
    snapshot,
    write,
)

CELL = "unet-c16-p64-s1-r0"  # a committed cell: its metrics file and run export are copied into cases
METRICS = REPO / "metrics"


def edit_json(rel: str, change: Callable[[dict], object]) -> Callable[[Path], None]:
    """Rewrite JSON file `rel` with `change(content)` (which edits it in place, or returns what to write instead)."""

    def damage(work: Path) -> None:
        path = work / rel
        content = json.loads(path.read_text())
        replaced = change(content)
        path.write_text(json.dumps(content if replaced is None else replaced))

    return damage


def then(*steps: Callable[[Path], None]) -> Callable[[Path], None]:
    def damage(work: Path) -> None:
        for step in steps:
            step(work)

    return damage


def setter(key: str, value) -> Callable[[dict], None]:
    def change(content: dict) -> None:
        *parents, last = key.split(".")
        node = content
        for part in parents:
            node = node[part]
        if value is DELETE:
            del node[last]
        else:
            node[last] = value

    return change


DELETE = object()
NOT_UTF8 = b'\xff\xfe{"cell": "x"}'

# --- metrics files, read by `report compare` (both studies), the report and `tracking export` -------------------------


def studies(work: Path) -> None:
    """committed/ and rerun/: two copies of the committed study's metrics (cells, exports, rerun block)."""
    for name in ("committed", "rerun"):
        shutil.copytree(METRICS, work / name)


COMPARE = ["compare", "rerun", "--metrics-dir", "committed"]
RERUN_FILE = f"rerun/{CELL}.json"
METRICS_FAULTS = [  # (id, damage of rerun/<CELL>.json, what the error names)
    ("not-an-object", write(RERUN_FILE, "[1, 2]"), ("array", "not an object")),
    ("not-utf8", write(RERUN_FILE, NOT_UTF8), ("not UTF-8",)),
    ("not-json", write(RERUN_FILE, '{"cell": '), ("not valid JSON",)),
    ("score-null", edit_json(RERUN_FILE, setter("test_score", None)), ("'test_score' is null", "finite number")),
    ("score-text", edit_json(RERUN_FILE, setter("test_score", "high")), ("'test_score' is \"high\"",)),
    ("score-nan", edit_json(RERUN_FILE, setter("test_score", float("nan"))), ("'test_score' is nan",)),
    ("class-score-text", edit_json(RERUN_FILE, setter("test_fbeta.ribosome", "high")), ("'test_fbeta'",)),
    ("class-scores-list", edit_json(RERUN_FILE, setter("test_fbeta", [0.5])), ("'test_fbeta'",)),
    ("seed-text", edit_json(RERUN_FILE, setter("seed", "one")), ("'seed'", "whole number")),
    ("seed-negative", edit_json(RERUN_FILE, setter("seed", -1)), ("'seed'",)),
    ("seed-float", edit_json(RERUN_FILE, setter("seed", 0.5)), ("'seed'",)),
    ("cell-number", edit_json(RERUN_FILE, setter("cell", 42)), ("'cell'",)),
    ("run-id-missing", edit_json(RERUN_FILE, setter("mlflow_run_id", DELETE)), ("'mlflow_run_id'",)),
    ("count-text", edit_json(RERUN_FILE, setter(f"test_counts.{RUN}.ribosome.tp", "18")), ("'test_counts'",)),
    ("threshold-null", edit_json(RERUN_FILE, setter("thresholds.ribosome", None)), ("'thresholds'",)),
    ("sizes-text", edit_json(RERUN_FILE, setter("channel_sizes", "16-32-64-128")), ("'channel_sizes'",)),
    ("configuration-list", edit_json(RERUN_FILE, setter("configuration", ["unet"])), ("'configuration'",)),
    ("minutes-text", edit_json(RERUN_FILE, setter("train_minutes", "5 min")), ("'train_minutes'",)),
]


def _metrics_cases() -> list[Case]:
    cases = [
        Case(f"metrics-{fault}/compare", then(studies, damage), COMPARE, (RERUN_FILE, *names), "src.report")
        for fault, damage, names in METRICS_FAULTS
    ]
    committed = f"committed/{CELL}.json"
    block = f"rerun/reruns/{CELL}.json"
    return cases + [
        Case(
            "metrics-committed-score-text/compare",
            then(studies, edit_json(committed, setter("test_score", "high"))),
            COMPARE,
            (committed, "'test_score'"),
            "src.report",
        ),
        Case(
            "metrics-rerun-block-score-null/compare",
            then(studies, edit_json(block, setter("test_score", None))),
            COMPARE,
            (block, "'test_score' is null"),
            "src.report",
        ),
        Case(
            "metrics-folder-for-a-file/compare",
            then(studies, lambda w: (w / "rerun" / "extra.json").mkdir()),
            COMPARE,
            ("rerun/extra.json", "is a folder"),
            "src.report",
        ),
        Case(
            "metrics-not-an-object/report",
            then(studies, write(RERUN_FILE, '"a string"')),
            ["--metrics-dir", "rerun", "--out", "out", "--no-figures"],
            (RERUN_FILE, "string", "not an object"),
            "src.report",
        ),
        Case(
            "metrics-run-id-number/tracking-export",
            then(studies, edit_json(RERUN_FILE, setter("mlflow_run_id", 7))),
            ["tracking", "export", RERUN_FILE],
            (RERUN_FILE, "'mlflow_run_id' is 7"),
        ),
    ]


# --- run exports, read by `tracking import` (before anything is written to the store) ---------------------------------

EXPORT = "exports/run.json"


def an_export(work: Path) -> None:
    (work / "exports").mkdir()
    shutil.copy(METRICS / "mlflow" / f"{CELL}.json", work / EXPORT)


IMPORT = ["tracking", "import", EXPORT]
EXPORT_FAULTS = [  # (id, change to the export, what the error names)
    ("no-run-id", setter("run_id", DELETE), ("'run_id'",)),
    ("run-id-number", setter("run_id", 12), ("'run_id' is 12",)),
    ("tags-a-list", setter("tags", ["cell", CELL]), ("'tags'", "object of strings")),
    ("param-a-number", setter("params.lr", 0.001), ("'params'",)),
    ("metrics-a-list", setter("metrics", []), ("'metrics'",)),
    ("metric-point-pair", setter("metrics.test_score", [[0, 1700000000000]]), ("metrics.test_score",)),
    ("metric-value-text", setter("metrics.test_score", [[0, 1700000000000, "high"]]), ("metrics.test_score'",)),
    ("status-unknown", setter("status", "DONE"), ("'status'", "FINISHED")),
    ("start-time-text", setter("start_time", "yesterday"), ("'start_time'",)),
    ("not-an-object", lambda content: [content], ("array", "not an object")),
]


def _export_cases() -> list[Case]:
    cases = [
        Case(f"export-{fault}/import", then(an_export, edit_json(EXPORT, change)), IMPORT, (EXPORT, *names))
        for fault, change, names in EXPORT_FAULTS
    ]
    twice = then(an_export, lambda w: shutil.copy(w / EXPORT, w / "exports" / "again.json"))
    return cases + [
        Case("export-not-utf8/import", then(an_export, write(EXPORT, NOT_UTF8)), IMPORT, (EXPORT, "not UTF-8")),
        Case(
            "exports-share-a-run-id/import",
            twice,
            ["tracking", "import", "exports/again.json", EXPORT],
            ("exports/again.json", EXPORT, "both exports of run"),
        ),
    ]


# --- the split file, the project's manifest and a checkpoint's plan ---------------------------------------------------

SPLIT = "data/splits.json"
MANIFEST = "data/project/manifest.json"
TRAIN = ["train", "--cell", "unet-c16-p64-s1"]
SOLUTION_TEST = ["solution", "data/project", "--split", "test", "--out", "s.csv"]
PREDICT = ["predict", "--model", "bad.pt", "--copick", "data/project", "--runs", RUN, "--out", "o.csv"]


def checkpoint(**changes) -> Callable[[Path], None]:
    """bad.pt: a tiny checkpoint whose payload has `changes` (dotted keys into it, e.g. postprocess.extractor)."""

    def damage(work: Path) -> None:
        import torch

        from src.inference.checkpoint import save_checkpoint
        from src.models import build_model

        model = build_model("none", (4, 8, 16, 32))
        plan = {"extractor": "components", "thresholds": {"components": {"ribosome": 0.5}}, "tta_flips": ""}
        plan |= {"label_radius_fraction": 0.5, "min_blob_fraction": 0.1, "max_blob_fraction": 4.0}
        plan |= {"peak_radius_fraction": 0.5}
        from src.classes import CZII_CLASSES

        meta = {"classes": CZII_CLASSES, "voxel_spacing": 10.012444, "patch_size": (16, 32, 32)}
        save_checkpoint(work / "bad.pt", model, model_name="unet", thresholds={}, postprocess=plan, **meta)
        payload = torch.load(work / "bad.pt", weights_only=True)
        for key, value in changes.items():
            setter(key.replace("__", "."), value)(payload)
        torch.save(payload, work / "bad.pt")

    return damage


OTHER = [
    Case("split-test-a-string/solution", edit_json(SPLIT, setter("test", RUN)), SOLUTION_TEST, (SPLIT, "'test'")),
    Case("split-not-an-object/solution", write(SPLIT, "[]"), SOLUTION_TEST, (SPLIT, "not an object")),
    Case(
        "split-train-run-number/train",
        edit_json(SPLIT, setter("samples.1.train", [RUN, 3])),
        TRAIN,
        (SPLIT, "'samples.1.train'", "list of non-empty strings"),
    ),
    Case("split-no-sample-2/train", edit_json(SPLIT, setter("samples.2", DELETE)), TRAIN, (SPLIT, "'samples.2'")),
    Case("split-not-utf8/train", write(SPLIT, NOT_UTF8), TRAIN, (SPLIT, "not UTF-8")),
    Case(
        "manifest-picks-text/split",
        edit_json(MANIFEST, setter(f"runs.{RUN}.picks.ribosome", "many")),
        ["split"],
        (MANIFEST, f"'runs.{RUN}.picks'"),
    ),
    Case("manifest-runs-a-list/split", edit_json(MANIFEST, setter("runs", [RUN])), ["split"], (MANIFEST, "'runs'")),
    Case("manifest-not-json/split", write(MANIFEST, "{runs"), ["split"], (MANIFEST, "not valid JSON")),
    Case(
        "plan-unknown-extractor/predict",
        checkpoint(postprocess__extractor="magic"),
        PREDICT,
        ("bad.pt", "'postprocess.extractor'", "argmax"),
    ),
    Case(
        "plan-threshold-text/predict",
        checkpoint(postprocess__thresholds={"components": {"ribosome": "high"}}),
        PREDICT,
        ("bad.pt", "'postprocess.thresholds'"),
    ),
    Case(
        "plan-no-flips/thresholds",
        checkpoint(postprocess__tta_flips=DELETE),
        ["thresholds", "--model", "bad.pt", "--copick", "data/project", "--runs", RUN],
        ("bad.pt", "'postprocess.tta_flips'"),
    ),
    Case(
        "checkpoint-spacing-text/predict",
        checkpoint(voxel_spacing="ten"),
        PREDICT,
        ("bad.pt", "'voxel_spacing'"),
    ),
]

CASES = _metrics_cases() + _export_cases() + OTHER


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_damaged_own_file_is_one_clean_error(case: Case, workspace: Path):
    assert_fails_cleanly_writing_nothing(case, workspace)


# --- tracking import: all or nothing per run --------------------------------------------------------------------------


def _store_runs(work: Path) -> list:
    """The active runs of the workspace's own store."""
    client = mlflow.MlflowClient(f"sqlite:///{work / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(tracking.EXPERIMENT)
    return client.search_runs([experiment.experiment_id]) if experiment else []


def _long_param_export(work: Path) -> None:
    """An export MLflow refuses in its second batch of 100: the first batch is already in the store by then."""
    an_export(work)
    content = json.loads((work / EXPORT).read_text())
    content["params"] |= {f"zz.{i:03d}": "x" for i in range(150)}
    content["params"]["bad!key"] = "x"  # MLflow refuses the name (after the first 100 params are in)
    (work / EXPORT).write_text(json.dumps(content))


def test_import_refused_half_way_leaves_no_run_and_a_fixed_export_imports(workspace: Path):
    _long_param_export(workspace)
    result = run_cli(IMPORT, workspace)
    assert_clean_error(result, (EXPORT, "MLflow refused run", "nothing of it was imported"))
    assert _store_runs(workspace) == []  # the half-made run was deleted
    edit_json(EXPORT, setter("params.bad!key", DELETE))(workspace)
    code, out, err = run_cli(IMPORT, workspace)
    assert code == 0 and "imported 1 runs" in out, out + err
    (run,) = _store_runs(workspace)
    assert run.info.status == "FINISHED" and len(run.data.params) > 150
    assert run.data.tags[tracking.SOURCE_TAG] == json.loads((workspace / EXPORT).read_text())["run_id"]


def test_a_run_half_imported_by_a_killed_import_is_redone(workspace: Path):
    """What a SIGKILL half-way leaves: a RUNNING run with part of the params and no SOURCE_TAG. Re-import deletes it
    and imports the run whole, instead of skipping it as "already there"."""
    an_export(workspace)
    export = json.loads((workspace / EXPORT).read_text())
    code, out, err = run_cli(["tracking", "import", str(METRICS / "mlflow" / "unet-c16-p96-s1-r0.json")], workspace)
    assert code == 0, out + err  # the store and its experiment exist, with one other run in it
    client = mlflow.MlflowClient(f"sqlite:///{workspace / 'mlruns' / 'mlflow.db'}")
    experiment_id = client.get_experiment_by_name(tracking.EXPERIMENT).experiment_id
    half = client.create_run(experiment_id, tags={tracking.IMPORTING_TAG: export["run_id"]}).info.run_id
    client.log_param(half, "lr", "0.001")
    code, out, err = run_cli(IMPORT, workspace)
    assert code == 0 and "imported 1 runs" in out and "0 already there" in out, out + err
    runs = {r.data.tags.get(tracking.SOURCE_TAG): r for r in _store_runs(workspace)}
    assert half not in {r.info.run_id for r in runs.values()}
    redone = runs[export["run_id"]]
    assert redone.info.status == export["status"] and redone.data.params == export["params"]
    code, out, err = run_cli(IMPORT, workspace)  # and now it is there
    assert code == 0 and "imported 0 runs" in out and "1 already there" in out, out + err


# --- full disks: a tiny tmpfs (root only), with the old files to keep -------------------------------------------------


@contextlib.contextmanager
def tiny_disk(folder: Path, size_kb: int):
    """A tmpfs of `size_kb` mounted at `folder`; skips the test where mounting is not allowed."""
    folder.mkdir(parents=True, exist_ok=True)
    command = ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(folder)]
    mounted = subprocess.run(command, capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()[:100]}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path, leave: int) -> None:
    """Fill the disk of `folder` until fewer than `leave` bytes are free."""
    with (folder / "filler").open("wb") as f:
        chunk = b"\0" * 4096
        with contextlib.suppress(OSError):
            while shutil.disk_usage(folder).free > leave:
                f.write(chunk)
                f.flush()


def partials(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if ".partial-" in p.name or ".old-" in p.name]


@pytest.mark.parametrize("profile", ["paper", "demo"])
def test_profile_on_a_full_disk_keeps_params_whole(tmp_path: Path, profile: str):
    with tiny_disk(tmp_path / "disk", 256) as disk:
        shutil.copy(REPO / "params.yaml", disk / "params.yaml")
        if profile == "demo":  # so that demo changes something
            (disk / "params.yaml").write_text((disk / "params.yaml").read_text().replace("runs: 16", "runs: 17", 1))
        shutil.copytree(REPO / "profiles", disk / "profiles")
        before = (disk / "params.yaml").read_bytes()
        fill(disk, 2048)
        result = run_cli(["profile", profile], disk)
        assert_clean_error(result, ("no space left on device writing params.yaml", "free space"))
        assert (disk / "params.yaml").read_bytes() == before
        assert partials(disk) == []


def _picks_csv(path: Path, n: int) -> None:
    rows = ["id,experiment,particle_type,x,y,z"]
    rows += [f"{i},TS_{i % 3},ribosome,{10.0 + i % 500},{20.0 + i % 300},{30.0 + i % 200}" for i in range(n)]
    path.write_text("\n".join(rows) + "\n")


@pytest.mark.parametrize("fmt,outputs", [("star", ["s.star"]), ("tbl", ["s.tbl", "s.doc", "s.classes.csv"]),
                                         ("chimerax", ["s.cmm"])])  # fmt: skip
def test_export_on_a_full_disk_keeps_the_old_export(tmp_path: Path, fmt: str, outputs: list[str]):
    with tiny_disk(tmp_path / "disk", 512) as disk:
        _picks_csv(disk / "s.csv", 200)
        args = ["export", "s.csv", "--to", fmt, "--voxel-spacing", "10"]
        code, out, err = run_cli(args, disk)
        assert code == 0, out + err
        old = {name: (disk / name).read_bytes() for name in outputs}
        _picks_csv(disk / "s.csv", 3000)  # a bigger export, which no longer fits
        fill(disk, 8192)
        result = run_cli(args, disk)
        assert_clean_error(result, ("no space left on device writing s.", "free space"))
        assert {name: (disk / name).read_bytes() for name in outputs} == old
        assert partials(disk) == [] and not list(disk.glob("*.tbl.tbl")) and not list(disk.glob(".*"))


REPORT_CELLS = ["unet-c16-p64-s1-r0", "unet-c16-p96-s1-r0", "unet_se-c16-p64-s1-r0", "unet_se-c16-p96-s1-r0"]


def _small_study(folder: Path) -> None:
    (folder / "mlflow").mkdir(parents=True)
    for cell in REPORT_CELLS:
        shutil.copy(METRICS / f"{cell}.json", folder)
        shutil.copy(METRICS / "mlflow" / f"{cell}.json", folder / "mlflow")


def test_report_on_a_full_disk_keeps_the_old_report_whole(tmp_path: Path, monkeypatch):
    """The committed report (tables and figures) in a folder on a disk with room for new tables, not for the figures:
    before, new tables ended up beside old figures. In this process (the CLI's model-cost table alone takes 15 s)."""
    from src.atomic import DiskFull
    from src.params import load_params
    from src.report.build import build_report
    from src.study import Study

    _small_study(tmp_path / "metrics")
    p = load_params(REPO / "params.yaml")
    settings = dataclasses.replace(p.report, bootstrap_resamples=99, step_times=None)
    monkeypatch.setenv("CRYOET_MLRUNS", str(tmp_path / "mlruns"))  # no store: the runs' exports are read
    with tiny_disk(tmp_path / "disk", 1024) as disk:
        shutil.copytree(REPO / "paper", disk / "paper")
        old = snapshot(disk / "paper")
        fill(disk, 96 * 1024)
        with pytest.raises(DiskFull, match=r"^no space left on device writing .*disk/paper.*; free space"):
            build_report(tmp_path / "metrics", disk / "paper", settings, Study.from_params(p), make_figures=True)
        assert snapshot(disk / "paper") == old
        assert partials(disk) == []


def test_report_into_a_folder_of_other_files_is_refused(workspace: Path):
    _small_study(workspace / "metrics")
    before = snapshot(workspace)
    result = run_cli(["--metrics-dir", "metrics", "--out", "data", "--no-figures"], workspace, module="src.report")
    assert_clean_error(result, ("data holds", "does not write", "a folder of its own"))
    assert snapshot(workspace) == before


def test_train_on_a_full_disk_is_one_sentence_saying_resume(workspace: Path):
    with tiny_disk(workspace / "models", 256):
        result = run_cli(["train", "--cell", "unet-c16-p64-s1"], workspace)
        line = assert_clean_error(result, ("no space left on device writing models/.unet-c16-p64-s1-r0.partial/",))
        assert line.endswith("free space and resume with --resume")
        assert partials(workspace / "models") == []
        assert [r.info.status for r in _store_runs(workspace)] == ["FAILED"]


# --- a store copied from another folder -------------------------------------------------------------------------------


def test_a_store_copied_with_its_project_is_refused_and_nothing_is_written_under_the_original(workspace: Path):
    code, out, err = run_cli(IMPORT_COMMITTED, workspace)
    assert code == 0, out + err
    copy = workspace.parent / "copy"
    shutil.copytree(workspace, copy, symlinks=True)
    moved = workspace.parent / "moved"
    os.replace(workspace, moved)  # the original moved away: nothing may re-create it
    for args in (IMPORT_COMMITTED, ["train", "--cell", "unet-c16-p64-s1"]):
        result = run_cli(args, copy)
        assert_clean_error(result, (f"{copy / 'mlruns'}", "outside it", "delete", "tracking import"))
        assert not workspace.exists()
    shutil.rmtree(copy / "mlruns")  # the fix the error names
    code, out, err = run_cli(IMPORT_COMMITTED, copy)
    assert code == 0 and "imported 1 runs" in out, out + err
    result = run_cli(IMPORT_COMMITTED, moved)  # the original, moved: its artifacts path is the old one, refused too
    assert_clean_error(result, (f"{moved / 'mlruns'}", "outside it"))


IMPORT_COMMITTED = ["tracking", "import", str(METRICS / "mlflow" / f"{CELL}.json")]


# --- the helpers themselves, without a tmpfs --------------------------------------------------------------------------


def test_updated_folder_failing_half_way_leaves_the_old_folder(tmp_path: Path):
    from src.atomic import DiskFull, updated_folder

    folder = tmp_path / "paper"
    folder.mkdir()
    (folder / "table3.md").write_text("old table\n")
    (folder / "per_class.png").write_bytes(b"old figure")
    before = snapshot(folder)
    with pytest.raises(DiskFull, match=r"^no space left on device writing .*paper(/per_class.png)?; free space"):
        with updated_folder(folder, lambda name: True, "the report") as tmp:
            (tmp / "table3.md").write_text("new table\n")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp / "per_class.png"))
    assert snapshot(folder) == before and partials(tmp_path) == []


def test_save_torch_turns_only_a_failed_write_into_disk_full(tmp_path: Path, monkeypatch):
    import torch

    from src.atomic import DiskFull
    from src.inference import checkpoint

    (tmp_path / "last.pt").write_bytes(b"old state")

    def failing_write(payload, path):
        Path(path).write_bytes(b"half")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")

    monkeypatch.setattr(torch, "save", failing_write)
    monkeypatch.setattr(checkpoint, "FULL_BELOW", 1 << 62)  # as if the disk were full
    with pytest.raises(DiskFull, match=r"no space left on device writing .*last.pt"):
        checkpoint.save_torch({"a": 1}, tmp_path / "last.pt")
    monkeypatch.setattr(checkpoint, "FULL_BELOW", 0)  # room left: a failed write that is not a full disk
    with pytest.raises(Exception, match=r"writing .*last.pt failed"):
        checkpoint.save_torch({"a": 1}, tmp_path / "last.pt")
    monkeypatch.setattr(torch, "save", lambda payload, path: (_ for _ in ()).throw(RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug"):  # any other error is not disguised as a disk problem
        checkpoint.save_torch({"a": 1}, tmp_path / "last.pt")
    assert (tmp_path / "last.pt").read_bytes() == b"old state" and partials(tmp_path) == []


def test_the_table_covers_enough_pairs():
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)
