"""Convolutional Block Attention Module, CBAM (Woo et al. 2018), for any number of spatial dimensions."""

from __future__ import annotations

import torch
import torch.nn as nn
from monai.networks.layers.factories import Conv, Pool

__all__ = ["CBAM", "ChannelAttention", "SpatialAttention"]


class ChannelAttention(nn.Module):
    """
    CBAM channel attention (Woo et al., "CBAM: Convolutional Block Attention Module", ECCV 2018,
    https://arxiv.org/abs/1807.06521, eq. 2)::

        M_c(x) = sigmoid(MLP(AvgPool(x)) + MLP(MaxPool(x)))     # ONE MLP C -> C/r -> C (ReLU), shared
        out    = x * M_c(x)

    Args:
        spatial_dims: number of spatial dimensions.
        in_channels: number of channels C.
        reduction: reduction ratio r of the shared MLP, hidden width ``C // r`` (must be >= 1).
    """

    def __init__(self, spatial_dims: int, in_channels: int, reduction: int = 8) -> None:
        super().__init__()
        hidden = in_channels // reduction
        if reduction <= 0 or hidden <= 0:
            raise ValueError(f"reduction must be in [1, in_channels], got reduction={reduction} for {in_channels}.")
        self.avg_pool = Pool[Pool.ADAPTIVEAVG, spatial_dims](1)
        self.max_pool = Pool[Pool.ADAPTIVEMAX, spatial_dims](1)
        self.mlp = nn.Sequential(
            nn.Linear(in_channels, hidden, bias=True),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, in_channels, bias=True),
        )
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        avg = self.mlp(self.avg_pool(x).reshape(b, c))
        mx = self.mlp(self.max_pool(x).reshape(b, c))
        weights = self.sigmoid(avg + mx).reshape([b, c] + [1] * (x.ndim - 2))
        return x * weights


class SpatialAttention(nn.Module):
    """
    CBAM spatial attention (Woo et al. 2018, eq. 3)::

        M_s(x) = sigmoid(conv_k([mean_c(x); max_c(x)]))         # 2 -> 1 channels, k x k x k kernel, no bias
        out    = x * M_s(x)

    The paper's formula has no normalisation after the convolution; neither has this block.

    Args:
        spatial_dims: number of spatial dimensions.
        kernel_size: odd kernel size of the convolution (the paper's 7), "same" zero padding.
    """

    def __init__(self, spatial_dims: int, kernel_size: int = 7) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}.")
        self.conv = Conv[Conv.CONV, spatial_dims](2, 1, kernel_size=kernel_size, padding=kernel_size // 2, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        descriptors = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * self.sigmoid(self.conv(descriptors))


class CBAM(nn.Module):
    """
    Convolutional Block Attention Module of Woo et al., "CBAM: Convolutional Block Attention Module", ECCV 2018,
    https://arxiv.org/abs/1807.06521: channel attention, then spatial attention, applied sequentially (the paper's
    best arrangement)::

        x' = x * M_c(x);   out = x' * M_s(x')

    MONAI has no CBAM; this is written from the paper, generalised to ``spatial_dims`` (3-D here: global average and
    max pooling over D, H, W and a 7x7x7 spatial convolution).

    Args:
        spatial_dims: number of spatial dimensions.
        in_channels: number of channels C of the input (and output).
        reduction: reduction ratio r of the channel MLP (hidden width ``C // r``).
        kernel_size: kernel size of the spatial-attention convolution.
    """

    def __init__(self, spatial_dims: int, in_channels: int, reduction: int = 8, kernel_size: int = 7) -> None:
        super().__init__()
        self.channel = ChannelAttention(spatial_dims, in_channels, reduction)
        self.spatial = SpatialAttention(spatial_dims, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))


SITE = "encoder"  # where the U-Net places it (src/models/attention.py)
BLOCK = CBAM
