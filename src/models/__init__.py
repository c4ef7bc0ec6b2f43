"""3-D U-Net baseline and its attention variants (AG, SE, CBAM) as one network family."""

from src.models.factory import MODEL_ATTENTION, MODEL_NAMES, build_model, model_from_config, model_name
from src.models.unet import ATTENTION_OPTIONS, AttentionUNet3D

__all__ = [
    "ATTENTION_OPTIONS",
    "MODEL_ATTENTION",
    "MODEL_NAMES",
    "AttentionUNet3D",
    "build_model",
    "model_from_config",
    "model_name",
]
