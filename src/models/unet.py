"""One 3-D U-Net family: the MONAI residual U-Net baseline, optionally with AG, SE or CBAM attention."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
from monai.networks.blocks import Convolution, ResidualUnit

from src.models.attention import attention_entry

__all__ = ["AttentionUNet3D"]


def _plain(value: Any) -> Any:
    """Tuples -> lists, recursively, so that a config survives JSON/YAML unchanged."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _layer_spec(value: str | Sequence | None) -> str | tuple | None:
    """A MONAI layer specifier ("name" or (name, {args})), accepting the list form a JSON round trip produces."""
    if value is None or isinstance(value, str):
        return value
    name, args = value
    return (name, dict(args))


def _encoder(in_channels, channels, strides, num_res_units, kernel_size, common) -> nn.ModuleList:
    """n-1 downsampling blocks (stride at the start of each, as in MONAI), then the stride-1 bottleneck."""
    encoder = nn.ModuleList()
    n = len(channels)
    for i in range(n):
        inc = in_channels if i == 0 else channels[i - 1]
        stride = strides[i] if i < n - 1 else 1
        if num_res_units > 0:
            block = ResidualUnit(
                3, inc, channels[i], strides=stride, kernel_size=kernel_size, subunits=num_res_units, **common
            )
        else:
            block = Convolution(3, inc, channels[i], strides=stride, kernel_size=kernel_size, **common)
        encoder.append(block)
    return encoder


def _decoder(out_channels, channels, strides, num_res_units, kernel_size, up_kernel_size, common) -> nn.ModuleList:
    """Level i takes cat([skip_i, g_{i+1}]) and upsamples it to level i-1's resolution (level 0: the logits)."""
    decoder = nn.ModuleList()
    n = len(channels)
    for i in range(n - 1):
        upc = channels[i] + (channels[i + 1] if i == n - 2 else channels[i])
        outc = out_channels if i == 0 else channels[i - 1]
        is_top = i == 0
        up = Convolution(
            3,
            upc,
            outc,
            strides=strides[i],
            kernel_size=up_kernel_size,
            conv_only=is_top and num_res_units == 0,
            is_transposed=True,
            **common,
        )
        if num_res_units > 0:
            # nn.Sequential indices "0"/"1" keep MONAI UNet's parameter names within each level.
            ru = ResidualUnit(
                3, outc, outc, strides=1, kernel_size=kernel_size, subunits=1, last_conv_only=is_top, **common
            )
            decoder.append(nn.Sequential(up, ru))
        else:
            decoder.append(up)
    return decoder


def _skip_attention(block, channels, attention_kwargs) -> nn.ModuleList:
    """One gate per skip i: x = encoder output i (channels[i]); g = decoder output of level i+1 (channels[i]), or the
    bottleneck output (channels[-1]) for the deepest skip."""
    n = len(channels)
    return nn.ModuleList(
        block(3, channels[i], channels[i + 1] if i == n - 2 else channels[i], **attention_kwargs) for i in range(n - 1)
    )


class AttentionUNet3D(nn.Module):
    """
    3-D residual U-Net (MONAI ``UNet`` layout) with an optional attention mechanism.

    The backbone is layer-for-layer the textbook ``monai.networks.nets.UNet(spatial_dims=3, ...,
    num_res_units=2)`` used by the CZII competition notebooks (same modules, same parameter count, same output for
    the same weights), written as explicit lists of levels instead of MONAI's recursive ``SkipConnection`` nesting:

    - ``encoder[i]`` (i < n-1): ``ResidualUnit(channels[i-1] -> channels[i])`` whose first convolution has stride
      ``strides[i]`` (downsampling at the start of the block, as in MONAI); ``encoder[n-1]`` is the bottleneck,
      a stride-1 ``ResidualUnit``. Encoder output ``i`` is the skip of level ``i``.
    - ``decoder[i]``: ``cat([skip_i, g_{i+1}])`` -> transposed convolution (stride ``strides[i]``) ->
      one-subunit ``ResidualUnit``, where ``g_{i+1}`` is the output of ``decoder[i+1]`` (or of the bottleneck for the
      deepest level) and already has the skip's spatial size. ``decoder[0]`` outputs the ``out_channels`` logits at
      the input resolution (its last convolution is bare).

    Attention (the variants only ADD modules, under names containing ``attention``; backbone names and shapes are
    identical, so a baseline state dict loads into any variant with ``strict=False``). The registry in
    :mod:`src.models.attention` says where each kind sits:

    - at the ``"skip"`` site (``"ag"``, Attention Gate, Oktay et al. 2018), ``skip_attention[i]`` gates every skip
      ``skip_i`` with the decoder signal ``g_{i+1}`` coming up from the coarser level, taken after its upsampling,
      i.e. at the skip's resolution (the bottleneck output for the deepest skip).
    - at the ``"encoder"`` site (``"se"``, Squeeze-and-Excitation, Hu et al. 2018; ``"cbam"``, CBAM, Woo et al. 2018),
      ``encoder_attention[i]`` follows every encoder block, the bottleneck included, so the reweighted features feed
      both the next level and the skip.

    Input spatial sizes must be divisible by ``prod(strides)`` (8 for the study's 4-level networks), which holds for
    the study's patches (32,64,64), (32,96,96), (32,128,128) and any sliding window whose sides are multiples of 8.

    Args:
        in_channels: number of input channels (1 for a tomogram).
        out_channels: number of output channels: one per particle class plus background (7 = 6 classes + 1).
        channels: feature channels per level, top first; the last entry is the bottleneck. The study uses
            (16, 32, 64, 128) and (32, 64, 128, 256).
        strides: downsampling stride between consecutive levels, ``len(channels) - 1`` integers.
        num_res_units: residual subunits per encoder block (MONAI semantics; 0 gives plain convolutions).
        attention: a block file's name in ``src/models/blocks/``: ``"none"``, ``"ag"``, ``"se"``, ``"cbam"``, or
            one registered with ``register_attention``.
        attention_kwargs: options of the attention block, e.g. ``{"reduction": 8}`` for SE, ``{"reduction": 8,
            "kernel_size": 7}`` for CBAM (SE/CBAM: hidden width ``C // reduction``; CBAM: spatial kernel size).
        norm: MONAI normalisation spec for the backbone, e.g. ``"instance"`` (default, as MONAI) or ``"batch"``.
        act: MONAI activation spec for the backbone. Defaults to PReLU (as MONAI).
        dropout: dropout ratio inside the backbone's convolution blocks. Defaults to 0.
        kernel_size: backbone convolution kernel size. Defaults to 3.
        up_kernel_size: transposed-convolution kernel size. Defaults to 3.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 7,
        channels: Sequence[int] = (16, 32, 64, 128),
        strides: Sequence[int] = (2, 2, 2),
        num_res_units: int = 2,
        attention: str = "none",
        attention_kwargs: Mapping[str, Any] | None = None,
        norm: str | Sequence = "instance",
        act: str | Sequence = "prelu",
        dropout: float = 0.0,
        kernel_size: int = 3,
        up_kernel_size: int = 3,
    ) -> None:
        super().__init__()
        entry = attention_entry(attention)
        attention_kwargs = dict(attention_kwargs or {})
        channels = tuple(int(c) for c in channels)
        strides = tuple(int(s) for s in strides)
        if len(channels) < 2:
            raise ValueError(f"channels needs at least 2 levels, got {channels}")
        if len(strides) != len(channels) - 1:
            raise ValueError(f"strides needs len(channels) - 1 = {len(channels) - 1} entries, got {strides}")
        norm, act = _layer_spec(norm), _layer_spec(act)
        self._config: dict[str, Any] = {
            "in_channels": in_channels,
            "out_channels": out_channels,
            "channels": channels,
            "strides": strides,
            "num_res_units": num_res_units,
            "attention": attention,
            "attention_kwargs": attention_kwargs,
            "norm": norm,
            "act": act,
            "dropout": dropout,
            "kernel_size": kernel_size,
            "up_kernel_size": up_kernel_size,
        }
        self.attention = attention
        self.size_divisor = math.prod(strides)
        common = {"act": act, "norm": norm, "dropout": dropout}
        # Built in this order (encoder, decoder, attention) so that a seed gives every variant the baseline's weights.
        self.encoder = _encoder(in_channels, channels, strides, num_res_units, kernel_size, common)
        self.decoder = _decoder(out_channels, channels, strides, num_res_units, kernel_size, up_kernel_size, common)
        # Attention: the only modules the variants add.
        self.encoder_attention: nn.ModuleList | None = None
        self.skip_attention: nn.ModuleList | None = None
        try:
            if entry is not None and entry.site == "encoder":
                self.encoder_attention = nn.ModuleList(entry.block(3, c, **attention_kwargs) for c in channels)
            elif entry is not None and entry.site == "skip":
                self.skip_attention = _skip_attention(entry.block, channels, attention_kwargs)
        except TypeError as e:  # an option the block does not take
            raise ValueError(f"attention {attention!r} rejects attention_kwargs {attention_kwargs}: {e}") from None

    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments as a plain (JSON-safe) dict: ``AttentionUNet3D(**model.config)`` rebuilds it."""
        return _plain(self._config)

    def check_input_size(self, spatial_size: Sequence[int]) -> None:
        """Raise ValueError unless every spatial side is divisible by ``size_divisor`` (= prod(strides))."""
        if len(spatial_size) != 3 or any(int(s) % self.size_divisor for s in spatial_size):
            raise ValueError(
                f"input spatial size {tuple(int(s) for s in spatial_size)} must be 3 sides each divisible by "
                f"{self.size_divisor} (= product of strides {self._config['strides']}); pad or crop the patch"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: (batch, in_channels, D, H, W), each of D, H, W divisible by ``size_divisor``.

        Returns:
            logits, (batch, out_channels, D, H, W).
        """
        self.check_input_size(x.shape[2:])
        skips = []
        h = x
        for i, block in enumerate(self.encoder):
            h = block(h)
            if self.encoder_attention is not None:
                h = self.encoder_attention[i](h)
            skips.append(h)
        g = skips.pop()  # bottleneck output: the first decoder signal
        for i in reversed(range(len(self.decoder))):
            skip = skips[i]
            if self.skip_attention is not None:
                skip = self.skip_attention[i](g=g, x=skip)
            g = self.decoder[i](torch.cat([skip, g], dim=1))
        return g
