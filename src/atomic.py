"""Write-then-rename, so that a crash never leaves an output that looks complete.

File and folder outputs are different things. A file output is never written over an existing folder. A folder
output gets a marker file (`MARKER`) and replaces only a folder that holds one (a folder this program made) or an
empty one; any other folder, or a file in its place, is refused unless `force`. Temporary siblings
(`.<name>.partial-<pid>`, `.<name>.old-<pid>`) left by processes that died are removed when the output is next written.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from src.errors import UserError

MARKER = ".made-by-cryoet-unet"
MARKER_TEXT = "This folder was written by cryoet-unet (python -m src); it is replaced when the command runs again.\n"


class OutputError(UserError):
    """An output path that cannot or must not be written."""


class DiskFull(OutputError):
    """No space (or quota) left while `path` was written; `then` says how to go on once space is freed."""

    def __init__(self, path: Path, reason: str = "no space left on device", then: str = "run the command again"):
        self.path, self.reason = Path(path), reason
        super().__init__(f"{reason} writing {path}; free space and {then}")

    def then(self, then: str) -> DiskFull:
        """The same error with other advice (training: resume with --resume)."""
        return DiskFull(self.path, self.reason, then)


_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


def output_failed(target: Path, err: OSError) -> OutputError:
    """The one-sentence error of an OS error while `target` was written: a full disk says so and what to do."""
    if err.errno in _FULL_ERRNOS:
        return DiskFull(target, _describe(err)[:1].lower() + _describe(err)[1:])
    return OutputError(f"writing {target} failed: {_describe(err)}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def clear_stale(target: Path) -> list[Path]:
    """Remove `.<name>.partial-<pid>` and `.<name>.old-<pid>` siblings of `target` whose process is gone."""
    removed = []
    pattern = re.compile(rf"\.{re.escape(target.name)}\.(?:partial|old)-(\d+)")
    with contextlib.suppress(OSError):
        for sibling in target.parent.iterdir():
            match = pattern.fullmatch(sibling.name)
            if match and int(match.group(1)) != os.getpid() and not _pid_alive(int(match.group(1))):
                with contextlib.suppress(OSError):
                    _remove(sibling)
                    removed.append(sibling)
    return removed


def made_here(folder: Path) -> bool:
    """Whether `folder` is a folder this program wrote (it holds the marker file)."""
    return (folder / MARKER).is_file()


def check_output(target: str | Path, *, folder: bool = False, force: bool = False) -> Path:
    """Refuse an output that would destroy something not ours, before any work is done; returns `target` as a Path.

    A file output must not be an existing folder. A folder output may replace nothing, an empty folder, or a folder
    with the marker; anything else only with `force`.
    """
    target = Path(target)
    if not folder:
        if target.is_dir():
            raise OutputError(f"{target} is a folder, but a file is to be written there; give a file name")
    elif target.exists() or target.is_symlink():
        if target.is_symlink() or not target.is_dir():
            if not force:
                raise OutputError(
                    f"{target} exists and is not a folder this program made; remove it or pass --force to replace it"
                )
        elif not made_here(target) and any(target.iterdir()) and not force:
            raise OutputError(
                f"{target} is a non-empty folder this program did not make (no {MARKER} in it); "
                "remove it or pass --force to replace it"
            )
    parent = target.parent
    for above in (parent, *parent.parents):
        if above.exists() and not above.is_dir():
            raise OutputError(f"cannot write {target}: {above} is not a folder")
    if parent.is_dir():  # try it, so that a read-only folder fails before any work
        probe = parent / f".{target.name}.probe-{os.getpid()}"
        try:
            probe.touch()
            probe.unlink()
        except OSError as err:
            raise OutputError(f"cannot write {target}: {_describe(err)}") from None
    return target


def _describe(err: OSError) -> str:
    return err.strerror or type(err).__name__


# errno values that mean "this output cannot be written here" rather than a fault of what is being written
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


def _writing_failed(err: BaseException, tmp: Path) -> bool:
    """Whether `err`, raised while the output was written, is the output's own OS error (full disk, read-only, no
    permission, or any OS error on a path inside the temporary output), not e.g. a dropped connection."""
    if not isinstance(err, OSError):
        return False
    if err.errno in _WRITE_ERRNOS:
        return True
    name = err.filename
    return isinstance(name, str | Path) and (Path(name) == tmp or Path(name).is_relative_to(tmp))


@contextlib.contextmanager
def atomic_output(target: str | Path, *, folder: bool = False, force: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling path to write a file (or, with `folder`, a folder, created empty) into; on success it
    replaces `target`. See `check_output` for what may be replaced; a folder gets the marker file.

    On an exception the temporary path is removed and `target` is left as it was. An OS error (read-only, full disk,
    not a folder) becomes an OutputError naming `target`.
    """
    target = check_output(target, folder=folder, force=force)
    tmp = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        clear_stale(target)
        _remove(tmp)
        if folder:
            tmp.mkdir()
    except OSError as err:
        with contextlib.suppress(OSError):
            _remove(tmp)
        raise OutputError(f"cannot write {target}: {_describe(err)}") from None
    try:
        yield tmp
    except BaseException as err:
        with contextlib.suppress(OSError):
            _remove(tmp)
        if _writing_failed(err, tmp):
            raise output_failed(target, err) from None
        raise
    try:
        if folder:
            (tmp / MARKER).write_text(MARKER_TEXT)
        if target.is_dir() and not target.is_symlink():
            _swap_folder(tmp, target)
        else:
            if folder and (target.exists() or target.is_symlink()):
                _remove(target)  # a file or link where the folder goes (only with force)
            os.replace(tmp, target)
    except OSError as err:
        with contextlib.suppress(OSError):
            _remove(tmp)
        raise output_failed(target, err) from None


def _swap_folder(tmp: Path, target: Path) -> None:
    """Put folder `tmp` in the place of folder `target`: a folder cannot be renamed over a non-empty folder, so the
    old one is moved aside first (for an instant there is no `target`, never a mix of old and new)."""
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    _remove(old)
    os.replace(target, old)
    os.replace(tmp, target)
    _remove(old)


def check_updatable(target: str | Path, ours: Callable[[str], bool], what: str) -> Path:
    """Refuse, before any work, a folder `updated_folder` must not replace: a file, or a folder holding anything but
    files `ours` accepts by name. Returns the folder (a link's target: the link stays)."""
    target = check_output(target, folder=True, force=True)
    real = target.resolve() if target.is_symlink() else target
    if real.exists() and not real.is_dir():
        raise OutputError(f"{target} is not a folder; give a folder for {what}")
    if real.is_dir():
        mine = lambda p: p.is_file() and not p.is_symlink() and (ours(p.name) or p.name == MARKER)  # noqa: E731
        foreign = sorted(p.name for p in real.iterdir() if not mine(p))
        if foreign:
            raise OutputError(
                f"{target} holds {foreign[0]}, which {what} does not write, and the folder is replaced whole: give "
                "a folder of its own"
            )
    return real


@contextlib.contextmanager
def updated_folder(target: str | Path, ours: Callable[[str], bool], what: str) -> Iterator[Path]:
    """Yield a temporary copy of folder `target` (empty if it is missing) to update; on success it takes the place of
    `target` whole, so a failure half-way (a full disk) leaves the old folder as it was: never new files beside old
    ones. `target` may hold only files whose names `ours` accepts (the ones `what` writes), as it is replaced whole;
    files left unwritten are kept (copied)."""
    real = check_updatable(target, ours, what)
    with atomic_output(real, folder=True, force=True) as tmp:
        try:
            if real.is_dir():
                for old in real.iterdir():
                    shutil.copy2(old, tmp / old.name)
            yield tmp
        except OutputError as err:  # a write inside the copy: name the place the user gave
            raise _renamed(err, tmp, real) from None
    with contextlib.suppress(OSError):
        (real / MARKER).unlink()  # not kept: the folder is checked by its files' names (DVC hashes it whole)


def _renamed(err: OutputError, tmp: Path, target: Path) -> OutputError:
    if isinstance(err, DiskFull):
        return DiskFull(target / err.path.relative_to(tmp), err.reason) if err.path.is_relative_to(tmp) else err
    return OutputError(str(err).replace(str(tmp), str(target)))
