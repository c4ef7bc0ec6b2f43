"""Additive attention gate on a U-Net skip connection (Oktay et al. 2018)."""

from __future__ import annotations

import torch
from monai.networks.nets.attentionunet import AttentionBlock

__all__ = ["AttentionGate"]


class AttentionGate(AttentionBlock):
    """
    Additive attention gate of Oktay et al., "Attention U-Net: Learning Where to Look for the Pancreas", MIDL 2018,
    https://arxiv.org/abs/1804.03999, as implemented by MONAI's
    :py:class:`monai.networks.nets.attentionunet.AttentionBlock` (this class only gives it named arguments, checks
    and documents the shapes)::

        q     = ReLU(BN(W_x * x) + BN(W_g * g))        # 1x1x1 convolutions to `inter_channels`
        alpha = sigmoid(BN(psi * q))                    # one coefficient per voxel, in (0, 1)
        out   = x * alpha                               # the gated skip features

    Resolution: the gating signal ``g`` must already have the skip's spatial size. In the U-Net it is the decoder
    signal coming up from the coarser level *after* that level's upsampling (transposed convolution), or the
    bottleneck output for the deepest skip (the bottleneck does not downsample). This is the variant of Oktay's gate
    used by MONAI's ``AttentionUnet``; Oktay's original instead takes ``g`` at the coarser resolution, downsamples
    ``x`` with a strided ``W_x`` and resamples ``alpha`` back up, which differs only in where the resampling happens.
    Like MONAI, the gate uses batch normalisation regardless of the backbone's normalisation.

    Args:
        spatial_dims: number of spatial dimensions.
        in_channels: channels of the skip features ``x`` (F_l in the paper); the output has the same.
        gating_channels: channels of the gating signal ``g`` (F_g).
        inter_channels: channels of the intermediate space (F_int). Defaults to ``in_channels // 2`` (as MONAI).
        dropout: dropout ratio inside the three 1x1x1 convolutions. Defaults to none.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        gating_channels: int,
        inter_channels: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        inter_channels = inter_channels if inter_channels is not None else max(1, in_channels // 2)
        super().__init__(
            spatial_dims=spatial_dims, f_int=inter_channels, f_g=gating_channels, f_l=in_channels, dropout=dropout
        )

    def forward(self, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            g: gating signal, shape (batch, gating_channels, *spatial), same spatial size as ``x``.
            x: skip features, shape (batch, in_channels, *spatial).

        Returns:
            ``x`` scaled voxel-wise by the attention coefficients, shape of ``x``.
        """
        if g.shape[2:] != x.shape[2:]:
            raise ValueError(f"gating signal spatial size {tuple(g.shape[2:])} != skip size {tuple(x.shape[2:])}")
        return super().forward(g=g, x=x)


SITE = "skip"  # where the U-Net places it (src/models/attention.py)
BLOCK = AttentionGate
