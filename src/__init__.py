"""Attention 3D U-Nets for particle picking in cryo-ET: data, models, training, inference, report."""
