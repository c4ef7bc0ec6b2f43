"""The study's grid: a cell is (model, channel config, patch size, sample), named like `unet_se-c16-p128-s1`.

Keys (`c16`, `p128`) name the paper's configurations; the sizes behind them come from params.yaml, so the demo can
train smaller patches under the same names while the paper profile uses the paper's sizes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from src.errors import UserError

MODELS = ("unet", "unet_ag", "unet_se", "unet_cbam")
CHANNEL_KEYS = ("c16", "c32")
PATCH_KEYS = ("p64", "p96", "p128")
SAMPLE_KEYS = ("s1", "s2")
# The paper's labels for each key, as in its Tables 3 and 4 (paper/published_results.csv).
PAPER_CHANNELS = {"c16": "16-32-64-128", "c32": "32-64-128-256"}
PAPER_PATCHES = {"p64": "32x64x64", "p96": "32x96x96", "p128": "32x128x128"}

_NAME = re.compile(r"^(unet(?:_ag|_se|_cbam)?)-(c16|c32)-(p64|p96|p128)-(s1|s2)$")


@dataclass(frozen=True)
class Cell:
    model: str
    channels: str  # key, e.g. "c16"
    patch: str  # key, e.g. "p128"
    sample: str  # key, e.g. "s1"

    def __post_init__(self):
        for value, allowed in (
            (self.model, MODELS),
            (self.channels, CHANNEL_KEYS),
            (self.patch, PATCH_KEYS),
            (self.sample, SAMPLE_KEYS),
        ):
            if value not in allowed:
                raise UserError(f"'{value}' is not one of {', '.join(allowed)}")

    @property
    def name(self) -> str:
        return f"{self.model}-{self.channels}-{self.patch}-{self.sample}"

    @property
    def sample_number(self) -> str:
        return self.sample[1:]

    @classmethod
    def parse(cls, name: str) -> Cell:
        match = _NAME.match(name)
        if not match:
            raise UserError(f"'{name}' is not a cell name like unet_se-c16-p128-s1")
        return cls(*match.groups())


def all_cells() -> list[Cell]:
    return [Cell(m, c, p, s) for s in SAMPLE_KEYS for m in MODELS for c in CHANNEL_KEYS for p in PATCH_KEYS]
