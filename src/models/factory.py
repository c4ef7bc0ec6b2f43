"""Model names of the study -> networks, and back from a saved config."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from src.models.unet import AttentionUNet3D

__all__ = ["MODEL_ATTENTION", "MODEL_NAMES", "build_model", "model_from_config", "model_name"]

MODEL_ATTENTION: dict[str, str] = {"unet": "none", "unet_ag": "ag", "unet_se": "se", "unet_cbam": "cbam"}
MODEL_NAMES: tuple[str, ...] = tuple(MODEL_ATTENTION)


def build_model(
    name: str, channels: Sequence[int] = (16, 32, 64, 128), out_channels: int = 7, **kwargs: Any
) -> AttentionUNet3D:
    """
    Build one of the study's models by name.

    Args:
        name: one of ``MODEL_NAMES``: ``unet`` (baseline), ``unet_ag``, ``unet_se``, ``unet_cbam``.
        channels: feature channels per level, e.g. (16, 32, 64, 128) or (32, 64, 128, 256).
        out_channels: classes + background.
        kwargs: any other :class:`AttentionUNet3D` argument except ``attention`` (the name sets it).
    """
    if name not in MODEL_ATTENTION:
        raise ValueError(f"unknown model {name!r}; options are {', '.join(MODEL_NAMES)}")
    if "attention" in kwargs:
        raise ValueError("build_model sets `attention` from the model name; do not pass it")
    return AttentionUNet3D(channels=channels, out_channels=out_channels, attention=MODEL_ATTENTION[name], **kwargs)


def model_name(model: AttentionUNet3D) -> str:
    """The study's name of a built model (``unet``, ``unet_ag``, ...)."""
    return {v: k for k, v in MODEL_ATTENTION.items()}[model.attention]


def model_from_config(config: Mapping[str, Any]) -> AttentionUNet3D:
    """Rebuild a model from ``model.config`` (e.g. as stored in a checkpoint); load the weights separately."""
    return AttentionUNet3D(**config)
