"""Progress that shows wherever the output goes: a tqdm bar on a terminal; in a file or a pipe, where tqdm draws no
bar (`disable=None`), one timestamped line per item done, as training writes one per epoch (src/training/train.py)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator

from tqdm import tqdm


def say(text: str) -> None:
    """One timestamped line on stderr, between a bar's redraws."""
    tqdm.write(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr)


def each(
    items: Iterable,
    desc: str,
    unit: str,
    enabled: bool = True,
    total: int | None = None,
    label: Callable[[object], str] | None = str,
) -> Iterator:
    """`items`, in order, with a bar on a terminal or, elsewhere, a line as each is done: "12:00:07 tomograms: 2/3
    TS_SYN_001 done (6.1 s)" (`label` names an item; None: no name). `enabled` False: silent."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)
    bar = tqdm(items, desc=desc, unit=unit, total=total, disable=None if enabled else True)
    if not enabled or not bar.disable:
        yield from bar
        return
    bar.close()
    last = time.perf_counter()
    for done, item in enumerate(items, start=1):
        yield item
        now = time.perf_counter()
        name = f" {label(item)}" if label is not None else ""
        say(f"{desc}: {done}/{total if total is not None else '?'}{name} done ({now - last:.1f} s)")
        last = now
