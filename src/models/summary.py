"""Size and cost of the study's models: parameters, multiply-adds per patch, training memory."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from src.models.factory import build_model

__all__ = ["count_gmacs", "format_model_table", "model_table", "saved_activation_bytes"]

MIB = 2**20
PatchSize = tuple[int, int, int]


def _size_label(patch: Sequence[int]) -> str:
    return "x".join(str(int(s)) for s in patch)


def count_gmacs(model: nn.Module, patch_size: Sequence[int], in_channels: int = 1) -> float:
    """
    Forward multiply-accumulates, in units of 1e9, of one batch-1 patch.

    Counted with ``torch.utils.flop_counter.FlopCounterMode``, which counts 2 FLOPs per multiply-add of the
    convolutions, transposed convolutions and matrix products (the SE/CBAM MLPs); MACs = FLOPs / 2. Element-wise work
    (normalisation, activations, sigmoid gating, pooling) is not counted, as is usual for MAC counts.
    """
    x = torch.zeros(1, in_channels, *patch_size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() / 2 / 1e9


def saved_activation_bytes(model: nn.Module, patch_size: Sequence[int], in_channels: int = 1) -> int:
    """
    Bytes of the tensors autograd saves for backward in one training step (fp32, batch 1, train mode): the forward
    pass on one ``patch_size`` patch plus a cross-entropy loss on its logits.

    Every tensor handed to ``torch.autograd.graph.saved_tensors_hooks`` is reduced to its storage and each storage is
    counted once (views and tensors saved by several ops share one); storages of the model's parameters are left
    out, the input patch is included. This is the activation memory that must live from the forward pass until the
    backward pass, i.e. the dominant term of training memory, not including the transient buffers of individual
    kernels or the gradients being built during backward.
    """
    param_storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in param_storages:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    was_training = model.training
    model.train()
    x = torch.randn(1, in_channels, *patch_size)
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            logits = model(x)
            target = torch.zeros((1, *patch_size), dtype=torch.long)
            loss = F.cross_entropy(logits, target)
        del loss, logits
    finally:
        model.train(was_training)
    return sum(storages.values())


def model_table(
    models: Mapping[str, Any],
    patch_sizes: Sequence[PatchSize],
    channel_configs: Sequence[Sequence[int]],
    network: Mapping[str, Any] | None = None,
    out_channels: int = 7,
    seed: int = 0,
) -> pd.DataFrame:
    """
    One row per model x channel configuration. `models` maps a name to its ``attention`` and ``attention_kwargs``
    (the study's ``study.models``); `network` is the shared backbone layout (``train.network``). The columns:

    - ``model``, ``channels``: model name and channel configuration;
    - ``params``: number of parameters (``sum(p.numel())``);
    - ``attention_params``: parameters of the attention modules only (``params`` minus the shared backbone's);
    - ``GMACs@DxHxW``: forward multiply-adds (1e9) of one batch-1 patch of that size, see :func:`count_gmacs`;
    - ``saved_act_MiB@DxHxW`` (largest patch only): activations autograd saves for backward in one fp32 batch-1
      training step, see :func:`saved_activation_bytes`;
    - ``param_grad_adam_MiB``: fp32 parameters + gradients + Adam's two moment buffers (4 x 4 bytes/parameter).

    Takes 12-45 s for the default setting on 2 shared CPU cores (the memory column runs 8 real forward passes on the
    largest patch).
    """
    largest = max(patch_sizes, key=lambda p: p[0] * p[1] * p[2])
    rows = []
    for channels in channel_configs:
        for name in models:
            torch.manual_seed(seed)
            spec = models[name]
            model = build_model(spec.attention, channels, out_channels, spec.attention_kwargs, **dict(network or {}))
            n_params = sum(p.numel() for p in model.parameters())
            n_attention = sum(p.numel() for key, p in model.named_parameters() if "attention" in key)
            row = {
                "model": name,
                "channels": "-".join(str(c) for c in channels),
                "params": n_params,
                "attention_params": n_attention,
            }
            model.eval()
            for patch in patch_sizes:
                row[f"GMACs@{_size_label(patch)}"] = count_gmacs(model, patch)
            row[f"saved_act_MiB@{_size_label(largest)}"] = saved_activation_bytes(model, largest) / MIB
            row["param_grad_adam_MiB"] = 4 * 4 * n_params / MIB
            rows.append(row)
    return pd.DataFrame(rows)


def format_model_table(df: pd.DataFrame) -> str:
    """Render :func:`model_table`'s frame as a Markdown table (parameters with thousands separators)."""
    columns = list(df.columns)
    cells = []
    for _, row in df.iterrows():
        line = []
        for column in columns:
            value = row[column]
            if column in ("params", "attention_params"):
                line.append(f"{int(value):,}")
            elif isinstance(value, float):
                line.append(f"{value:.2f}" if column.startswith("GMACs") else f"{value:.1f}")
            else:
                line.append(str(value))
        cells.append(line)
    numeric = [column not in ("model", "channels") for column in columns]
    widths = [max(len(column), *(len(line[j]) for line in cells)) for j, column in enumerate(columns)]

    def render(values: Sequence[str]) -> str:
        padded = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "| " + " | ".join(padded) + " |"

    aligns = [("-" * (w + 1) + ":") if num else (":" + "-" * (w + 1)) for w, num in zip(widths, numeric, strict=True)]
    rule = "|" + "|".join(aligns) + "|"
    notes = (
        "\nGMACs: forward multiply-adds (1e9) of one batch-1 patch, = FLOPs / 2 from torch FlopCounterMode "
        "(convolutions and linear layers). saved_act_MiB: activations autograd saves for backward in one fp32 "
        "batch-1 training step (forward + cross-entropy). param_grad_adam_MiB: fp32 weights + grads + Adam moments."
    )
    return "\n".join([render(columns), rule, *(render(line) for line in cells)]) + "\n" + notes
