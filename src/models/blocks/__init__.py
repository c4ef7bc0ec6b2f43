"""Attention blocks: one per file, each a small module that maps features to same-shaped, reweighted features."""

from src.models.blocks.attention_gate import AttentionGate
from src.models.blocks.cbam import CBAM, ChannelAttention, SpatialAttention
from src.models.blocks.squeeze_excitation import SqueezeExcitation

__all__ = ["CBAM", "AttentionGate", "ChannelAttention", "SpatialAttention", "SqueezeExcitation"]
