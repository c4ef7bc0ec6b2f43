"""The attention registry: attention name -> where its block sits in the U-Net and the block that builds it.

A kind of attention is one file, ``blocks/<name>.py``, which says where its block sits (``SITE``) and which class
builds it (``BLOCK``); params.yaml names it (``study.models.<model>.attention: <name>``) and gives its options
(``attention_kwargs``). It is loaded by name, so a model's DVC stages depend on its own block file alone: adding or
editing a block retrains that model's cells and no other (dvc.cells.yaml names each stage's block).

Two sites exist, the two that the study's modules use:

- ``"encoder"``: after every encoder block (the bottleneck included), so the reweighted features feed both the next
  level and the skip; built as ``block(spatial_dims, channels, **attention_kwargs)``, called as ``block(x)``.
- ``"skip"``: on every skip connection, gated by the decoder signal coming up from the coarser level; built as
  ``block(spatial_dims, skip_channels, gating_channels, **attention_kwargs)``, called as ``block(g=g, x=skip)``.

``register_attention`` adds a block at run time instead (a notebook, a test), with no file and no DVC stage.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

__all__ = [
    "SITES",
    "AttentionEntry",
    "attention_entry",
    "attention_names",
    "attention_problem",
    "register_attention",
]

SITES = ("encoder", "skip")
CHANNEL_ARGS = {"encoder": 2, "skip": 3}  # a block's leading arguments that the U-Net gives (see above), not options
BLOCKS = Path(__file__).resolve().parent / "blocks"
REGISTERED: dict[str, AttentionEntry] = {}  # added at run time by register_attention


@dataclass(frozen=True)
class AttentionEntry:
    site: str  # one of SITES
    block: Callable[..., nn.Module]


def attention_names() -> tuple[str, ...]:
    """Every attention option: the block files (``none`` is the baseline's: no module) and those registered."""
    files = sorted(p.stem for p in BLOCKS.glob("*.py") if p.stem != "__init__")
    return (*files, *(n for n in REGISTERED if n not in files))


def register_attention(name: str, site: str, block: Callable[..., nn.Module]) -> None:
    """Make `name` an attention option of every U-Net: `block` placed at `site` (see the module docstring)."""
    if site not in SITES:
        raise ValueError(f"site must be one of {', '.join(SITES)}, got {site!r}")
    if name in attention_names():
        raise ValueError(f"attention {name!r} is already registered")
    REGISTERED[name] = AttentionEntry(site, block)


def attention_entry(name: str) -> AttentionEntry | None:
    """The registry entry of `name` (None for "none"); an unknown name is a ValueError naming the options."""
    if name in REGISTERED:
        return REGISTERED[name]
    if name not in attention_names():
        raise ValueError(f"unknown attention {name!r}; options are {', '.join(attention_names())}")
    module = importlib.import_module(f"src.models.blocks.{name}")
    if module.BLOCK is None:
        return None
    if module.SITE not in SITES:
        raise ValueError(f"src/models/blocks/{name}.py: SITE must be one of {', '.join(SITES)}, got {module.SITE!r}")
    return AttentionEntry(module.SITE, module.BLOCK)


def block_options(entry: AttentionEntry) -> tuple[str, ...] | None:
    """The options (attention_kwargs keys) that `entry`'s block takes; None when it takes any (a **kwargs)."""
    parameters = list(inspect.signature(entry.block).parameters.values())[CHANNEL_ARGS[entry.site] :]
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    return tuple(p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def _build_block(entry: AttentionEntry, channels: int, kwargs: Mapping[str, Any]) -> nn.Module:
    """One block as the U-Net builds it at a level of `channels` (a skip's gate: gated by as many)."""
    with torch.random.fork_rng(devices=[]):  # its weight initialisation must not move the caller's seeded stream
        if entry.site == "skip":
            return entry.block(3, channels, channels, **kwargs)
        return entry.block(3, channels, **kwargs)


def attention_problem(name: str, kwargs: Mapping[str, Any], channels: Iterable[int]) -> str | None:
    """Why attention `name` with options `kwargs` cannot be built into a U-Net of these channel counts, or None: an
    unknown name, an option its block does not take, or a value its block refuses (tried on one block per channel
    count: milliseconds, and the block's own checks, so no rule here to keep in step with it)."""
    if name not in attention_names():
        return f"unknown attention '{name}' (options: {', '.join(attention_names())})"
    entry = attention_entry(name)
    options = () if entry is None else block_options(entry)
    unknown = [] if options is None else sorted(set(kwargs) - set(options))
    if unknown:
        return f"attention '{name}' takes no option '{unknown[0]}' (its options: {', '.join(options) or 'none'})"
    for count in sorted(set(channels)) if entry is not None else ():
        try:
            _build_block(entry, count, kwargs)
        except Exception as err:  # whatever the block raises for a value it cannot use
            return f"attention '{name}' cannot be built with {dict(kwargs)} at {count} channels ({err})"
    return None
