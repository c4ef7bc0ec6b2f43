"""The report as one function: runs -> statistics -> rendered files under the output folder."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import yaml

from src.report import figures, render, stats
from src.report.runs import class_columns, load_published, load_runs
from src.study import Study, size_label

CLAIMS_FILE = Path(__file__).with_name("paper_claims.yaml")
TABLES = {"s1": 3, "s2": 4}  # the paper's table number for each sample


def _value(frame: pd.DataFrame, cell: str, column: str):
    hit = frame.loc[frame["cell"] == cell, column] if column in frame else []
    return float(hit.iloc[0]) if len(hit) else None


def ran_label(runs: pd.DataFrame, cell: str, column: str, paper: tuple[int, ...], sep: str) -> str:
    """The paper's label of a configuration, plus what this run really used where that differs."""
    hit = runs.loc[runs["cell"] == cell, column] if column in runs else []
    ran = tuple(hit.iloc[0]) if len(hit) else tuple(paper)
    label = size_label(paper, sep)
    return label if ran == tuple(paper) else f"{label} (ran {size_label(ran, sep)})"


def table_rows(runs: pd.DataFrame, published: pd.DataFrame, study: Study, sample: str) -> list[dict]:
    """One row per grid cell of `sample` in the paper's order, ours (None if missing) beside the paper's."""
    rows = []
    for cell in (c for c in study.cells() if c.sample == sample):
        rows.append(
            {
                "cell": cell.name,
                "model": cell.model,
                "channels": ran_label(runs, cell.name, "channel_sizes", study.channels[cell.channels], "-"),
                "patch": ran_label(runs, cell.name, "patch_size", study.patches[cell.patch], "x"),
                "fbeta": _value(runs, cell.name, "fbeta"),
                "minutes": _value(runs, cell.name, "train_minutes"),
                "paper_fbeta": _value(published, cell.name, "fbeta"),
                "paper_minutes": _value(published, cell.name, "train_minutes"),
                "first_of_model": cell.channels == study.channel_keys[0] and cell.patch == study.patch_keys[0],
            }
        )
    return rows


def summary_rows(frame: pd.DataFrame, study: Study) -> list[dict]:
    summary = stats.model_summary(frame, study)
    return [{"model": m, "mean": r["mean"], "std": r["std"], "n": int(r["n"])} for m, r in summary.iterrows()]


def analysis(frame: pd.DataFrame, study: Study, s: stats.Settings) -> dict:
    """Every statistic the report shows for one frame (ours or the paper's)."""
    summary = summary_rows(frame, study)
    best = stats.best_model(stats.model_summary(frame, study))
    attention = stats.attention_vs_baseline(frame, study, s)
    patch = stats.patch_effect(frame, study, s)
    patch_steps = stats.patch_steps(frame, study, s)
    channels = stats.channel_effect(frame, study, s)
    return {
        "summary": summary,
        "ranking": sorted((r for r in summary if r["n"]), key=lambda r: -r["mean"]),
        "best": next((r for r in summary if r["model"] == best), None),
        "best_vs_baseline": next((c for c in attention if c.b == best), None),
        "attention": attention,
        "patch": patch,
        "patch_counts": dict(Counter(c.verdict for c in patch)),
        "patch_steps": patch_steps,
        "channels": channels,
        "channel_counts": dict(Counter(c.verdict for c in channels)),
        "time": stats.attention_vs_baseline(frame, study, s, value="train_minutes"),
    }


def paper_checks(published: pd.DataFrame, study: Study, claims: dict) -> dict:
    """The paper's text beside its own tables: stated means, and numbers the text quotes from a table."""
    means = stats.stated_vs_tables(published, study, claims["stated_means"])
    quotes = []
    for q in claims["text_quotes"]:
        base = f"{q['model']}-{q['channels']}-{{}}-{q['sample']}"
        quotes.append(
            {
                **q,
                "channels_label": size_label(study.channels[q["channels"]], "-"),
                "from_label": size_label(study.patches[q["from_patch"]]),
                "to_label": size_label(study.patches[q["to_patch"]]),
                "table": TABLES[q["sample"]],
                "table_from": _value(published, base.format(q["from_patch"]), "fbeta"),
                "table_to": _value(published, base.format(q["to_patch"]), "fbeta"),
            }
        )
    return {
        "means": [{"model": m, **r.to_dict()} for m, r in means.iterrows()],
        "quotes": quotes,
    }


def build_report(
    metrics_dir: str | Path,
    out: str | Path,
    report_params,
    study: Study,
    tracking_uri: str | None = None,
    make_figures: bool = True,
) -> list[Path]:
    """Read the runs the metrics files name, compute the statistics, write tables, text and figures; return paths."""
    out = Path(out)
    s = stats.Settings.from_params(report_params)
    d = report_params.decimals
    runs = load_runs(metrics_dir, study, tracking_uri)
    columns = class_columns(runs)
    published = load_published(study)
    claims = yaml.safe_load(CLAIMS_FILE.read_text())
    names = set(runs["cell"])
    common = {
        "d": d,
        "alpha": s.alpha,
        "conf": f"{100 * s.confidence:g}",
        "baseline": study.baseline,
        "models": list(study.model_keys),
        "n_cells": len(runs),
        "n_grid": len(study.cells()),
        "missing": [c.name for c in study.cells() if c.name not in names],
        "ours": analysis(runs, study, s),
        "paper": analysis(published, study, s),
        "checks": paper_checks(published, study, claims),
        "per_class": [
            {"model": m, "scores": [row[c] for c in columns]}
            for m, row in stats.per_class(runs, study, columns).iterrows()
        ],
        "classes": [c.split("/", 1)[1] for c in columns],
        "min_pairs": s.min_pairs,
        "bootstrap": s,
    }
    md, tex = render.markdown_env(), render.latex_env()
    written = []
    for sample, number in TABLES.items():
        rows = table_rows(runs, published, study, sample)
        table = {"sample_number": sample[1:], "table_number": number, "rows": rows, "d": d}
        table["present"] = sum(r["fbeta"] is not None for r in table["rows"])
        for env, template, suffix in ((md, "table.md.j2", "md"), (tex, "table.tex.j2", "tex")):
            path = out / f"table{number}.{suffix}"
            render.render_to(env, template, path, **table)
            written.append(path)
    for name in ("statistics.md", "published_statistics.md", "conclusions.md"):
        render.render_to(md, f"{name}.j2", out / name, **common)
        written.append(out / name)
    if make_figures:
        figures.fbeta_vs_patch(runs, study, out / "fbeta_vs_patch.png")
        figures.score_vs_minutes(runs, study, out / "score_vs_minutes.png")
        figures.per_class_scores(stats.per_class(runs, study, columns), study, out / "per_class.png")
        written += [out / "fbeta_vs_patch.png", out / "score_vs_minutes.png", out / "per_class.png"]
    return written
