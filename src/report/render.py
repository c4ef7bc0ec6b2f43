"""Jinja environments (Markdown and LaTeX) and atomic writing of rendered files.

Both environments use StrictUndefined (a missing number fails loudly) and no autoescape (HTML escaping is wrong for
Markdown and LaTeX). The LaTeX one uses \\BLOCK{...}, \\VAR{...} and \\#{...} so that LaTeX's own braces and percent
signs stay literal, and escapes text through the `tex` filter.
"""

from __future__ import annotations

import math
from pathlib import Path

import jinja2

from src.atomic import atomic_output

TEMPLATES = Path(__file__).with_name("templates")
DASH = "—"

_TEX = {
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "\\": r"\textbackslash{}",
}


def tex_escape(text) -> str:
    """Escape LaTeX's special characters in plain text."""
    return "".join(_TEX.get(ch, ch) for ch in str(text))


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def fmt_num(value, decimals: int = 3, missing: str = DASH) -> str:
    """A number with fixed decimals; a missing value (None or NaN) as a dash."""
    return missing if _missing(value) else f"{float(value):.{decimals}f}"


def fmt_signed(value, decimals: int = 3, missing: str = DASH) -> str:
    return missing if _missing(value) else f"{float(value):+.{decimals}f}"


def fmt_p(value, missing: str = DASH) -> str:
    """A p-value: 4 decimals, or 3 significant digits in scientific notation below 0.001."""
    if _missing(value):
        return missing
    return f"{value:.4f}" if value >= 0.001 else f"{value:.2e}"


def _filters(env: jinja2.Environment, missing: str) -> jinja2.Environment:
    env.filters["num"] = lambda v, d=3: fmt_num(v, d, missing)
    env.filters["signed"] = lambda v, d=3: fmt_signed(v, d, missing)
    env.filters["p"] = lambda v: fmt_p(v, missing)
    env.filters["tex"] = tex_escape
    return env


def markdown_env(folder: Path = TEMPLATES) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return _filters(env, DASH)


def latex_env(folder: Path = TEMPLATES) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        block_start_string=r"\BLOCK{",
        block_end_string="}",
        variable_start_string=r"\VAR{",
        variable_end_string="}",
        comment_start_string=r"\#{",
        comment_end_string="}",
        line_statement_prefix=None,
        line_comment_prefix=None,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return _filters(env, "---")


def write_text(path: Path, text: str) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(text)


def render_to(env: jinja2.Environment, template: str, path: Path, **context) -> str:
    """Render `template` with `context` and write it to `path` atomically; return the text."""
    text = env.get_template(template).render(**context)
    write_text(path, text)
    return text
