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
CHANNEL_MARKERS = ("o", "s", "^", "D")  # one per channel config too, so that a legend entry tells them apart
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


def _patch_tick(study: Study, patch: str, label: str) -> str:
    """The patch key with the size its cells trained (`label`, e.g. "p64 (trained 16x32x32)"), and the paper's size
    where that differs (the demo trains a fraction of it under the paper's key)."""
    paper = size_label(study.patches[patch])
    return label.replace(" (", "\n(", 1) + ("" if paper in label else f"\npaper: {paper}")


def _style(study: Study, channels: str) -> str:
    return LINE_STYLES[study.channel_keys.index(channels) % len(LINE_STYLES)]


def _channel_marker(study: Study, channels: str) -> tuple[str, bool]:
    """(marker, filled) of a channel config: filled circles for the first, hollow squares for the second, ..."""
    i = study.channel_keys.index(channels)
    return CHANNEL_MARKERS[i % len(CHANNEL_MARKERS)], i % 2 == 0


def _error_bars(rows: pd.DataFrame, y: np.ndarray) -> np.ndarray | None:
    """(2, n) distances from each score to its interval's ends (`low`, `high`; 0 where a cell has none), or None
    when no cell has an interval."""
    if "low" not in rows or rows["low"].isna().all():
        return None
    low, high = rows["low"].to_numpy(float), rows["high"].to_numpy(float)
    return np.nan_to_num(np.vstack([y - low, high - y]), nan=0.0).clip(min=0)


def fbeta_vs_patch(
    df: pd.DataFrame, study: Study, path: Path, source: str | None = None, labels: dict[str, str] | None = None
) -> None:
    """Test F-beta against patch size, one line per model and channel config (colour: model; line style, marker
    and fill: channels), one panel per sample; `source` names the data under the figure, `labels` each patch key
    with the size it trained."""
    labels = labels or {p: p for p in study.patch_keys}
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
                marker, filled = _channel_marker(study, channels)
                # offsets keep the lines' error bars apart (models, then channel configs within a model)
                n_models, n_channels = len(study.model_keys), len(study.channel_keys)
                slot = study.model_keys.index(model) * n_channels + study.channel_keys.index(channels)
                shift = 0.5 * (slot / max(n_models * n_channels - 1, 1) - 0.5)
                ax.errorbar(
                    x + shift,
                    y,
                    yerr=_error_bars(sub.set_index("patch").reindex(list(study.patch_keys)), y),
                    fmt=style,
                    marker=marker,
                    markerfacecolor=None if filled else "white",
                    capsize=2,
                    color=study.color(model),
                    label=f"{model} {channels}",
                )
        ax.set_xticks(x, [_patch_tick(study, p, labels[p]) for p in study.patch_keys])
        ax.set_title(f"sample {sample[1:]}")
        ax.set_xlabel("patch size trained (D x H x W)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test F-beta (beta = 4)")
    handles, names = [], []
    for ax in axes:
        for h, name in zip(*ax.get_legend_handles_labels(), strict=True):
            if name not in names:
                handles.append(h)
                names.append(name)
    # long handles, so that the line style shows beside the marker; centred, so that it stays clear of the title
    fig.legend(handles, names, loc="outside right center", fontsize=8, handlelength=3.5)
    styles = {"-": "solid", "--": "dashed", ":": "dotted", "-.": "dash-dot"}
    shapes = {"o": "circle", "s": "square", "^": "triangle", "D": "diamond"}
    legend = "; ".join(
        f"{c} = {size_label(s, '-')}: {styles[_style(study, c)]} line, "
        f"{'filled' if _channel_marker(study, c)[1] else 'hollow'} {shapes[_channel_marker(study, c)[0]]}"
        for c, s in study.channels.items()
    )
    fig.suptitle(f"F-beta vs patch size (bars: interval over test tomograms)\nchannels {legend}", fontsize=11)
    _footer(fig, source)
    _save(fig, path)


def score_vs_minutes(
    df: pd.DataFrame,
    study: Study,
    path: Path,
    source: str | None = None,
    elsewhere: frozenset[str] = frozenset(),
    machines: list | None = None,
) -> None:
    """Test F-beta against training minutes, one colour per model, one marker per sample. When the runs come from
    several machines (`machines`, largest group first), configurations with a run off the first one (`elsewhere`)
    are drawn hollow and the title says that minutes are not comparable across machines."""
    fig, ax = plt.subplots(figsize=(8, 4.8), layout="constrained")
    markers = {s: MARKERS[i % len(MARKERS)] for i, s in enumerate(study.samples)}
    for model in study.model_keys:
        for sample in study.samples:
            sub = df[(df["model"] == model) & (df["sample"] == sample)]
            away = sub["cell"].isin(elsewhere)
            for part, hollow in ((sub[~away], False), (sub[away], True)):
                if not len(part):
                    continue
                ax.errorbar(
                    part["train_minutes"],
                    part["fbeta"],
                    yerr=_error_bars(part, part["fbeta"].to_numpy(float)),
                    fmt=markers[sample],
                    capsize=2,
                    color=study.color(model),
                    markerfacecolor="white" if hollow else None,
                    label=None if hollow and (~away).any() else f"{model} {sample}",
                )
    title = "Score vs training cost (bars: interval over test tomograms)"
    if machines and len(machines) > 1:
        title += f"\nminutes from {len(machines)} machines, not comparable across them"
        ax.plot([], [], "o", color="0.3", markerfacecolor="white", label=f"hollow: a run not on\n{machines[0].label}")
    ax.set_xlabel("training minutes")
    ax.set_ylabel("test F-beta (beta = 4)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    _legend_outside(fig, ax)
    _footer(fig, source)
    _save(fig, path)


def per_class_scores(
    table: pd.DataFrame,
    study: Study,
    path: Path,
    source: str | None = None,
    intervals: tuple[np.ndarray, np.ndarray] | None = None,
    weights: dict[str, float] | None = None,
) -> None:
    """Grouped bars: mean per-class test F-beta (columns of `table`) per model (rows of `table`), with each bar's
    interval over the test tomograms (`intervals`: low and high arrays shaped as `table`) and each class's weight in
    the score under its name (a class of weight 0 is hatched: it counts for nothing)."""
    fig, ax = plt.subplots(figsize=(9, 4.4), layout="constrained")
    classes = [c.split("/", 1)[-1] for c in table.columns]
    weights = weights or {}
    x = np.arange(len(classes))
    width = 0.8 / max(len(table), 1)
    for i, (model, row) in enumerate(table.iterrows()):
        y = row.to_numpy(float)
        errors = None
        if intervals is not None:
            low, high = intervals[0][i], intervals[1][i]
            errors = np.nan_to_num(np.vstack([y - low, high - y]), nan=0.0).clip(min=0)
        bars = ax.bar(
            x + (i - (len(table) - 1) / 2) * width,
            y,
            width,
            yerr=errors,
            capsize=2,
            error_kw={"elinewidth": 0.8, "ecolor": "0.2"},
            label=model,
            color=study.color(model),
        )
        for bar, name in zip(bars, classes, strict=True):
            if weights.get(name, 1.0) == 0:
                bar.set_hatch("//")
                bar.set_alpha(0.45)
    ticks = [f"{c}\nweight {weights[c]:g}" + (" (not scored)" if weights[c] == 0 else "") if c in weights else c
             for c in classes]  # fmt: skip
    ax.set_xticks(x, ticks, fontsize=8)
    ax.set_ylabel("mean test F-beta over cells")
    bars_note = " (whiskers: interval over test tomograms)" if intervals is not None else ""
    ax.set_title(f"Per-class test F-beta per model{bars_note}")
    ax.set_ylim(0, 1.15)
    ax.legend(fontsize=8, ncols=len(table), loc="upper center")
    ax.grid(axis="y", alpha=0.3)
    _footer(fig, source)
    _save(fig, path)
