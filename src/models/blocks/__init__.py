"""Attention blocks: one per file, named by the attention option that params.yaml gives (src/models/attention.py
loads a model's block by that name). Each file sets SITE and BLOCK."""
