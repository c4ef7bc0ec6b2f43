"""`python -m src.report`: render the paper's tables, statistics, conclusions and figures from the logged runs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from src.errors import UserError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def main(
    metrics_dir: Annotated[Path | None, typer.Option(help="Cell metrics files (params: train.metrics_dir).")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (params: report.out).")] = None,
    params_file: Annotated[Path, typer.Option("--params", help="The params file to read.")] = Path("params.yaml"),
    no_figures: Annotated[bool, typer.Option("--no-figures", help="Skip the PNG figures.")] = False,
):
    """Read the MLflow runs that metrics/*.json name and write tables, statistics, conclusions and figures."""
    from src.params import load_params
    from src.report.build import build_report
    from src.study import Study

    try:
        p = load_params(params_file)
        metrics = metrics_dir or p.train.metrics_dir
        written = build_report(
            metrics, out or p.report.out, p.report, Study.from_params(p), make_figures=not no_figures
        )
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        raise typer.Exit(2) from None
    for path in written:
        print(path)


if __name__ == "__main__":
    app()
