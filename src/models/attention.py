"""The attention registry: attention name -> where its block sits in the U-Net and the block that builds it.

Two sites exist, the two that the study's modules use:

- ``"encoder"``: after every encoder block (the bottleneck included), so the reweighted features feed both the next
  level and the skip; built as ``block(spatial_dims, channels, **attention_kwargs)``, called as ``block(x)``.
- ``"skip"``: on every skip connection, gated by the decoder signal coming up from the coarser level; built as
  ``block(spatial_dims, skip_channels, gating_channels, **attention_kwargs)``, called as ``block(g=g, x=skip)``.

Adding a kind of attention is a block file in ``blocks/`` plus one ``register_attention`` call; its options come from
params.yaml (``study.models.<model>.attention_kwargs``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from src.models.blocks import CBAM, AttentionGate, SqueezeExcitation

__all__ = ["ATTENTION", "SITES", "AttentionEntry", "attention_entry", "attention_problem", "register_attention"]

SITES = ("encoder", "skip")
CHANNEL_ARGS = {"encoder": 2, "skip": 3}  # a block's leading arguments that the U-Net gives (see above), not options


@dataclass(frozen=True)
class AttentionEntry:
    site: str  # one of SITES
    block: Callable[..., nn.Module]


# "none" is the baseline: no attention modules at all.
ATTENTION: dict[str, AttentionEntry | None] = {
    "none": None,
    "ag": AttentionEntry("skip", AttentionGate),  # Oktay et al. 2018
    "se": AttentionEntry("encoder", SqueezeExcitation),  # Hu et al. 2018
    "cbam": AttentionEntry("encoder", CBAM),  # Woo et al. 2018
}


def register_attention(name: str, site: str, block: Callable[..., nn.Module]) -> None:
    """Make `name` an attention option of every U-Net: `block` placed at `site` (see the module docstring)."""
    if site not in SITES:
        raise ValueError(f"site must be one of {', '.join(SITES)}, got {site!r}")
    if name in ATTENTION:
        raise ValueError(f"attention {name!r} is already registered")
    ATTENTION[name] = AttentionEntry(site, block)


def attention_entry(name: str) -> AttentionEntry | None:
    """The registry entry of `name` (None for "none"); an unknown name is a ValueError naming the options."""
    if name not in ATTENTION:
        raise ValueError(f"unknown attention {name!r}; options are {', '.join(ATTENTION)}")
    return ATTENTION[name]


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
    if name not in ATTENTION:
        return f"unknown attention '{name}' (options: {', '.join(ATTENTION)})"
    entry = ATTENTION[name]
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
