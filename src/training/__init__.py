"""Training: transforms, one grid cell, and the MLflow store."""
