"""Squeeze-and-Excitation channel attention (Hu et al. 2018)."""

from __future__ import annotations

from monai.networks.blocks.squeeze_and_excitation import ChannelSELayer

__all__ = ["SqueezeExcitation"]


class SqueezeExcitation(ChannelSELayer):
    """
    Squeeze-and-Excitation block of Hu et al., "Squeeze-and-Excitation Networks", CVPR 2018,
    https://arxiv.org/abs/1709.01507, as implemented by MONAI's
    :py:class:`monai.networks.blocks.ChannelSELayer` (this class only fixes the paper's activations and names the
    reduction argument)::

        z = GlobalAvgPool(x)                            # squeeze: (batch, C)
        s = sigmoid(W_2 ReLU(W_1 z))                    # excitation: FC C -> C/r -> C
        out = x * s                                     # channel-wise rescaling

    Args:
        spatial_dims: number of spatial dimensions.
        in_channels: number of channels C of the input (and output).
        reduction: reduction ratio r of the bottleneck, hidden width ``C // r`` (must be >= 1).
    """

    def __init__(self, spatial_dims: int, in_channels: int, reduction: int = 8) -> None:
        super().__init__(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            r=reduction,
            acti_type_1=("relu", {"inplace": True}),
            acti_type_2="sigmoid",
            add_residual=False,
        )


SITE = "encoder"  # where the U-Net places it (src/models/attention.py)
BLOCK = SqueezeExcitation
