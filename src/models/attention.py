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

from collections.abc import Callable
from dataclasses import dataclass

import torch.nn as nn

from src.models.blocks import CBAM, AttentionGate, SqueezeExcitation

__all__ = ["ATTENTION", "SITES", "AttentionEntry", "attention_entry", "register_attention"]

SITES = ("encoder", "skip")


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
