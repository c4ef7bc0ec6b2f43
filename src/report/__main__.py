"""`python -m src.report`: render the paper's tables, statistics, conclusions and figures from the logged runs;
`python -m src.report compare OTHER_METRICS_DIR`: did a rerun reproduce the committed study?"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from src.errors import UserError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.callback(invoke_without_command=True)
def main(
    ctx: typer.Context,
    metrics_dir: Annotated[Path | None, typer.Option(help="Cell metrics files (params: train.metrics_dir).")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (params: report.out).")] = None,
    params_file: Annotated[Path, typer.Option("--params", help="The params file to read.")] = Path("params.yaml"),
    no_figures: Annotated[bool, typer.Option("--no-figures", help="Skip the PNG figures.")] = False,
):
    """Read the MLflow runs that metrics/*.json name and write tables, statistics, conclusions and figures (with
    the command `compare OTHER_METRICS_DIR`: check a rerun against them instead)."""
    if ctx.invoked_subcommand is not None:
        return
    from src.params import load_params
    from src.report.build import build_report
    from src.report.stats import Scoring
    from src.study import Study

    try:
        p = load_params(params_file)
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
        Path | None, typer.Option(help="The committed study's metrics (params: train.metrics_dir).")
    ] = None,
    params_file: Annotated[Path, typer.Option("--params", help="The params file to read.")] = Path("params.yaml"),
):
    """Reproduced = every rerun cell's score inside the committed cell's test-tomogram interval and every verdict of
    the conclusions the same. Exit code 0 when reproduced, 1 when not, 2 on bad input."""
    from src.params import load_params
    from src.report.compare import compare_studies
    from src.report.stats import Scoring
    from src.study import Study

    try:
        p = load_params(params_file)
        result = compare_studies(
            metrics_dir or p.train.metrics_dir, other, p.report, Study.from_params(p), Scoring.from_params(p)
        )
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        raise typer.Exit(2) from None
    print(result.to_markdown(p.report.decimals, f"{100 * p.report.confidence:g}"), end="")
    raise typer.Exit(0 if result.reproduced else 1)


if __name__ == "__main__":
    app()
