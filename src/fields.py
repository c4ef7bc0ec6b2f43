"""Reading this project's own JSON files without trusting them: metrics/<cell>.json, the MLflow run exports in
metrics/mlflow, data/splits.json, a project's manifest.json and a checkpoint's post-processing plan.

A file edited by hand, cut short or written by another version must give one sentence naming the file and the field,
not a traceback far from it (or, worse, an error that blames something else). `read_object` reads a file that must be
a JSON object; `field` takes one value out of it, checked against a `Kind`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from src.errors import DataError


@dataclass(frozen=True)
class Kind:
    """What a field must hold, in words (for the error) and as a test."""

    words: str
    holds: Callable[[object], bool]


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


NUMBER = Kind("a finite number", _number)
NUMBER_OR_NAN = Kind("a number", lambda v: isinstance(v, int | float) and not isinstance(v, bool))
WHOLE = Kind("a whole number", lambda v: isinstance(v, int) and not isinstance(v, bool))
TEXT = Kind("a non-empty string", lambda v: isinstance(v, str) and v != "")
ANY_TEXT = Kind("a string", lambda v: isinstance(v, str))
OBJECT = Kind("a JSON object", lambda v: isinstance(v, dict))


def list_of(kind: Kind) -> Kind:
    return Kind(f"a list of {kind.words.removeprefix('a ').removeprefix('an ')}s", lambda v: _all(v, list, kind))


def map_of(kind: Kind) -> Kind:
    words = kind.words.removeprefix("a ").removeprefix("an ")
    return Kind(f"an object of {words}s", lambda v: _all(v, dict, kind))


def one_of(*values: str) -> Kind:
    """One of these strings; the message quotes them, so that an allowed empty string shows."""
    return Kind(f"one of {', '.join(map(json.dumps, values))}", lambda v: isinstance(v, str) and v in values)


def either(first: Kind, second: Kind) -> Kind:
    return Kind(f"{first.words} or {second.words}", lambda v: first.holds(v) or second.holds(v))


NULL = Kind("null", lambda v: v is None)


def _all(value, container: type, kind: Kind) -> bool:
    if not isinstance(value, container):
        return False
    items = value.values() if isinstance(value, dict) else value
    return all(kind.holds(item) for item in items)


def _shown(value) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _json_type(value) -> str:
    names = {bool: "boolean", list: "array", str: "string", type(None): "null"}
    return names.get(type(value), "number")


_MISSING = object()


def field(record: dict, key: str, kind: Kind, where: str | Path, default=_MISSING, prefix: str = ""):
    """`record[key]` if it is of `kind`; else a DataError "<where>: <prefix><key> is <value>, not <kind>". A missing
    key gives `default`, or an error if there is none."""
    if key not in record:
        if default is not _MISSING:
            return default
        raise DataError(f"{where} has no field '{prefix}{key}'")
    value = record[key]
    if not kind.holds(value):
        raise DataError(f"{where}: field '{prefix}{key}' is {_shown(value)}, not {kind.words}")
    return value


def read_object(path: str | Path, what: str) -> dict:
    """The JSON object in file `path` (`what` it should be, for the error): a file that cannot be read, is not UTF-8
    or not JSON, or holds something other than an object, is a DataError naming it."""
    path = Path(path)
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text, so not {what}") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{path} is not valid JSON ({err}), so not {what}") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a folder, not {what}") from None
    except OSError as err:
        raise DataError(f"cannot read {path} ({err.strerror})") from None
    if not isinstance(content, dict):
        raise DataError(f"{path} holds a JSON {_json_type(content)}, not an object, so not {what}")
    return content
