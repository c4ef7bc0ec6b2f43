"""Networks of the study from their settings, and back from a saved config."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from src.models.unet import AttentionUNet3D

__all__ = ["build_model", "model_from_config"]


def build_model(
    attention: str,
    channels: Sequence[int] = (16, 32, 64, 128),
    out_channels: int = 7,
    attention_kwargs: Mapping[str, Any] | None = None,
    **network: Any,
) -> AttentionUNet3D:
    """
    Build one network of the family.

    Args:
        attention: the attention block (see :mod:`src.models.attention`); a study model's is
            ``study.models.<model>.attention`` in params.yaml.
        channels: feature channels per level, e.g. (16, 32, 64, 128) or (32, 64, 128, 256).
        out_channels: classes + background.
        attention_kwargs: the attention block's options (``study.models.<model>.attention_kwargs``).
        network: the shared backbone layout (params.yaml ``train.network``): strides, num_res_units, norm, act,
            dropout, kernel_size, up_kernel_size.
    """
    return AttentionUNet3D(
        channels=channels,
        out_channels=out_channels,
        attention=attention,
        attention_kwargs=attention_kwargs,
        **network,
    )


def model_from_config(config: Mapping[str, Any]) -> AttentionUNet3D:
    """Rebuild a model from ``model.config`` (e.g. as stored in a checkpoint); load the weights separately."""
    return AttentionUNet3D(**config)
