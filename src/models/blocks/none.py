"""The baseline's attention option: no attention module anywhere in the U-Net."""

SITE = None
BLOCK = None
