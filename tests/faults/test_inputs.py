"""Bad inputs x commands, one table: each case damages a fresh workspace, runs one command as a user would, and
asserts exit code 2, one `error:` line naming the thing at fault, no traceback or crash, and every file as it was
(nothing lost, nothing half-written).

Inputs here: damaged zarr tomograms (a truncated chunk segfaulted, a deleted one read as zeros), params out of range
or unreadable (each command that reads params.yaml), numbers out of range on the command line or in a file's header,
params that load but cannot build a network, a tracking server that is down, and neighbouring faults that were
already clean.
"""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.faults.conftest import (
    PICKS,
    RUN,
    ZARR,
    Case,
    assert_fails_cleanly_writing_nothing,
    edit_params,
    write,
)

CHUNK = f"{ZARR}/0/0/0/0"  # the level-0 chunk read by every command

# A command that reads params.yaml, as a user runs it in the workspace (each needs nothing else to get going).
COMMANDS = {
    "data": ["data"],
    "split": ["split"],
    "train": ["train", "--cell", "unet-c16-p64-s1"],
    "predict": ["predict", "--model", "models/model.pt", "--out", "out.csv", "--tomogram", ZARR],
    "info": ["info", "data/project"],
    "show": ["show", "data/project", "--run", RUN, "--out", "slice.png"],
    "solution": ["solution", "data/project", "--out", "solution.csv"],
    "models": ["models"],
    "synth": ["synth", "--out", "fresh"],
    "thresholds": ["thresholds", "--model", "models/model.pt", "--copick", "data/project", "--runs", RUN],
}
# The data stage reading the workspace's project as an external copick project (into data/linked), so that the
# tomograms it checks are the damaged ones rather than freshly generated.
LINKED = {"data.source": "copick", "data.copick_config": "data/project", "data.out": "data/linked"}


def params(changes: dict) -> Callable[[Path], None]:
    """Set params.yaml keys, e.g. {"predict.overlap": 1.0}."""

    def damage(work: Path) -> None:
        for key, value in changes.items():
            edit_params(work, key, value)

    return damage


def linked(damage: Callable[[Path], None]) -> Callable[[Path], None]:
    def both(work: Path) -> None:
        params(LINKED)(work)
        damage(work)

    return both


def truncate(rel: str, keep: float = 0.5) -> Callable[[Path], None]:
    def damage(work: Path) -> None:
        path = work / rel
        path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])

    return damage


def remove(rel: str) -> Callable[[Path], None]:
    def damage(work: Path) -> None:
        path = work / rel
        shutil.rmtree(path) if path.is_dir() else path.unlink()

    return damage


def nothing(work: Path) -> None:
    pass


# --- zarr integrity: every command that reads a tomogram -------------------------------------------------------
ZARR_FAULTS = {
    "truncated-chunk": (truncate(CHUNK), ("0/0/0/0", "chunk file truncated")),
    "truncated-chunk-to-header": (truncate(CHUNK, 0.00002), ("0/0/0/0", "truncated")),
    "empty-chunk": (truncate(CHUNK, 0.0), ("0/0/0/0", "truncated")),
    "deleted-chunk": (remove(CHUNK), ("0/0/0/0", "chunk file missing")),
    "no-zattrs": (remove(f"{ZARR}/.zattrs"), ("denoised.zarr", "multiscales")),
    "no-zarray": (remove(f"{ZARR}/0/.zarray"), ("denoised.zarr",)),
    "garbage-zarray": (write(f"{ZARR}/0/.zarray", "{not json"), ("denoised.zarr",)),
}
ZARR_COMMANDS = {
    "info-zarr": (nothing, ["info", ZARR]),
    "show": (nothing, COMMANDS["show"]),
    "predict-tomogram": (nothing, COMMANDS["predict"]),
    "data-copick": (linked(nothing), ["data"]),
}


def _zarr_cases() -> list[Case]:
    cases = []
    for fault, (damage, names) in ZARR_FAULTS.items():
        for command, (setup, args) in ZARR_COMMANDS.items():

            def both(work, setup=setup, damage=damage):
                setup(work)
                damage(work)

            cases.append(Case(f"{fault}/{command}", both, args, names))
    return cases


# --- params: out of range, each with a command that reads them (all in one message) ---------------------------
RANGES = [  # (key, bad value, command)
    ("predict.overlap", 1.0, "predict"),
    ("predict.overlap", -0.1, "thresholds"),
    ("predict.sw_batch_size", 0, "predict"),
    ("predict.slab_depth", 0, "predict"),
    ("predict.default_threshold", 1.5, "predict"),
    ("predict.min_blob_fraction", -1.0, "thresholds"),
    ("predict.max_blob_fraction", 0.0, "predict"),
    ("predict.threshold_grid", [0.9, 0.1, 0.05], "thresholds"),
    ("predict.threshold_grid", [0.1, 0.9, 0.0], "train"),
    ("train.batch_size", 0, "train"),
    ("train.crops_per_volume", 0, "train"),
    ("train.prefetch", -1, "train"),
    ("train.val_every", 0, "train"),
    ("train.epochs", 0, "train"),
    ("train.steps_per_epoch", 0, "train"),
    ("train.lr", -0.001, "train"),
    ("train.lr", 0.0, "data"),
    ("train.patch_scale", [0.5, 0.0, 0.5], "train"),
    ("train.patch_scale", [4.0, 4.0, 4.0], "train"),  # a demo patch larger than synth.shape
    ("train.tversky_alpha", -0.3, "train"),
    ("train.tversky_beta", 1.7, "train"),
    ("train.seeds", [-1], "train"),
    ("train.seeds", [0, 0], "train"),
    ("train.augment.flip_prob", 1.5, "train"),
    ("train.augment.noise_prob", -0.2, "train"),
    ("train.augment.rotate_deg", 400.0, "train"),
    ("train.augment.scale", 1.0, "train"),
    ("train.augment.noise_std", -0.1, "train"),
    ("train.network.dropout", 1.0, "models"),
    ("train.network.kernel_size", 0, "models"),
    ("train.network.strides", [2, 0, 2], "models"),
    ("train.network.num_res_units", -1, "train"),
    ("masks.label_radius_fraction", -0.5, "train"),
    ("masks.label_radius_fraction", 1.5, "data"),
    ("synth.imaging.snr", 0.0, "synth"),
    ("synth.imaging.snr", -1.0, "data"),
    ("synth.imaging.amplitude_contrast", 1.2, "synth"),
    ("synth.imaging.tilt_range_deg", 120.0, "synth"),
    ("synth.imaging.voltage_kv", 0.0, "synth"),
    ("synth.imaging.bfactor", -50.0, "data"),
    ("synth.placement.cluster_fraction", 1.5, "synth"),
    ("synth.placement.count_scale", -1.0, "data"),
    ("synth.placement.min_per_class", -1, "synth"),
    ("synth.placement.counts.ribosome", -80, "synth"),
    ("synth.distractors.vesicle_radius", [600.0, 250.0], "synth"),
    ("synth.distractors.blob_radius", [0.0, 80.0], "data"),
    ("synth.runs", 0, "data"),
    ("synth.runs", 3, "split"),  # fewer than the split needs
    ("synth.shape", [32, 0, 64], "synth"),
    ("synth.voxel_spacing", -10.0, "synth"),
    ("synth.seed", -1, "data"),
    ("split.val_fraction", 1.0, "split"),
    ("split.test_runs", 0, "split"),
    ("split.runs_per_sample", 1, "split"),
    ("split.seed", -5, "split"),
    ("data.voxel_spacing", 0.0, "info"),
    ("data.voxel_spacing", -10.0, "show"),
    ("classes.weights", {"ribosome": -1.0}, "solution"),
    ("study.channels.c16", [16, 0, 64, 128], "models"),
    ("study.patches.p64", [32, -64, 64], "train"),
    ("report.alpha", 1.5, "info"),
    ("report.min_pairs", 1, "solution"),
    ("report.decimals", -1, "show"),
    ("report.equivalence_margin", 0.0, "info"),
    ("report.power", 1.0, "solution"),
    ("predict.peak_radius_fraction", 0.0, "info"),
]


def _range_cases() -> list[Case]:
    cases = []
    for key, value, command in RANGES:
        name = key if not isinstance(value, dict) else f"{key}.{next(iter(value))}"
        if key == "train.patch_scale" and value[0] > 1:
            name = "synth.shape"
        cases.append(Case(f"{key}={value}/{command}", params({key: value}), COMMANDS[command], (name,)))
    return cases


def _all_at_once(work: Path) -> None:
    params({"predict.overlap": 1.5, "train.batch_size": 0, "train.lr": -1.0, "masks.label_radius_fraction": -0.5})(work)


def _nan_tomogram(work: Path) -> None:
    import numpy as np

    from src.data.copick_io import write_zarr_tomogram

    write_zarr_tomogram(work / "nan.zarr", np.full((8, 16, 16), np.nan, np.float32), 10.0)


SEVERAL = ("4 params out of range", "predict.overlap", "train.batch_size", "train.lr", "masks.label_radius_fraction")
TAB = write("params.yaml", "split:\n\tseed: 0\n")

# --- params.yaml unreadable, and neighbouring faults that were already clean ----------------------------------
OTHER = [
    *(Case(f"all-ranges-at-once/{c}", _all_at_once, COMMANDS[c], SEVERAL) for c in ("data", "train", "predict")),
    *(
        Case(f"params-tab/{c}", TAB, COMMANDS[c], ("params.yaml", "not valid YAML", "line 2"))
        for c in ("split", "show")
    ),
    Case(
        "params-is-a-folder/data",
        lambda w: (remove("params.yaml")(w), (w / "params.yaml").mkdir()),
        ["data"],
        ("params.yaml", "cannot read"),
    ),
    Case("params-empty/train", write("params.yaml", ""), COMMANDS["train"], ("params.yaml", "empty")),
    Case("params-missing/split", remove("params.yaml"), ["split"], ("params.yaml", "not found")),
    Case(
        "params-unknown-key/models", params({"train.epoch": 3}), ["models"], ("params.train", "unknown keys ['epoch']")
    ),
    Case("params-not-a-number/predict", params({"predict.overlap": "half"}), COMMANDS["predict"], ("predict.overlap",)),
    Case("missing-zarr/info", nothing, ["info", "data/nope.zarr"], ("data/nope.zarr", "no such tomogram")),
    Case("missing-zarr/predict", nothing, [*COMMANDS["predict"][:-1], "nope.zarr"], ("nope.zarr",)),
    Case(
        "wrong-extension/predict",
        write("tomo.tif", b"II*\0"),
        [*COMMANDS["predict"][:-1], "tomo.tif"],
        ("tomo.tif", "unknown tomogram format"),
    ),
    Case("not-an-mrc/info", write("tomo.mrc", b"not an mrc file"), ["info", "tomo.mrc"], ("tomo.mrc",)),
    Case("nan-tomogram/info", _nan_tomogram, ["info", "nan.zarr"], ("nan.zarr", "NaN")),
    Case(
        "unknown-class/info",
        write(f"{PICKS}/mystery.json", '{"pickable_object_name": "mystery", "points": []}'),
        COMMANDS["info"],
        ("mystery.json", "unknown class 'mystery'"),
    ),
    Case(
        "picks-not-json/solution",
        write(f"{PICKS}/ribosome.json", "<xml/>"),
        COMMANDS["solution"],
        ("ribosome.json", "not a readable JSON"),
    ),
    Case(
        "picks-outside/show",
        write(
            f"{PICKS}/ribosome.json",
            '{"pickable_object_name": "ribosome", "points": [{"location": {"x": 99999.0, "y": 10.0, "z": 10.0}}]}',
        ),
        COMMANDS["show"],
        (RUN, "outside"),
    ),
    *(
        Case(
            f"picks-outside/{command}",
            write(
                f"{PICKS}/ribosome.json",
                '{"pickable_object_name": "ribosome", "points": [{"location": {"x": 99999.0, "y": 10.0, "z": 10.0}}]}',
            ),
            COMMANDS[command],
            (RUN, "outside"),
        )
        for command in ("info", "solution")
    ),
    Case(
        "picks-outside/data",
        linked(
            write(
                f"{PICKS}/ribosome.json",
                '{"pickable_object_name": "ribosome", "points": [{"location": {"x": 99999.0, "y": 10.0, "z": 10.0}}]}',
            )
        ),
        ["data"],
        (RUN, "outside"),
    ),
    Case(
        "config-not-json/info",
        write("data/project/copick_config.json", "{"),
        COMMANDS["info"],
        ("copick_config.json", "not a readable JSON"),
    ),
    Case("no-project/solution", nothing, ["solution", "nowhere", "--out", "s.csv"], ("nowhere",)),
    Case("unknown-run/show", nothing, ["show", "data/project", "--run", "TS_NOPE"], ("TS_NOPE",)),
    Case("unknown-tomo-type/show", nothing, [*COMMANDS["show"], "--tomo-type", "ctf"], ("'ctf'", "available")),
    Case("bad-cell-name/train", nothing, ["train", "--cell", "unet-c16"], ("unet-c16",)),
    Case("unknown-model/train", nothing, ["train", "--cell", "unet_xx-c16-p64-s1"], ("unet_xx",)),
    Case("cell-and-keys/train", nothing, ["train", "--cell", "unet-c16-p64-s1", "--model", "unet"], ("--cell",)),
    Case("both-inputs/predict", nothing, [*COMMANDS["predict"], "--copick", "data/project"], ("--copick",)),
    Case(
        "spacing-without-tomogram/predict",
        nothing,
        ["predict", "--model", "m.pt", "--out", "o.csv", "--copick", "data/project", "--voxel-spacing", "10"],
        ("--voxel-spacing",),
    ),
    Case("bad-split-part/solution", nothing, [*COMMANDS["solution"], "--split", "3/test"], ("3/test",)),
    Case("no-manifest/split", remove("data/project/manifest.json"), ["split"], ("manifest.json",)),
    Case(
        "copick-config-missing/data",
        params({"data.source": "copick", "data.copick_config": "nowhere.json"}),
        ["data"],
        ("data.copick_config", "nowhere.json"),
    ),
    Case("unknown-source/data", params({"data.source": "ftp"}), ["data"], ("data.source", "ftp")),
    Case("unknown-profile/profile", nothing, ["profile", "fast"], ("fast",)),
]


# --- numbers on the command line: each numeric option refuses NaN, infinities and values out of its range ------
SPACING_WORDS = ("not a plausible cryo-ET voxel spacing", "Angstrom, from 0.5 to 100")
OPTIONS = [  # (command line, the option it names, what the range says)
    ([*COMMANDS["predict"], "--voxel-spacing", "0.01", "--rescale"], "--voxel-spacing 0.01", SPACING_WORDS),
    ([*COMMANDS["predict"], "--voxel-spacing", "nan"], "--voxel-spacing nan", SPACING_WORDS),
    ([*COMMANDS["predict"], "--voxel-spacing", "0"], "--voxel-spacing 0", SPACING_WORDS),
    ([*COMMANDS["predict"], "--voxel-spacing", "-10", "--rescale"], "--voxel-spacing -10", SPACING_WORDS),
    (["info", ZARR, "--voxel-spacing", "inf"], "--voxel-spacing inf", SPACING_WORDS),
    (["info", ZARR, "--voxel-spacing", "10000"], "--voxel-spacing 10000", SPACING_WORDS),  # 1,000 x off
    (["export", "s.csv", "--to", "star", "--voxel-spacing", "0.001"], "--voxel-spacing 0.001", SPACING_WORDS),
    (["score", "a.csv", "b.csv", "--beta", "nan"], "--beta nan", ("(0, inf)",)),
    (["score", "a.csv", "b.csv", "--distance-multiplier", "-0.5"], "--distance-multiplier -0.5", ("(0, inf)",)),
    (["synth", "--out", "fresh", "--runs", "0"], "--runs 0", ("[1, inf)",)),
    (["synth", "--out", "fresh", "--seed", "-1"], "--seed -1", ("[0, inf)",)),
    (["synth", "--out", "fresh", "--workers", "0"], "--workers 0", ("[1, inf)",)),
    (["synth", "--out", "fresh", "--shape", "32,0,64"], "--shape", ("at least 1 voxel", "32,0,64")),
    (["data", "--workers", "-2"], "--workers -2", ("[1, inf)",)),
    (["download", "--dataset", "0", "--out", "portal"], "--dataset 0", ("[1, inf)",)),
    (["train", "--cell", "unet-c16-p64-s1", "--seed", "-1"], "--seed -1", ("[0, inf)",)),
    (["models", "--patch-sizes", "32,-64,64"], "--patch-sizes", ("at least 1 voxel",)),
    (["grid", "run", "--gpus", "-1"], "--gpus -1", ("[0, inf)",)),
    (["grid", "run", "--jobs", "0"], "--jobs 0", ("[1, inf)",)),
    (["grid", "run", "--executor", "slurm", "--cpus-per-task", "0"], "--cpus-per-task 0", ("[1, inf)",)),
    (["tracking", "serve", "--port", "70000"], "--port 70000", ("[1, 65535]",)),
    (["tracking", "serve", "--port", "0"], "--port 0", ("[1, 65535]",)),
]


def _option_cases() -> list[Case]:
    return [Case(f"option:{name}/{args[0]}", nothing, args, (name, *words)) for args, name, words in OPTIONS]


def _zarr_with_spacing(spacing: float) -> Callable[[Path], None]:
    def damage(work: Path) -> None:
        import numpy as np

        from src.data.copick_io import write_zarr_tomogram

        write_zarr_tomogram(work / "odd.zarr", np.random.default_rng(0).random((8, 16, 16), np.float32), spacing)

    return damage


def _picks_file(spacing) -> Callable[[Path], None]:
    payload = {"pickable_object_name": "ribosome", "run_name": RUN, "voxel_spacing": spacing, "unit": "angstrom"}
    payload["points"] = [{"location": {"x": 100.0, "y": 100.0, "z": 100.0}}]
    return write("picks.json", json.dumps(payload))


def _closed_port() -> int:
    """A port on which nothing listens (just released by the kernel's choice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _duplicate_key(after: str, line: str) -> Callable[[Path], None]:
    """params.yaml with `line` inserted after the line `after`: a key that the section already has."""

    def damage(work: Path) -> None:
        text = (work / "params.yaml").read_text()
        assert f"\n{after}\n" in text
        (work / "params.yaml").write_text(text.replace(f"\n{after}\n", f"\n{after}\n{line}\n", 1))

    return damage


def _model(key: str, **changes) -> Callable[[Path], None]:
    return params({f"study.models.{key}.{name}": value for name, value in changes.items()})


UNBUILDABLE = ("study.models.unet_se",)
VALUES = [
    # a tomogram's own header: spacing in nm, or 1,000 x off
    Case("header-spacing-0.01/info", _zarr_with_spacing(0.01), ["info", "odd.zarr"], ("odd.zarr", *SPACING_WORDS)),
    Case(
        "header-spacing-1000/predict",
        _zarr_with_spacing(1000.0),
        [*COMMANDS["predict"][:-1], "odd.zarr", "--rescale"],
        ("odd.zarr", *SPACING_WORDS),
    ),
    # a run named twice would be predicted, tuned or written twice
    *(
        Case(f"run-twice/{command}", nothing, [*args, "--runs", f"{RUN},{RUN}"], ("--runs", RUN, "more than once"))
        for command, args in (
            ("predict", ["predict", "--model", "m.pt", "--out", "o.csv", "--copick", "data/project"]),
            ("thresholds", COMMANDS["thresholds"][:-2]),
            ("solution", COMMANDS["solution"]),
        )
    ),
    # a picks file's own pixel size
    Case("picks-spacing--20/export", _picks_file(-20), ["export", "picks.json", "--to", "star"], ("picks.json", "-20")),
    Case(
        "picks-spacing-0/export",
        _picks_file(0),
        ["export", "picks.json", "--to", "tbl"],
        ("picks.json", "voxel_spacing 0"),
    ),
    Case(
        "picks-spacing-text/export",
        _picks_file("ten"),
        ["export", "picks.json", "--to", "star"],
        ("picks.json", "not a number"),
    ),
    Case(
        "picks-spacing-nan/export",
        _picks_file(float("nan")),  # json writes NaN, and Python's json reads it
        ["export", "picks.json", "--to", "napari"],
        ("picks.json", "voxel_spacing nan"),
    ),
    # params that load but cannot build a network: refused when a command that builds one loads them
    Case(
        "unknown-attention/train",
        _model("unet_se", attention="sex"),
        COMMANDS["train"],
        (*UNBUILDABLE, "unknown attention 'sex'"),
    ),
    Case(
        "attention-reduction-0/train",
        _model("unet_se", attention_kwargs={"reduction": 0}),
        COMMANDS["train"],
        (*UNBUILDABLE, "{'reduction': 0}", "16 channels"),
    ),
    Case(
        "attention-reduction-too-large/models",
        _model("unet_se", attention_kwargs={"reduction": 64}),
        COMMANDS["models"],
        (*UNBUILDABLE, "{'reduction': 64}"),
    ),
    Case(
        "attention-unknown-option/models",
        _model("unet_cbam", attention_kwargs={"reduction": 8, "kernel": 7}),
        COMMANDS["models"],
        ("study.models.unet_cbam", "no option 'kernel'", "kernel_size"),
    ),
    Case(
        "attention-even-kernel/train",
        _model("unet_cbam", attention_kwargs={"reduction": 8, "kernel_size": 4}),
        COMMANDS["train"],
        ("study.models.unet_cbam", "kernel_size"),
    ),
    Case(
        "attention-options-on-none/models",
        _model("unet", attention_kwargs={"reduction": 8}),
        COMMANDS["models"],
        ("study.models.unet", "no option 'reduction'"),
    ),
    *(
        Case(f"empty-models/{c}", params({"study.models": {}}), COMMANDS[c], ("study.models = {}", "at least one"))
        for c in ("models", "info")
    ),
    # a key given twice: the second would silently win
    Case(
        "duplicate-top-key/split",
        lambda w: (w / "params.yaml").write_text((w / "params.yaml").read_text() + "split:\n  seed: 1\n"),
        ["split"],
        ("params.yaml", "duplicate key 'split'"),
    ),
    Case(
        "duplicate-key/train",
        _duplicate_key("train:", "  epochs: 99"),
        COMMANDS["train"],
        ("params.yaml", "duplicate key 'epochs'", "line"),
    ),
    # servers
    Case(
        "artifacts-is-a-file/serve",
        write("art", "x"),
        ["tracking", "serve", "--artifacts", "art"],
        ("--artifacts art", "is a file"),
    ),
    Case(
        "server-down/import",
        write("run.json", "{}"),
        ["tracking", "import", "run.json"],
        ("MLflow server", "does not answer", "/health"),
        env={"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{_closed_port()}"},
    ),
]


CASES = _zarr_cases() + _range_cases() + OTHER + _option_cases() + VALUES


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_clean_error(case: Case, workspace: Path):
    assert_fails_cleanly_writing_nothing(case, workspace)


def test_the_table_covers_enough_pairs():
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)
