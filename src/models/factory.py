"""Networks of the study from their settings, and back from a saved config."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from src.models.unet import AttentionUNet3D

__all__ = ["build_model", "model_from_config"]

# Checkpoints written before attention options moved into one mapping kept them as separate arguments.
_LEGACY_ATTENTION_ARGS = {
    "se": {"se_reduction": "reduction"},
    "cbam": {"cbam_reduction": "reduction", "cbam_kernel_size": "kernel_size"},
}


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
    config = dict(config)
    legacy = {old: new for names in _LEGACY_ATTENTION_ARGS.values() for old, new in names.items()}
    if any(k in config for k in legacy):
        kwargs = dict(config.get("attention_kwargs") or {})
        for old, new in _LEGACY_ATTENTION_ARGS.get(config.get("attention", "none"), {}).items():
            kwargs.setdefault(new, config[old])
        config = {k: v for k, v in config.items() if k not in legacy} | {"attention_kwargs": kwargs}
    return AttentionUNet3D(**config)
