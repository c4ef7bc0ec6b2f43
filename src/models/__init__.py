"""3-D U-Net baseline and its attention variants (AG, SE, CBAM, or any registered block) as one network family."""

from src.models.attention import attention_names, register_attention
from src.models.factory import build_model, model_from_config
from src.models.unet import AttentionUNet3D

__all__ = ["AttentionUNet3D", "attention_names", "build_model", "model_from_config", "register_attention"]
