"""`python -m src.report`: render the paper's tables, statistics, conclusions and figures from the logged runs;
`python -m src.report compare OTHER_METRICS_DIR`: did a rerun reproduce the committed study?"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from src.cli import from_params, new_app, run, version_option
from src.errors import UserError

app = new_app(
    "Read the MLflow runs that metrics/*.json name and write tables, statistics, conclusions and figures (with the "
    "command `compare OTHER_METRICS_DIR`: check a rerun against them instead).",
    no_args_is_help=False,  # no command: render the report
)


@app.callback(invoke_without_command=True)
def main(
    ctx: typer.Context,
    metrics_dir: Annotated[
        Path | None, typer.Option(help="Cell metrics files." + from_params("train.metrics_dir"))
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder." + from_params("report.out"))] = None,
    params_file: Annotated[Path, typer.Option("--params", help="The params file to read.")] = Path("params.yaml"),
    no_figures: Annotated[bool, typer.Option("--no-figures", help="Skip the PNG figures.")] = False,
    version: Annotated[bool, version_option()] = False,
):
    """Read the MLflow runs that metrics/*.json name and write tables, statistics, conclusions and figures (with
    the command `compare OTHER_METRICS_DIR`: check a rerun against them instead)."""
    if ctx.invoked_subcommand is not None:
        return
    from src.cell_stages import check_cells
    from src.params import load_params
    from src.report.build import build_report
    from src.report.stats import Scoring
    from src.study import Study

    try:
        p = load_params(params_file, check_models=True)  # the cost table builds every model
        if os.environ.get("DVC_STAGE"):  # as dvc repro's report stage: the grid DVC ran must be params.yaml's
            check_cells(p)
        metrics = metrics_dir or p.train.metrics_dir
        written = build_report(
            metrics,
            out or p.report.out,
            p.report,
            Study.from_params(p),
            make_figures=not no_figures,
            scoring=Scoring.from_params(p),
            network=asdict(p.train.network),
        )
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        raise typer.Exit(2) from None
    for path in written:
        print(path)


@app.command()
def compare(
    other: Annotated[Path, typer.Argument(help="The rerun's metrics folder (its metrics/*.json).")],
    metrics_dir: Annotated[
        Path | None, typer.Option(help="The committed study's metrics." + from_params("train.metrics_dir"))
    ] = None,
    committed_rev: Annotated[
        str | None,
        typer.Option(
            help="Read the committed study's metrics folder as it is at this git revision (e.g. HEAD) instead of the "
            "working copy, which `dvc repro` rewrites: `compare metrics --committed-rev HEAD`."
        ),
    ] = None,
    sigma: Annotated[
        float | None,
        typer.Option(
            help="Training-noise SD of one run's test score, used only when the committed study has no configuration "
            "with two or more seeds to estimate it from."
        ),
    ] = None,
    sigma_df: Annotated[
        float | None, typer.Option(help="Degrees of freedom of --sigma's estimate (default: treat it as known).")
    ] = None,
    alpha: Annotated[float, typer.Option(help="Level of each one-sided test of the equivalence tests.")] = 0.05,
    acceptance: Annotated[
        float, typer.Option(help="Probability with which a faithful rerun passes every check.")
    ] = 0.95,
    params_file: Annotated[Path, typer.Option("--params", help="The params file to read.")] = Path("params.yaml"),
):
    """Level of reproduction: exact (same cells, scores, counts, thresholds, epochs, weights), statistically
    reproduced (grid mean and model effects equivalent, every cell within training noise), or not reproduced. Exit
    code 0 for the first two, 1 when not reproduced, 2 on bad input."""
    import math

    from src.params import load_params
    from src.ranges import check_number
    from src.report.compare import Criterion, committed_metrics, compare_studies
    from src.report.noise import given_noise
    from src.report.stats import Scoring
    from src.study import Study

    try:
        p = load_params(params_file)
        if sigma is not None:
            check_number(sigma, "--sigma", "(0, inf)")
        if sigma_df is not None:
            check_number(sigma_df, "--sigma-df", "(0, inf]")  # inf: a known sigma
        if sigma_df is not None and sigma is None:
            raise UserError("--sigma-df needs --sigma")
        noise = None if sigma is None else given_noise(sigma, sigma_df or math.inf, p.report.confidence)
        criterion = Criterion(alpha, acceptance)
        with committed_metrics(metrics_dir or p.train.metrics_dir, committed_rev) as committed:
            result = compare_studies(
                committed, other, p.report, Study.from_params(p), Scoring.from_params(p), criterion, noise
            )
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        raise typer.Exit(2) from None
    print(result.to_markdown(p.report.decimals), end="")
    raise typer.Exit(result.exit_code)


if __name__ == "__main__":
    run(app)
