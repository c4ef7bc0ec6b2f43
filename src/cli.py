"""What every command line of this project shares (`python -m src`, `python -m src.report`): one typer style,
`--version`, help texts that show params.yaml's values, and errors as one `error:` line."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
import yaml

from src.errors import UserError

REPO = Path(__file__).resolve().parents[1]
MISSING = object()


def new_app(help: str | None = None, **settings: Any) -> typer.Typer:
    """A typer app in the project's style: plain help (click's layout, no boxes; "[default: ...]" is text, not
    markup), no shell-completion options, no pretty tracebacks, and the command list when called without one.
    `help` None: the callback's docstring."""
    style = {
        "add_completion": False,
        "no_args_is_help": True,
        "pretty_exceptions_enable": False,
        "rich_markup_mode": None,
    }
    return typer.Typer(help=help, **{**style, **settings})


def version_text() -> str:
    """This project's name, version and commit, and the versions of the libraries that decide its numbers."""
    import tomllib
    from importlib.metadata import PackageNotFoundError, version

    from src.tracking import git_commit

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    libraries = []
    for name in ("torch", "monai", "mlflow"):
        try:
            libraries.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            libraries.append(f"{name} missing")
    return f"{project['name']} {project['version']} (git {git_commit()[:12]}); " + ", ".join(libraries)


def print_version(value: bool) -> None:
    """The `--version` option's callback: print and exit before anything else is parsed."""
    if value:
        typer.echo(version_text())
        raise typer.Exit()


def version_option() -> Any:
    return typer.Option("--version", callback=print_version, is_eager=True, help="Print the version and exit.")


@functools.cache
def _params() -> dict | None:
    """params.yaml of the current folder as plain YAML, or None where it does not load: help must show even then."""
    try:
        raw = yaml.safe_load(Path("params.yaml").read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return raw if isinstance(raw, dict) else None


def params_value(key: str) -> Any:
    """The value at dotted `key` of params.yaml, or MISSING."""
    node: Any = _params()
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    return node


def shown(value: Any) -> str:
    """A params value as the command line writes it: a list as D,H,W; a mapping by its keys."""
    if isinstance(value, dict):
        return ", ".join(map(str, value))
    if isinstance(value, list):
        return ",".join(map(str, value))
    return "none" if value is None else str(value)


def from_params(key: str, show: Callable[[Any], str] = shown) -> str:
    """The help suffix of an option whose default is params.yaml's `key`, as click writes a default:
    "  [default: 16, from params: synth.runs]", or "  [from params: synth.runs]" where params.yaml does not load."""
    value = params_value(key)
    try:
        return f"  [default: {show(value)}, from params: {key}]" if value is not MISSING else f"  [from params: {key}]"
    except (TypeError, AttributeError, IndexError, KeyError, ValueError):  # a value of another shape: params refuses it
        return f"  [from params: {key}]"


def one_of_params(key: str) -> str:
    """The help text of an option that takes one of params.yaml's `key`: "one of c16, c32 (params: study.channels)"."""
    value = params_value(key)
    if value is MISSING:
        return f"a key of params: {key}"
    return f"one of {shown(value).replace(',', ', ') if isinstance(value, list) else shown(value)} (params: {key})"


def run(app: typer.Typer) -> None:
    """Run `app`; a UserError ends it with its one sentence and exit code 2."""
    try:
        app()
    except UserError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)
