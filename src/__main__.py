"""Command line: `python -m src <command> --help`. Thin: parse, call one function, print."""

from __future__ import annotations

from src import repro

repro.apply()  # params.yaml's repro: threads and instruction set, before numpy or torch loads (they read it then)

import json  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Annotated  # noqa: E402

import typer  # noqa: E402

from src.cli import from_params, new_app, one_of_params, version_option  # noqa: E402
from src.cli import run as run_app  # noqa: E402
from src.errors import UserError  # noqa: E402
from src.params import PARAMS_FILE, load_params  # noqa: E402
from src.ranges import option_range, voxel_spacing_option  # noqa: E402

app = new_app("Attention 3D U-Nets for particle picking in cryo-ET tomograms (data, split, and more per stage).")
# src/exports.FORMATS, written out so that --help need not import the exporters (pandas); a test checks they agree
EXPORT_FORMATS = ("star", "tbl", "napari", "chimerax")


@app.callback()
def _root(version: Annotated[bool, version_option()] = False):
    pass


def _shape(text: str, option: str) -> tuple[int, int, int]:
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise UserError(f"{option} expects D,H,W integers, got '{text}'") from None
    if len(shape) != 3 or min(shape) < 1:
        raise UserError(f"{option} expects three sizes D,H,W of at least 1 voxel, got '{text}'")
    return shape


def _run_names(text: str, option: str = "--runs") -> list[str]:
    """The comma-separated run names of `option`; a run named twice is refused (it would be predicted, tuned or
    written twice, doubling its points)."""
    names = [r.strip() for r in text.split(",") if r.strip()]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UserError(f"{option} names run {twice[0]} more than once; give each run once")
    return names


@app.command()
def synth(
    out: Annotated[
        Path, typer.Option(help="Folder for the copick project (replaces one that synth made; else needs --force).")
    ],
    runs: Annotated[
        int | None,
        typer.Option(help="Number of tomograms." + from_params("synth.runs"), callback=option_range("[1, inf)")),
    ] = None,
    shape: Annotated[
        str | None, typer.Option(help="D,H,W voxels, e.g. 184,630,630." + from_params("synth.shape"))
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Random seed." + from_params("synth.seed"), callback=option_range("[0, inf)"))
    ] = None,
    picks_naming: Annotated[
        str | None,
        typer.Option(
            metavar="<competition|copick>",
            help="Picks files as Picks/<object>.json (competition) or <user>_<session>_<object>.json (copick)."
            + from_params("synth.picks_naming"),
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            help="Processes making runs at once (same bytes; about 3 GB each at 184 x 630 x 630).",
            callback=option_range("[1, inf)"),
        ),
    ] = 1,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing --out folder even if this program did not make it.")
    ] = False,
):
    """Write a synthetic CZII-like copick project (tomograms as OME-NGFF zarr, picks in Angstrom)."""
    import dataclasses

    from src.classes import CZII_CLASSES
    from src.data.synth import synthesize_project

    p = load_params()
    s = p.synth
    settings = dataclasses.replace(
        s,
        runs=runs if runs is not None else s.runs,
        shape=_shape(shape, "--shape") if shape else s.shape,
        seed=seed if seed is not None else s.seed,
        picks_naming=picks_naming or s.picks_naming,
    )
    summary = synthesize_project(out, settings, CZII_CLASSES, p.data.voxel_spacing, workers=workers, force=force)
    per_run = summary["seconds_per_run"]
    typer.echo(f"wrote {summary['runs']} runs of {tuple(summary['shape'])} to {out}")
    typer.echo(f"seconds per run: mean {sum(per_run) / len(per_run):.1f}, max {max(per_run):.1f}")
    typer.echo("particles: " + ", ".join(f"{k} {v}" for k, v in summary["particles"].items()))


@app.command()
def show(
    project: Annotated[Path, typer.Argument(help="A copick project folder or its copick_config.json.")],
    run: Annotated[str, typer.Option(help="Run (experiment) name.")],
    out: Annotated[Path, typer.Option(help="Image file to write (PNG).")] = Path("slice.png"),
    tomo_type: Annotated[str | None, typer.Option(help="Tomogram type." + from_params("data.tomo_type"))] = None,
    predictions: Annotated[
        Path | None,
        typer.Option(
            help="A submission CSV: its points of this run matched to the picks as the metric does and drawn."
        ),
    ] = None,
    distance_multiplier: Annotated[
        float, typer.Option(help="With --predictions: match radius as a fraction of the class radius (as `score`).")
    ] = 0.5,
):
    """Render slices of a run's tomogram with its picks ringed by class; with --predictions, which are true positives,
    false positives and misses (the metric's own matching, with its counts per class in the legend)."""
    from src.atomic import check_output
    from src.data.copick_io import CopickProject
    from src.data.show import render_slices

    check_output(out)
    if not 0 <= distance_multiplier < float("inf"):  # NaN fails too
        raise UserError(f"--distance-multiplier must be a finite number >= 0, got {distance_multiplier}")
    p = load_params()
    proj = CopickProject(project, p.classes.weights, p.data.picks_user)
    tomo = proj.tomogram(run, tomo_type or p.data.tomo_type, proj.folder_spacing(run, None, p.data.voxel_spacing))
    picks = proj.picks(run, tomo)
    predicted = None
    if predictions is not None:
        from src.metric import read_points_csv

        predicted = read_points_csv(predictions)
        predicted = predicted[predicted["experiment"] == run]
    title = f"{run} ({tomo_type or p.data.tomo_type})" + ("" if predicted is None else f" and {predictions.name}")
    matchings = render_slices(
        tomo, picks, proj.classes, out, title=title, predictions=predicted, distance_multiplier=distance_multiplier
    )
    shown = "" if predicted is None else f" and {len(predicted)} predicted points"
    typer.echo(f"wrote {out}: {len(picks)} picks{shown} on {tomo.data.shape} voxels at {tomo.voxel_spacing:g} A")
    if matchings is not None:
        tp, fp, fn = (sum(m.counts()[i] for m in matchings.values()) for i in range(3))
        typer.echo(f"matched as the metric does: TP {tp}, FP {fp}, FN {fn} (per class in the picture's legend)")


@app.command()
def info(
    path: Annotated[Path, typer.Argument(help="A tomogram (.mrc or .zarr) or a copick project / config.")],
    voxel_spacing: Annotated[
        float | None,
        typer.Option(
            help="A tomogram's voxel spacing in Angstrom, where its metadata has none.", callback=voxel_spacing_option
        ),
    ] = None,
):
    """Describe a tomogram file or a copick project: shapes, voxel spacing, picks per class."""
    from src.data.copick_io import CopickProject, read_tomogram_file

    if path.suffix.lower() in (".mrc", ".rec", ".map", ".zarr"):
        tomo = read_tomogram_file(path, voxel_spacing)
        typer.echo(f"{path}: shape {tomo.data.shape} (z, y, x), voxel spacing {tomo.voxel_spacing:g} A")
        return
    p = load_params()
    proj = CopickProject(path, p.classes.weights, p.data.picks_user)
    typer.echo(f"classes: {', '.join(f'{c.name} (r={c.radius:g} A, w={c.weight:g})' for c in proj.classes)}")
    for run in proj.run_names():
        folder = proj.folder_spacing(run, None, p.data.voxel_spacing)  # the run's only folder, else params'
        picks = proj.picks(run, proj.volume_shape(run, p.data.tomo_type, folder))
        typer.echo(f"{run}: {len(picks)} picks " + json.dumps(picks.particle_type.value_counts().to_dict()))


@app.command()
def workspace(
    folder: Annotated[Path, typer.Argument(help="Folder to make (or renew) a workspace, e.g. tour.")],
):
    """Make a scratch workspace: a copy of params.yaml and links to the code, so that commands run inside it (cd
    FOLDER) write their data, models, metrics, paper/ and MLflow store there and leave the committed study alone."""
    from src.workspace import make_workspace

    repo = Path(__file__).resolve().parents[1]
    fresh = make_workspace(folder, repo)
    kept = "copied params.yaml into it" if fresh else "kept its params.yaml"
    typer.echo(f"{folder} is a workspace ({kept}); cd {folder} and run commands there: they write under it")


@app.command("copick-config")
def copick_config_command(
    project: Annotated[Path, typer.Argument(help="A copick project folder or its copick_config.json.")],
    out: Annotated[
        Path | None,
        typer.Option(help="Config file to write (default: beside the project's folder, <folder>.copick.json)."),
    ] = None,
):
    """Write a copick config of PROJECT with absolute roots, which copick.from_file opens from any folder (the
    project's own config has relative roots, which copick takes relative to the current folder)."""
    from src.atomic import atomic_output, check_output
    from src.data.copick_io import CopickProject, absolute_config, default_absolute_config_path

    source = CopickProject(project)
    target = check_output(out or default_absolute_config_path(source))
    with atomic_output(target) as tmp:
        tmp.write_text(json.dumps(absolute_config(source), indent=2) + "\n")
    typer.echo(f"wrote {target}: copick.from_file('{target.resolve()}') reads {len(source.run_names())} runs")


@app.command()
def data(
    workers: Annotated[
        int,
        typer.Option(
            help="Processes making synthetic runs at once (same bytes; about 3 GB each at full size).",
            callback=option_range("[1, inf)"),
        ),
    ] = 1,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing data.out folder even if this program did not make it.")
    ] = False,
):
    """DVC stage `data`: make (synthetic) or locate (copick, portal) the project in data.out and check every run."""
    p = load_params()
    from src.data.prepare import prepare_data

    manifest = prepare_data(p, workers=workers, force=force)
    n_picks = sum(sum(r["picks"].values()) for r in manifest["runs"].values())
    typer.echo(f"{len(manifest['runs'])} runs, {n_picks} picks, source {manifest['source']}")


@app.command()
def split():
    """DVC stage `split`: the common test set and samples 1 and 2 (train, validation) from the project's runs."""
    from src.data.split_stage import split_stage

    p = load_params()
    result = split_stage(p)
    s = result["samples"]
    typer.echo(
        f"test {len(result['test'])} runs; sample 1: {len(s['1']['train'])} train / {len(s['1']['val'])} val; "
        f"sample 2: {len(s['2']['train'])} train / {len(s['2']['val'])} val -> {p.split.out}"
    )


@app.command()
def cells():
    """Write dvc.cells.yaml, the grid's training stages that dvc.yaml loops over, from params.yaml (after an edit of its
    study, train.seeds, train.replicates or train.reruns)."""
    from src.cell_stages import CELLS_FILE, write_cells

    typer.echo(f"{write_cells(load_params())} cells -> {CELLS_FILE}")


@app.command()
def download(
    dataset: Annotated[
        int,
        typer.Option(
            help="CryoET Data Portal dataset id (10440: CZII training set).", callback=option_range("[1, inf)")
        ),
    ] = 10440,
    out: Annotated[Path, typer.Option(help="Folder for the copick project.")] = Path("downloads/portal"),
    tomo_type: Annotated[str | None, typer.Option(help="Tomogram type." + from_params("data.tomo_type"))] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing --out folder even if this program did not make it.")
    ] = False,
):
    """Download a CryoET Data Portal dataset into the copick layout that every stage reads."""
    from src.classes import CZII_CLASSES
    from src.data.portal import download_dataset

    p = load_params()
    config = download_dataset(
        dataset, out, CZII_CLASSES, tomo_type or p.data.tomo_type, p.data.voxel_spacing, force=force
    )
    typer.echo(f"wrote {config}")


@app.command()
def score(
    solution: Annotated[Path, typer.Argument(help="Reference CSV: experiment,particle_type,x,y,z (Angstrom).")],
    submission: Annotated[Path, typer.Argument(help="Predicted CSV, same columns (an id column may be present).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object with score and classes.")] = False,
    beta: Annotated[
        float, typer.Option(help="F-beta's beta (the competition uses 4).", callback=option_range("(0, inf)"))
    ] = 4.0,
    distance_multiplier: Annotated[
        float,
        typer.Option(help="Match radius as a fraction of the class radius.", callback=option_range("(0, inf)")),
    ] = 0.5,
):
    """Score a submission with the CZII competition's weighted F-beta, per class and overall."""
    from src.classes import CZII_CLASSES
    from src.metric import fbeta_score, read_points_csv

    classes = CZII_CLASSES  # the competition's class table, radii and weights
    result = fbeta_score(read_points_csv(solution), read_points_csv(submission), classes, beta, distance_multiplier)
    typer.echo(json.dumps(result.to_dict()) if as_json else result.to_text())


@app.command()
def solution(
    project: Annotated[Path, typer.Argument(help="A copick project folder or its copick_config.json.")],
    out: Annotated[Path, typer.Option(help="CSV to write (id,experiment,particle_type,x,y,z).")],
    runs: Annotated[str | None, typer.Option(help="Comma-separated run names (default: all runs).")] = None,
    split_part: Annotated[
        str | None, typer.Option("--split", help="Runs of a split part instead: test, 1/train, 1/val, 2/train, 2/val.")
    ] = None,
):
    """Write the solution (reference) CSV of a set of runs from a copick project's picks."""
    from src.atomic import check_output
    from src.data.solution import write_solution

    check_output(out)
    p = load_params()
    names = _run_names(runs) if runs and not split_part else None
    points, n_runs = write_solution(project, out, p, runs=names, split_part=split_part)
    typer.echo(f"wrote {out}: {points} points from {n_runs} runs")


@app.command()
def models(
    patch_sizes: Annotated[
        str | None,
        typer.Option(
            help="Patch sizes D,H,W separated by ';', the paper's."
            + from_params("study.patches", lambda patches: ";".join(",".join(map(str, p)) for p in patches.values()))
        ),
    ] = None,
):
    """Print parameters, multiply-adds per patch size and training-step activation memory of every model."""
    p = load_params(check_models=True)
    from dataclasses import asdict

    from src.models.summary import format_model_table, model_table

    s = p.study
    patches = (
        tuple(_shape(x, "--patch-sizes") for x in patch_sizes.split(";")) if patch_sizes else tuple(s.patches.values())
    )
    table = model_table(s.models, patches, tuple(s.channels.values()), network=asdict(p.train.network))
    typer.echo(format_model_table(table))


@app.command()
def predict(
    model: Annotated[Path, typer.Option(help="Checkpoint file (from training).")],
    out: Annotated[Path, typer.Option(help="Submission CSV to write (id,experiment,particle_type,x,y,z).")],
    copick: Annotated[Path | None, typer.Option(help="A copick project folder or its config.")] = None,
    runs: Annotated[str | None, typer.Option(help="With --copick: comma-separated runs (default: all).")] = None,
    tomogram: Annotated[Path | None, typer.Option(help="One tomogram (.mrc or .zarr) instead of --copick.")] = None,
    picks_to_copick: Annotated[
        bool, typer.Option("--picks-to-copick", help="Also write copick picks predict_0_<object>.json.")
    ] = False,
    tomo_type: Annotated[str | None, typer.Option(help="Tomogram type." + from_params("data.tomo_type"))] = None,
    voxel_spacing: Annotated[
        float | None,
        typer.Option(
            help="With --tomogram: its voxel spacing in Angstrom (where its header has none, or is wrong).",
            callback=voxel_spacing_option,
        ),
    ] = None,
    rescale: Annotated[
        bool,
        typer.Option(
            "--rescale", help="Resample a tomogram at another pixel size to the model's; points stay in its Angstrom."
        ),
    ] = False,
    formats: Annotated[
        list[str] | None,
        typer.Option(
            "--format",
            metavar=f"<{'|'.join(EXPORT_FORMATS)}>",
            help="Also write picks in this format beside OUT (repeatable): RELION 5, Dynamo, napari, ChimeraX.",
        ),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(help="cpu, cuda or cuda:N (default: the first GPU if one is seen, else the CPU)."),
    ] = None,
):
    """Pick particles in tomograms with a trained checkpoint and write the Kaggle submission CSV."""
    from src.atomic import check_output

    if (copick is None) == (tomogram is None):
        raise UserError("give exactly one of --copick and --tomogram")
    if voxel_spacing is not None and tomogram is None:
        raise UserError("--voxel-spacing goes with --tomogram (a copick project's spacing is in its zarr metadata)")
    check_output(out)  # before the heavy imports and any work
    _check_formats(formats or [])
    names = _run_names(runs) if runs else None
    p = load_params()  # params and inputs before the heavy imports (torch): a bad one fails at once
    from src.data.copick_io import CopickProject, read_tomogram_file
    from src.hardware import pick_device
    from src.names import check_name

    repro.pin_threads()  # the threads a cell's test inference ran with, so the same picks
    chosen_device = pick_device(device)
    project = CopickProject(copick, p.classes.weights, p.data.picks_user) if copick else None
    if tomo_type is not None:
        check_name(tomo_type, "tomogram type", "--tomo-type")
    if project is not None and picks_to_copick:
        for run in names or project.run_names():
            project.overlay_picks_folder(run)  # refuse a picks folder outside the project before any work
    tomo = read_tomogram_file(tomogram, voxel_spacing) if tomogram else None

    from src.inference.predict import run_predict

    points = run_predict(
        model,
        p,
        out,
        project=project,
        runs=names,
        tomogram=tomo,
        tomo_type=tomo_type,
        picks_to_copick=picks_to_copick,
        rescale=rescale,
        device=chosen_device,
    )
    typer.echo(f"wrote {out}: {len(points)} points (model on {chosen_device})")
    if formats:
        from src.inference.checkpoint import load_checkpoint

        trained = float(load_checkpoint(model)[1]["voxel_spacing"])
        ran = sorted(set(points["experiment"]))
        volumes = {tomo.name: tomo} if tomo else _run_volumes(project, ran, tomo_type, trained)
        _export_beside(out, formats, points, volumes)


def _export_beside(out: Path, formats: list[str], points, volumes: dict) -> None:
    """predict --format: the picks in each format beside OUT, in the pixels of each run's tomogram (`volumes`)."""
    from src.exports import default_output, export_points, points_with_sizes, points_with_spacing

    located = points_with_spacing(points, spacings={run: v.voxel_spacing for run, v in volumes.items()})
    located = points_with_sizes(located, {run: v.shape for run, v in volumes.items()})
    for fmt in formats:
        written = export_points(located, fmt, default_output(out, fmt))
        typer.echo(f"wrote {written} ({fmt})")


def _run_volumes(project, runs, tomo_type: str | None, trained: float | None = None) -> dict:
    """Each run's tomogram shape and true pixel size (Angstrom, a VolumeShape) in the folder predict read (nearest the
    model's `trained` spacing, see CopickProject.folder_spacing; else params'), from its zarr metadata (no voxels)."""
    p = load_params()
    kind = tomo_type or p.data.tomo_type
    default = p.data.voxel_spacing
    folders = {run: project.folder_spacing(run, trained, default) for run in runs}
    return {run: project.volume_shape(run, kind, folders[run]) for run in runs}


def _check_formats(formats: list[str]) -> None:
    from src.exports import FORMATS

    for fmt in formats:
        if fmt not in FORMATS:
            raise UserError(f"unknown export format '{fmt}' (expected one of {', '.join(FORMATS)})")


@app.command()
def export(
    picks: Annotated[list[Path], typer.Argument(help="Submission CSV(s) (Angstrom) or copick picks JSON file(s).")],
    to: Annotated[
        str,
        typer.Option(
            "--to",
            metavar=f"<{'|'.join(EXPORT_FORMATS)}>",
            help="star (RELION 5), tbl (Dynamo), napari (a folder of points CSVs), chimerax (.cmm).",
        ),
    ],
    out: Annotated[
        Path | None, typer.Option(help="File (napari: folder) to write (default: the first PICKS, format's suffix).")
    ] = None,
    voxel_spacing: Annotated[
        float | None,
        typer.Option(
            help="Pixel size in Angstrom of every run (a CSV states none; overrides a JSON's).",
            callback=voxel_spacing_option,
        ),
    ] = None,
    copick: Annotated[
        Path | None,
        typer.Option(help="A copick project: each run's pixel size and tomogram size from its tomogram's metadata."),
    ] = None,
    tomo_type: Annotated[
        str | None, typer.Option(help="With --copick: tomogram type." + from_params("data.tomo_type"))
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="napari: replace an existing --out folder this program did not make.")
    ] = False,
):
    """Write picks for RELION 5, Dynamo, napari or ChimeraX, in the pixels of each run's tomogram."""
    from src.exports import default_output, export_points, points_with_sizes, points_with_spacing, read_picks

    _check_formats([to])
    target = out or default_output(picks[0], to)
    points = read_picks(picks)
    spacings = sizes = None
    if copick is not None and voxel_spacing is None:
        from src.data.copick_io import CopickProject

        p = load_params()
        project = CopickProject(copick, p.classes.weights, p.data.picks_user)
        volumes = _run_volumes(project, sorted(set(points["experiment"])), tomo_type)
        spacings = {run: v.voxel_spacing for run, v in volumes.items()}
        sizes = {run: v.shape for run, v in volumes.items()}
    located = points_with_sizes(points_with_spacing(points, voxel_spacing, spacings), sizes)
    export_points(located, to, target, force=force)
    typer.echo(f"wrote {target}: {len(points)} points from {points['experiment'].nunique()} runs ({to})")
    if to == "star" and sizes is None:
        typer.echo("pixel coordinates only: give --copick PROJECT for RELION 5's rlnCenteredCoordinateX/Y/ZAngst")


@app.command()
def thresholds(
    model: Annotated[Path, typer.Option(help="Checkpoint file; its thresholds are replaced by the tuned ones.")],
    copick: Annotated[Path, typer.Option(help="A copick project folder or its config, with picks of --runs.")],
    runs: Annotated[str, typer.Option(help="Comma-separated validation runs to tune on.")],
):
    """Tune the post-processing plan on annotated runs (per-class thresholds of max F-beta for each point extractor,
    and the extractor) and store it in the model."""
    names = _run_names(runs)
    p = load_params()
    from src.data.copick_io import CopickProject
    from src.inference.checkpoint import update_postprocess
    from src.inference.predict import tune_on_runs

    project = CopickProject(copick, p.classes.weights, p.data.picks_user)
    project.check_runs(names)
    plan, _ = tune_on_runs(model, project, names, p, progress=True)
    update_postprocess(model, plan.to_dict())
    tuned = plan.thresholds[plan.extractor]
    typer.echo(f"{model}: {plan.extractor}, " + ", ".join(f"{k} {v:.2f}" for k, v in tuned.items()))


@app.command()
def train(
    cell: Annotated[
        str | None, typer.Option(help="A cell name such as unet_se-c16-p128-s1-r0 (without -r<seed>: the first seed).")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help=f"Instead of --cell: a model, {one_of_params('study.models')}.")
    ] = None,
    channels: Annotated[
        str | None, typer.Option(help=f"Channel configuration, {one_of_params('study.channels')}.")
    ] = None,
    patch: Annotated[str | None, typer.Option(help=f"Patch size, {one_of_params('study.patches')}.")] = None,
    sample: Annotated[str | None, typer.Option(help=f"Data sample, {one_of_params('study.samples')}.")] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            help="Replicate seed: one of train.seeds, or of the replicate block's for its cells."
            + from_params("train.seeds", lambda seeds: f"{seeds[0]}, the first" if seeds else "none"),
            callback=option_range("[0, inf)"),
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="Continue from the last epoch checkpoint of an interrupted run.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Replace an existing models/<cell> folder even if this program did not make it, and a cell of the "
            "committed study (its outputs recorded in dvc.lock) outside dvc repro and grid run.",
        ),
    ] = False,
    device: Annotated[
        str | None,
        typer.Option(help="cpu, cuda or cuda:N (default: the first GPU if one is seen, else the CPU)."),
    ] = None,
    rerun: Annotated[
        bool,
        typer.Option(
            "--rerun",
            help="Train it as the rerun block does (DVC stage rerun@...): with train.reruns.threads threads, into "
            "<models_dir>/reruns and <metrics_dir>/reruns.",
        ),
    ] = False,
):
    """Train one grid cell (DVC stage train@<configuration>-<seed>): fit, validate, tune thresholds, test, log."""
    p = load_params(check_models=True)
    from src.training.stage import train_command

    record = train_command(
        p,
        cell=cell,
        model=model,
        channels=channels,
        patch=patch,
        sample=sample,
        seed=seed,
        rerun=rerun,
        resume=resume,
        force=force,
        device=device,
    )
    typer.echo(
        f"{record['cell']}: test F4 {record['test_score']:.3f} (best validation {record['val_best_score']:.3f}), "
        f"{record['train_minutes']:.1f} min; MLflow run {record['mlflow_run_id']}"
    )


@app.command()
def profile(
    name: Annotated[str, typer.Argument(help="A profile in profiles/: demo (default) or paper.")],
):
    """Switch params.yaml to a profile (profiles/<name>.yaml), keeping its comments."""
    from src.cell_stages import CELLS_FILE, write_cells
    from src.profiles import apply_profile

    changed = apply_profile(name, PARAMS_FILE)
    count = write_cells(load_params())  # the profile's seeds are other stages
    typer.echo(f"params.yaml now uses profile '{name}' ({len(changed)} values set); {count} cells -> {CELLS_FILE}")


tracking_app = new_app("The MLflow store and the committed exports of its runs (metrics/mlflow/<cell>.json).")
app.add_typer(tracking_app, name="tracking")


@tracking_app.command("import")
def tracking_import(
    exports: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Run exports to load."
            + from_params("train.metrics_dir", lambda folder: f"every {folder}/mlflow/*.json")
        ),
    ] = None,
):
    """Load committed run exports into the local MLflow store (mlruns/), so `mlflow ui` shows them without training."""
    from src import tracking

    if not exports:
        folder = Path(load_params().train.metrics_dir) / tracking.EXPORT_FOLDER
        exports = sorted(folder.glob("*.json"))
        if not exports:
            raise UserError(f"no run exports (*.json) in {folder}/: train a cell first, or give the files")
    imported, skipped = tracking.import_runs(exports)
    typer.echo(f"imported {len(imported)} runs into {tracking.tracking_uri()} ({len(skipped)} already there)")
    typer.echo(f"see them with: mlflow ui --backend-store-uri {tracking.tracking_uri()}")


@tracking_app.command("export")
def tracking_export(
    metrics: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Cell metrics files whose runs to export."
            + from_params("train.metrics_dir", lambda folder: f"every {folder}/*.json")
        ),
    ] = None,
):
    """Export the run each metrics file names to <metrics_dir>/mlflow/<cell>.json (training does this per cell)."""
    from src import tracking

    files = metrics or sorted(Path(load_params().train.metrics_dir).glob("*.json"))
    for path in files:
        typer.echo(f"wrote {tracking.export_cell_run(path)}")


@tracking_app.command("serve")
def tracking_serve(
    backend_store_uri: Annotated[
        str | None,
        typer.Option(help="Database of runs: postgresql://user:pass@host/db on a cluster (default: the sqlite store)."),
    ] = None,
    artifacts: Annotated[
        Path | None, typer.Option(help="Folder where the server keeps artifacts (default: mlruns/artifacts).")
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: every node may log to it).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", callback=option_range("[1, 65535]"))] = 5000,
):
    """Start an MLflow server for many writers (the grid's jobs); export MLFLOW_TRACKING_URI as it prints. Runs until
    Ctrl-C; exits non-zero if the server stops by itself."""
    from src import tracking

    command = tracking.server_command(backend_store_uri, artifacts, host, port)
    tracking.check_port_free(host, port)
    shown = "localhost" if host in ("127.0.0.1", "0.0.0.0") else host
    typer.echo(f"export MLFLOW_TRACKING_URI=http://{shown}:{port}   # in every shell that trains or reports", err=True)
    typer.echo(" ".join(command), err=True)
    tracking.run_server(command)


grid_app = new_app(
    "The cells `dvc repro` trains (its train@, replicate@ and rerun@ stages) as local processes (one per GPU or CPU "
    "slot) or SLURM jobs, recorded in dvc.lock."
)
app.add_typer(grid_app, name="grid")
GRID_CELLS = (
    "Cells (unet-c16-p64-s1-r0; the rerun block's unet-c16-p64-s1-r0-t1), DVC stages (rerun@unet-c16-p64-s1-0) or "
    "configurations (all their stages).  [default: every train@, replicate@ and rerun@ stage, as dvc repro]"
)


def _grid_cells(names: list[str] | None):
    from src.cell_stages import check_cells
    from src.grid_dvc import cells_named
    from src.study import Study

    p = load_params()
    check_cells(p)  # the stages DVC runs must be params.yaml's cells
    return cells_named(Study.from_params(p), names or [])


@grid_app.command("run")
def grid_run(
    cells: Annotated[list[str] | None, typer.Argument(help=GRID_CELLS)] = None,
    executor: Annotated[
        str,
        typer.Option(metavar="<local|slurm>", help="Processes on this machine, or SLURM jobs (through submitit)."),
    ] = "local",
    gpus: Annotated[
        int | None,
        typer.Option(
            help="local: GPUs to use, one cell each; slurm: GPUs per job."
            + from_params("grid.slurm.gpus_per_task", lambda n: f"none locally, {n} per SLURM job"),
            callback=option_range("[0, inf)"),
        ),
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option(
            help="local: cells at once, each computing with repro.cpu_threads threads whatever the number of slots."
            + from_params("repro.cpu_threads", lambda t: f"--gpus, else cores // {t}" if t else "--gpus, else 1"),
            callback=option_range("[1, inf)"),
        ),
    ] = None,
    partition: Annotated[
        str | None,
        typer.Option(
            help="slurm: partition."
            + from_params("grid.slurm.partition", lambda name: "the cluster's" if name is None else name)
        ),
    ] = None,
    time: Annotated[
        str | None, typer.Option(help="slurm: wall time per job, [D-]HH:MM." + from_params("grid.slurm.time"))
    ] = None,
    mem: Annotated[
        str | None, typer.Option(help="slurm: memory per job, e.g. 32G." + from_params("grid.slurm.mem"))
    ] = None,
    cpus_per_task: Annotated[
        int | None,
        typer.Option(
            help="slurm: CPUs per job." + from_params("grid.slurm.cpus_per_task"), callback=option_range("[1, inf)")
        ),
    ] = None,
):
    """Run cells to the end: submit, watch, resubmit failed ones to resume them (params: grid.retries), dvc commit
    finished ones. Logs and the driver's state (grid.json) go to params' grid.log_dir."""
    import dataclasses

    from src.grid import run_grid
    from src.grid_jobs import GridRun, cpu_slots, wall_minutes
    from src.tracking import repo_root

    p = load_params(check_models=True)  # every cell builds its network: refuse a model that cannot be built first
    grid = p.grid
    if executor == "slurm" and grid.slurm is not None:
        overrides = {
            "partition": partition,
            "time": time,
            "mem": mem,
            "cpus_per_task": cpus_per_task,
            "gpus_per_task": gpus,
        }
        slurm = dataclasses.replace(grid.slurm, **{k: v for k, v in overrides.items() if v is not None})
        wall_minutes(slurm.time)
        grid = dataclasses.replace(grid, slurm=slurm)
    chosen = _grid_cells(cells)
    slots = jobs or gpus or cpu_slots(p.repro.cpu_threads)
    run = GridRun(repo_root(), grid, executor, slots, gpus or 0)
    typer.echo(f"{len(chosen)} cells, executor {executor}" + (f", {slots} at a time" if executor == "local" else ""))
    ended = run_grid(run, chosen, say=lambda text: typer.echo(f"{_clock()} {text}"))
    failed = [j for j in ended.values() if j.state != "done"]
    typer.echo(f"{len(ended) - len(failed)} of {len(ended)} cells done and recorded in dvc.lock")
    for job in failed:
        typer.echo(f"  {job.cell}: {job.state}: {job.message}")
    if failed:
        raise typer.Exit(1)


def _clock() -> str:
    import time

    return time.strftime("%H:%M:%S")


@grid_app.command("status")
def grid_status_command(
    cells: Annotated[list[str] | None, typer.Argument(help=GRID_CELLS)] = None,
):
    """Which cells are queued, running, done or failed: SLURM's or the local processes' word, dvc.lock, and the driver's
    state (grid.json in params' grid.log_dir)."""
    from src.grid import grid_status
    from src.tracking import repo_root

    p = load_params()
    rows = grid_status(repo_root(), p.grid, _grid_cells(cells))
    width = max(len(r.cell) for r in rows)
    typer.echo(f"{'cell':<{width}}  {'state':<24} tries  {'job':<12} log")
    for r in rows:
        typer.echo(f"{r.cell:<{width}}  {r.state:<24} {r.attempts:>5}  {r.job_id or '-':<12} {r.log or '-'}")
    counts = {}
    for r in rows:
        counts[r.state] = counts.get(r.state, 0) + 1
    typer.echo(", ".join(f"{n} {state}" for state, n in sorted(counts.items())))


def main() -> None:
    run_app(app)


if __name__ == "__main__":
    main()
