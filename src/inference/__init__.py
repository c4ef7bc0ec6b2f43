"""Inference: checkpoints that carry their own plan, whole-tomogram prediction, points and threshold tuning."""
