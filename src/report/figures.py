"""The report's figures (PNG, matplotlib Agg): each function takes the tidy runs frame and a target path."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from src.atomic import atomic_output  # noqa: E402
from src.training.cells import CHANNEL_KEYS, MODELS, PAPER_CHANNELS, PAPER_PATCHES, PATCH_KEYS, SAMPLE_KEYS  # noqa: E402

COLORS = dict(zip(MODELS, ("tab:gray", "tab:blue", "tab:orange", "tab:green"), strict=True))
STYLES = dict(zip(CHANNEL_KEYS, ("-", "--"), strict=True))


def _save(fig, path: Path) -> None:
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def _patch_tick(df: pd.DataFrame, patch: str) -> str:
    """The paper's patch label, and the size this run trained under that key where it differs (demo profile)."""
    ran = sorted(set(df.loc[df["patch"] == patch, "patch_size"])) if "patch_size" in df else []
    ran = [r for r in ran if r != PAPER_PATCHES[patch]]
    return PAPER_PATCHES[patch] + (f"\n(ran {', '.join(ran)})" if ran else "")


def fbeta_vs_patch(df: pd.DataFrame, path: Path) -> None:
    """Test F-beta against patch size, one line per model and channel config, one panel per sample."""
    fig, axes = plt.subplots(1, len(SAMPLE_KEYS), figsize=(11, 4), sharey=True)
    x = np.arange(len(PATCH_KEYS))
    for ax, sample in zip(axes, SAMPLE_KEYS, strict=True):
        for model in MODELS:
            for channels in CHANNEL_KEYS:
                sub = df[(df["sample"] == sample) & (df["model"] == model) & (df["channels"] == channels)]
                y = sub.set_index("patch")["fbeta"].reindex(list(PATCH_KEYS)).to_numpy(float)
                if np.isnan(y).all():
                    continue
                ax.plot(x, y, STYLES[channels], marker="o", color=COLORS[model], label=f"{model} {channels}")
        ax.set_xticks(x, [_patch_tick(df, p) for p in PATCH_KEYS])
        ax.set_title(f"sample {sample[1:]}")
        ax.set_xlabel("patch size (D x H x W)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test F-beta (beta = 4)")
    handles, labels = [], []
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(h)
                labels.append(label)
    axes[-1].legend(handles, labels, loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
    fig.suptitle("F-beta vs patch size (solid: channels " + " / dashed: ".join(PAPER_CHANNELS.values()) + ")")
    _save(fig, path)


def score_vs_minutes(df: pd.DataFrame, path: Path) -> None:
    """Test F-beta against training minutes, one colour per model, one marker per sample."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    markers = dict(zip(SAMPLE_KEYS, ("o", "s"), strict=True))
    for model in MODELS:
        for sample in SAMPLE_KEYS:
            sub = df[(df["model"] == model) & (df["sample"] == sample)]
            if len(sub):
                ax.scatter(
                    sub["train_minutes"],
                    sub["fbeta"],
                    color=COLORS[model],
                    marker=markers[sample],
                    label=f"{model} {sample}",
                )
    ax.set_xlabel("training minutes")
    ax.set_ylabel("test F-beta (beta = 4)")
    ax.set_title("Score vs training cost")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def per_class_scores(table: pd.DataFrame, path: Path) -> None:
    """Grouped bars: mean per-class test F-beta (columns of `table`) per model (rows of `table`)."""
    fig, ax = plt.subplots(figsize=(9, 4))
    classes = list(table.columns)
    x = np.arange(len(classes))
    width = 0.8 / max(len(table), 1)
    for i, (model, row) in enumerate(table.iterrows()):
        ax.bar(x + (i - (len(table) - 1) / 2) * width, row.to_numpy(float), width, label=model, color=COLORS.get(model))
    ax.set_xticks(x, [c.split("/", 1)[-1] for c in classes], rotation=20)
    ax.set_ylabel("mean test F-beta over cells")
    ax.set_title("Per-class test F-beta per model")
    ax.set_ylim(0, 1.1)
    ax.legend(fontsize=8, ncols=len(table), loc="upper center")
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)
