"""Names that become parts of paths (classes, runs, users, sessions, tomogram types) are checked where they are read,
so that no name from a config, checkpoint or command line can reach outside the folder it names a thing in."""

from __future__ import annotations

import re

from src.errors import UserError

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MAX_LENGTH = 200


def is_safe_name(value: object) -> bool:
    return (
        isinstance(value, str)
        and len(value) <= MAX_LENGTH
        and SAFE_NAME.fullmatch(value) is not None
        and ".." not in value
    )


def check_name(value: object, what: str, where: object = None, error: type[UserError] = UserError) -> str:
    """`value` if it is a safe path component (letters, digits, '.', '_', '-', starting with a letter or digit, no
    '..'); otherwise raise `error` naming `what` and `where` (a file or source) in one sentence."""
    if is_safe_name(value):
        return value
    prefix = f"{where}: " if where is not None else ""
    raise error(
        f"{prefix}{what} {value!r} is not a safe name (letters, digits, '.', '_' and '-', starting with a letter or "
        "digit, no '..')"
    )
