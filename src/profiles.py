"""Profiles: named sets of params.yaml values (profiles/<name>.yaml), applied with comments kept (the new params.yaml
is written beside the old one and renamed over it)."""

from __future__ import annotations

from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedSeq
from ruamel.yaml.error import YAMLError

from src.atomic import atomic_output
from src.errors import UserError
from src.params import parse_params

PROFILES_DIR = Path("profiles")


def _merge(target, overrides, prefix: str, changed: list[str]) -> None:
    for key, value in overrides.items():
        if key not in target:
            raise UserError(f"profile sets unknown parameter {prefix}{key}")
        if isinstance(value, dict) and isinstance(target[key], dict) and value:
            _merge(target[key], value, f"{prefix}{key}.", changed)
        elif target[key] != value:
            if isinstance(value, list) and isinstance(target[key], CommentedSeq):
                seq = CommentedSeq(value)
                if target[key].fa.flow_style():
                    seq.fa.set_flow_style()
                value = seq
            target[key] = value
            changed.append(f"{prefix}{key}")


def apply_profile(name: str, params_file: str | Path, profiles_dir: str | Path = PROFILES_DIR) -> list[str]:
    """Set the values of profile `name` in `params_file`; returns the dotted keys that changed."""
    profile_path = Path(profiles_dir) / f"{name}.yaml"
    if not profile_path.exists():
        known = sorted(p.stem for p in Path(profiles_dir).glob("*.yaml"))
        raise UserError(f"no profile '{name}' (known: {', '.join(known)})")
    yaml = round_trip_yaml()
    params = read_yaml(yaml, params_file)
    overrides = read_yaml(YAML(typ="safe"), profile_path)
    changed: list[str] = []
    _merge(params, overrides, "", changed)
    parse_params(_plain(params))  # refuse to write params that would not load
    # Written beside and renamed over: a full disk or a crash leaves the old params.yaml whole, never a truncated one.
    with atomic_output(params_file) as tmp, tmp.open("w") as f:
        yaml.dump(params, f)
    return changed


def round_trip_yaml() -> YAML:
    """A YAML reader and writer that keeps params.yaml's comments, layout and `null`s."""
    yaml = YAML()  # round-trip mode keeps comments and layout
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.representer.add_representer(type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    return yaml


def read_yaml(yaml: YAML, path: str | Path):
    """A YAML file's content; its syntax errors, a key given twice among them (ruamel refuses those), in one
    sentence."""
    try:
        return yaml.load(Path(path).read_text())
    except YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = (getattr(err, "problem", None) or type(err).__name__).split("\n")[0]
        raise UserError(f"{path}: not valid YAML, {what}{at}") from None


def _plain(node):
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node
