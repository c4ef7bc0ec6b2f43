"""The report's figures (PNG, matplotlib Agg): each function takes the tidy runs frame and a target path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from src.atomic import atomic_output  # noqa: E402
from src.study import Study, size_label  # noqa: E402

LINE_STYLES = ("-", "--", ":", "-.")  # one per channel config, in the study's order
MARKERS = ("o", "s", "^", "D")  # one per sample


def _footer(fig, source: str | None) -> None:
    """The data-source line under the figure (below everything the layout placed; `bbox_inches="tight"` keeps it)."""
    if source:
        width = int(fig.get_figwidth() * 15)  # characters per line at 7 pt
        fig.text(0.01, 0.0, textwrap.fill(source, width), ha="left", va="top", fontsize=7, color="0.3")


def _legend_outside(fig, ax, **kwargs) -> None:
    """The legend right of the axes, so it never covers data."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=8, **kwargs)


def _save(fig, path: Path) -> None:
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def _patch_tick(df: pd.DataFrame, study: Study, patch: str) -> str:
    """The paper's patch label, and the size this run trained under that key where it differs (demo profile)."""
    paper = study.patches[patch]
    ran = sorted(set(df.loc[df["patch"] == patch, "patch_size"])) if "patch_size" in df else []
    ran = [size_label(r) for r in ran if tuple(r) != tuple(paper)]
    return size_label(paper) + (f"\n(ran {', '.join(ran)})" if ran else "")


def _style(study: Study, channels: str) -> str:
    return LINE_STYLES[study.channel_keys.index(channels) % len(LINE_STYLES)]


def _error_bars(rows: pd.DataFrame, y: np.ndarray) -> np.ndarray | None:
    """(2, n) distances from each score to its interval's ends (`low`, `high`; 0 where a cell has none), or None
    when no cell has an interval."""
    if "low" not in rows or rows["low"].isna().all():
        return None
    low, high = rows["low"].to_numpy(float), rows["high"].to_numpy(float)
    return np.nan_to_num(np.vstack([y - low, high - y]), nan=0.0).clip(min=0)


def fbeta_vs_patch(df: pd.DataFrame, study: Study, path: Path, source: str | None = None) -> None:
    """Test F-beta against patch size, one line per model and channel config, one panel per sample; `source` names
    the data under the figure."""
    fig, axes = plt.subplots(1, len(study.samples), figsize=(12, 4.6), sharey=True, squeeze=False, layout="constrained")
    axes = axes[0]
    x = np.arange(len(study.patch_keys))
    for ax, sample in zip(axes, study.samples, strict=True):
        for model in study.model_keys:
            for channels in study.channel_keys:
                sub = df[(df["sample"] == sample) & (df["model"] == model) & (df["channels"] == channels)]
                y = sub.set_index("patch")["fbeta"].reindex(list(study.patch_keys)).to_numpy(float)
                if np.isnan(y).all():
                    continue
                style = _style(study, channels)
                # offsets keep the lines' error bars apart (models, then channel configs within a model)
                n_models, n_channels = len(study.model_keys), len(study.channel_keys)
                slot = study.model_keys.index(model) * n_channels + study.channel_keys.index(channels)
                shift = 0.5 * (slot / max(n_models * n_channels - 1, 1) - 0.5)
                ax.errorbar(
                    x + shift,
                    y,
                    yerr=_error_bars(sub.set_index("patch").reindex(list(study.patch_keys)), y),
                    fmt=style,
                    marker="o",
                    capsize=2,
                    color=study.color(model),
                    label=f"{model} {channels}",
                )
        ax.set_xticks(x, [_patch_tick(df, study, p) for p in study.patch_keys])
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
    fig.legend(handles, labels, loc="outside right upper", fontsize=8)
    styles = {"-": "solid", "--": "dashed", ":": "dotted", "-.": "dash-dot"}
    legend = " / ".join(f"{styles[_style(study, c)]}: {size_label(s, '-')}" for c, s in study.channels.items())
    fig.suptitle(f"F-beta vs patch size\nchannels {legend}; bars: interval over test tomograms")
    _footer(fig, source)
    _save(fig, path)


def score_vs_minutes(df: pd.DataFrame, study: Study, path: Path, source: str | None = None) -> None:
    """Test F-beta against training minutes, one colour per model, one marker per sample."""
    fig, ax = plt.subplots(figsize=(8, 4.8), layout="constrained")
    markers = {s: MARKERS[i % len(MARKERS)] for i, s in enumerate(study.samples)}
    for model in study.model_keys:
        for sample in study.samples:
            sub = df[(df["model"] == model) & (df["sample"] == sample)]
            if len(sub):
                ax.errorbar(
                    sub["train_minutes"],
                    sub["fbeta"],
                    yerr=_error_bars(sub, sub["fbeta"].to_numpy(float)),
                    fmt=markers[sample],
                    capsize=2,
                    color=study.color(model),
                    label=f"{model} {sample}",
                )
    ax.set_xlabel("training minutes")
    ax.set_ylabel("test F-beta (beta = 4)")
    ax.set_title("Score vs training cost (bars: interval over test tomograms)")
    ax.grid(alpha=0.3)
    _legend_outside(fig, ax)
    _footer(fig, source)
    _save(fig, path)


def per_class_scores(table: pd.DataFrame, study: Study, path: Path, source: str | None = None) -> None:
    """Grouped bars: mean per-class test F-beta (columns of `table`) per model (rows of `table`)."""
    fig, ax = plt.subplots(figsize=(9, 4), layout="constrained")
    classes = list(table.columns)
    x = np.arange(len(classes))
    width = 0.8 / max(len(table), 1)
    for i, (model, row) in enumerate(table.iterrows()):
        ax.bar(
            x + (i - (len(table) - 1) / 2) * width, row.to_numpy(float), width, label=model, color=study.color(model)
        )
    ax.set_xticks(x, [c.split("/", 1)[-1] for c in classes], rotation=20)
    ax.set_ylabel("mean test F-beta over cells")
    ax.set_title("Per-class test F-beta per model")
    ax.set_ylim(0, 1.1)
    ax.legend(fontsize=8, ncols=len(table), loc="upper center")
    ax.grid(axis="y", alpha=0.3)
    _footer(fig, source)
    _save(fig, path)
