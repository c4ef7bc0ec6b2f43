"""The report as one function: runs -> statistics -> rendered files under the output folder."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from pathlib import Path

import pandas as pd
import yaml

from src.atomic import check_updatable, updated_folder
from src.classes import SCORE_WEIGHTS
from src.errors import UserError
from src.report import figures, render, stats
from src.report.machines import machine_groups, machine_labels, machine_note, runs_count
from src.report.runs import class_columns, load_published, load_runs
from src.study import Study, size_label

CLAIMS_FILE = Path(__file__).with_name("paper_claims.yaml")
TABLES = {"s1": 3, "s2": 4}  # the paper's table number for each sample


def _value(frame: pd.DataFrame, cell: str, column: str):
    hit = frame.loc[frame["cell"] == cell, column] if column in frame else []
    return float(hit.iloc[0]) if len(hit) else None


def ran_label(runs: pd.DataFrame, cell: str, column: str, paper: tuple[int, ...], sep: str) -> str:
    """The paper's label of a configuration, plus what this run really trained where that differs."""
    hit = runs.loc[runs["cell"] == cell, column] if column in runs else []
    ran = tuple(hit.iloc[0]) if len(hit) else tuple(paper)
    label = size_label(paper, sep)
    return label if ran == tuple(paper) else f"{label} (trained {size_label(ran, sep)})"


def trained_patches(frame: pd.DataFrame, study: Study, patch: str) -> list[str]:
    """The patch sizes the cells of key `patch` trained (the paper's where no run says), e.g. ["16x32x32"]."""
    sizes = frame.loc[frame["patch"] == patch, "patch_size"] if "patch_size" in frame else []
    return sorted({size_label(p) for p in sizes}) or [size_label(study.patches[patch])]


def patch_labels(frame: pd.DataFrame, study: Study) -> dict[str, str]:
    """Each patch key with the sizes its cells trained, for every comparison's label: {"p64": "p64 (trained
    16x32x32)"}; the demo trains a fraction of the paper's size under the paper's key (train.patch_scale)."""
    return {p: f"{p} (trained {', '.join(trained_patches(frame, study, p))})" for p in study.patch_keys}


def patch_rows(frame: pd.DataFrame, study: Study) -> list[dict]:
    """Each patch key with the sizes its cells trained and the paper's size (`same`: they agree)."""
    rows = []
    for key, paper in study.patches.items():
        trained = ", ".join(trained_patches(frame, study, key))
        rows.append({"key": key, "trained": trained, "paper": size_label(paper), "same": trained == size_label(paper)})
    return rows


def paper_patch_labels(study: Study) -> dict[str, str]:
    """The same for the paper's tables, at the paper's sizes: {"p64": "p64 (32x64x64)"}."""
    return {p: f"{p} ({size_label(sizes)})" for p, sizes in study.patches.items()}


def table_rows(
    runs: pd.DataFrame, published: pd.DataFrame, study: Study, sample: str, elsewhere: frozenset[str] = frozenset()
) -> list[dict]:
    """One row per grid cell of `sample` in the paper's order, ours (None if missing) beside the paper's; `runs` has
    one row per configuration (seeds averaged) with its test-tomogram interval in `low` and `high`. `elsewhere`: the
    configurations with a run on another machine than the largest group's (their minutes are marked)."""
    rows = []
    for cell in (c for c in study.configurations() if c.sample == sample):
        rows.append(
            {
                "cell": cell.name,
                "model": cell.model,
                "channels": ran_label(runs, cell.name, "channel_sizes", study.channels[cell.channels], "-"),
                "patch": ran_label(runs, cell.name, "patch_size", study.patches[cell.patch], "x"),
                "fbeta": _value(runs, cell.name, "fbeta"),
                "low": _value(runs, cell.name, "low"),
                "high": _value(runs, cell.name, "high"),
                "seeds": int(_value(runs, cell.name, "seeds") or 0),
                "minutes": _value(runs, cell.name, "train_minutes"),
                "other_machine": cell.name in elsewhere,
                "paper_fbeta": _value(published, cell.name, "fbeta"),
                "paper_minutes": _value(published, cell.name, "train_minutes"),
                "first_of_model": cell.channels == study.channel_keys[0] and cell.patch == study.patch_keys[0],
            }
        )
    return rows


def summary_rows(frame: pd.DataFrame, study: Study) -> list[dict]:
    summary = stats.model_summary(frame, study)
    return [{"model": m, "mean": r["mean"], "std": r["std"], "n": int(r["n"])} for m, r in summary.iterrows()]


def with_classes(family: list[stats.Paired], frame: pd.DataFrame, scoring: stats.Scoring) -> list[stats.Paired]:
    """Model comparisons with the classes that carry each difference (`stats.class_shares`; none without per-class
    scores, e.g. on the paper's tables)."""
    columns = class_columns(frame)
    keys = ["channels", "patch", "sample"]
    return [
        dataclasses.replace(c, classes=stats.class_shares(frame, c, keys, columns, scoring)) if c.computed else c
        for c in family
    ]


def analysis(
    frame: pd.DataFrame,
    study: Study,
    s: stats.Settings,
    scoring: stats.Scoring | None = None,
    timed: pd.DataFrame | None = None,
) -> dict:
    """Every statistic the report shows for one frame (ours or the paper's): one row per configuration. `scoring`
    (default: the competition's weights) splits each model comparison into its classes' parts; `timed` (default:
    `frame`) are the configurations whose training minutes are compared (one machine's runs: `same_machine`)."""
    scoring = scoring or stats.Scoring(SCORE_WEIGHTS)
    timed = frame if timed is None else timed
    summary = summary_rows(frame, study)
    best = stats.best_model(stats.model_summary(frame, study))
    attention = with_classes(stats.attention_vs_baseline(frame, study, s), frame, scoring)
    patch = stats.patch_effect(frame, study, s)
    patch_steps = stats.patch_steps(frame, study, s)
    channels = stats.channel_effect(frame, study, s)
    best_vs_others = with_classes(stats.best_against_others(frame, study, best, s), frame, scoring) if best else []
    return {
        "summary": summary,
        "ranking": sorted((r for r in summary if r["n"]), key=lambda r: -r["mean"]),
        "best": next((r for r in summary if r["model"] == best), None),
        # A ranking is stated only when the top model is better than every other one (Bonferroni over them).
        "best_vs_others": best_vs_others,
        "best_supported": bool(best_vs_others) and all(c.verdict == "better" for c in best_vs_others),
        "attention": attention,
        "patch": patch,
        "patch_counts": dict(Counter(c.verdict for c in patch)),
        "patch_steps": patch_steps,
        "channels": channels,
        "channel_counts": dict(Counter(c.verdict for c in channels)),
        "time": stats.attention_vs_baseline(timed, study, s, value="train_minutes"),
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


def with_intervals(runs: pd.DataFrame, scoring: stats.Scoring, s: stats.Settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs, configurations): each run and each configuration (seeds averaged) with its test-tomogram bootstrap
    interval in `low` and `high` (NaN where the metrics files hold no per-tomogram counts). A configuration keeps its
    seeds' own values and draws (`seed_values`, `seed_draws`) for the hierarchical bootstrap of the comparisons; the
    seeds may differ in number between configurations (the replicate block)."""
    draws = stats.tomogram_draws(runs, scoring, s)
    runs = runs.copy()
    runs[["low", "high"]] = [stats.percentile_interval(d, s) for d in draws]
    frame = stats.configurations(runs.drop(columns=["low", "high"]), draws)
    frame[["low", "high"]] = [stats.percentile_interval(d, s) for d in frame["draws"]]
    return runs, frame


def same_machine(runs: pd.DataFrame) -> tuple[pd.DataFrame, frozenset[str]]:
    """(configurations of the runs on the largest group's machine, the configurations with a run elsewhere): what
    time is compared on, and which table cells' minutes came (partly) from another machine."""
    labels = machine_labels(runs)
    main = machine_groups(runs)[0].label
    here = labels == main
    timed = stats.configurations(runs[here].drop(columns=["low", "high"], errors="ignore"))
    return timed, frozenset(runs.loc[~here, "cell"])


def study_facts(runs: pd.DataFrame, frame: pd.DataFrame) -> dict:
    """What the numbers come from, for the opening of conclusions.md: data source, scale, seeds and device, read
    from the runs' logged params and their metrics files (None where no run says)."""

    def logged(key: str) -> list[str]:
        values = {p.get(key) for p in runs.get("run_params", pd.Series(dtype=object)) if isinstance(p, dict)}
        return sorted(str(v) for v in values if v is not None)

    counts = [c for c in runs.get("test_counts", []) if isinstance(c, dict) and c]
    split = {key: logged(f"split.{key}") for key in ("runs_per_sample", "val_fraction", "test_runs")}
    per_sample = {}
    for sample, group in runs.groupby("sample"):
        found = [c for c in group.get("test_counts", []) if isinstance(c, dict) and c]
        if found:  # references per class = TP + FN, the same for every cell of the sample
            first = found[0]
            classes = sorted({c for by_class in first.values() for c in by_class})
            particles = {
                c: sum(v.get(c, {}).get("tp", 0) + v.get(c, {}).get("fn", 0) for v in first.values()) for c in classes
            }
            per_sample[sample] = {"tomograms": len(first), "particles": particles, "names": sorted(first)}
    hardware = [h for h in runs.get("hardware", []) if isinstance(h, dict)]
    tagged = sorted({str(d) for d in runs.get("run_device", []) if isinstance(d, str) and d})
    devices = sorted({h.get("gpu") or h.get("cpu") or "unknown" for h in hardware})
    deterministic = sorted({bool(h.get("deterministic")) for h in hardware})
    return {
        "source": logged("data.source"),
        "voxel_spacing": logged("data.voxel_spacing"),
        "synth_shape": logged("synth.shape"),
        "synth_runs": logged("synth.runs"),
        "portal_dataset": logged("data.portal_dataset"),
        "epochs": logged("epochs"),
        "steps_per_epoch": logged("steps_per_epoch"),
        "patch_sizes": sorted({size_label(p) for p in frame["patch_size"]}) if "patch_size" in frame else [],
        "patch_scale": logged("patch_scale"),
        "seeds": sorted({int(v) for v in runs["seed"]}) if "seed" in runs else [0],
        "seed_groups": seed_groups(frame),
        "test": per_sample,
        # one test set for every sample (the study's design: split.py's common test set), said as one, not as two
        "test_shared": len(per_sample) > 1 and len({tuple(x["names"]) for x in per_sample.values()}) == 1,
        "training": training_sizes(split["runs_per_sample"], split["val_fraction"]),
        "split": split,
        "with_counts": len(counts),
        "devices": devices,
        "cpu_counts": sorted({h["cpu_count"] for h in hardware if h.get("cpu_count")}),
        "gpus": sorted({h["gpu"] for h in hardware if h.get("gpu")}),
        "device_kinds": sorted({str(h.get("device")) for h in hardware if h.get("device")}),
        "deterministic": deterministic,
        "with_hardware": len(hardware),
        "machines": machine_groups(runs),
        "tagged_devices": tagged,  # the MLflow "device" tag, for runs that recorded no hardware
        "n_runs": len(runs),
    }


def training_sizes(runs_per_sample: list[str], val_fractions: list[str]) -> list[dict]:
    """The train and validation tomograms of each sample, from the split params the runs logged
    (split.runs_per_sample and split.val_fraction, rounded as src/data/split.py rounds them); [] where no run
    logged them."""
    sizes = []
    for n in runs_per_sample:
        for fraction in val_fractions:
            val = int(round(float(fraction) * int(n)))
            sizes.append({"train": int(n) - val, "val": val})
    return sizes


def test_set_words(facts: dict) -> list[str]:
    """ "8 test tomograms shared by s1 and s2" for the study's one common test set; one part per sample otherwise."""
    test = facts["test"]
    if facts.get("test_shared"):
        first = next(iter(test.values()))
        return [f"{first['tomograms']} test tomograms shared by {' and '.join(sorted(test))} (one test set)"]
    return [f"{x['tomograms']} test tomograms ({sample})" for sample, x in sorted(test.items())]


def training_words(facts: dict) -> list[str]:
    """ "3 train + 1 validation tomograms per sample" (nothing where the runs did not log their split)."""
    sizes = facts.get("training") or []
    if not sizes:
        return []
    return [" / ".join(f"{x['train']} train + {x['val']} validation" for x in sizes) + " tomograms per sample"]


def seed_groups(frame: pd.DataFrame) -> list[dict]:
    """The configurations grouped by the seeds they were run with, most seeds first: [{seeds: [0, 1, 2],
    configurations: [names]}, ...]; one group when every configuration has the same seeds."""
    if "seed_list" not in frame:
        return [{"seeds": [0], "configurations": list(frame["cell"])}] if len(frame) else []
    groups: dict[tuple[int, ...], list[str]] = {}
    for cell, seeds in zip(frame["cell"], frame["seed_list"], strict=True):
        groups.setdefault(tuple(seeds), []).append(cell)
    order = sorted(groups, key=lambda k: (-len(k), k))
    return [{"seeds": list(k), "configurations": groups[k]} for k in order]


def seeds_label(facts: dict) -> str:
    """'1 seed', '3 seeds', or '1 to 3 seeds per configuration' when configurations differ in their seed count."""
    counts = sorted({len(g["seeds"]) for g in facts.get("seed_groups") or []}) or [len(facts["seeds"])]
    if len(counts) > 1:
        return f"{counts[0]} to {counts[-1]} seeds per configuration"
    return f"{counts[0]} seed{'s' if counts[0] != 1 else ''}"


def _one_or_all(values: list[str], unit: str = "") -> str:
    return " / ".join(f"{v}{unit}" for v in values) if values else "?"


def data_line(facts: dict) -> str:
    """One line naming the data and scale behind our numbers, for every figure and table: source, voxel size,
    tomograms, training length, seeds and machine, all read from the runs (`study_facts`), never typed in."""
    source = facts["source"]
    if "synthetic" in source:
        shape = " of " + _one_or_all([v.strip("[]()").replace(", ", "x") for v in facts["synth_shape"]])
        data = (
            f"synthetic demo data ({_one_or_all(facts['synth_runs'])} tomograms{shape if facts['synth_shape'] else ''})"
        )
    elif "portal" in source:
        data = f"CryoET Data Portal dataset {_one_or_all(facts['portal_dataset'])}"
    else:
        data = _one_or_all(source) + " data"
    machine = _one_or_all(facts["devices"]) if facts["with_hardware"] else _one_or_all(facts["tagged_devices"])
    if facts["cpu_counts"] and not facts["gpus"]:  # a CPU run: its core count sets its speed
        machine = f"{_one_or_all([str(c) for c in facts['cpu_counts']])}-core {machine} CPU"
    groups = facts.get("machines") or []
    if len(groups) > 1:  # named wherever the line goes, since times are not comparable across them
        each = "; ".join(f"{runs_count(len(g.runs))} on {g.label}" for g in groups)
        machine = f"{len(groups)} machines ({each})"
    parts = [
        f"Our data: {data}",
        f"{_one_or_all(facts['voxel_spacing'])} A voxels",
        *training_words(facts),
        *test_set_words(facts),
        f"{_one_or_all(facts['epochs'])} epochs x {_one_or_all(facts['steps_per_epoch'])} steps",
        seeds_label(facts),
        f"{facts['n_runs']} runs",
        machine,
    ]
    return ", ".join(parts)


def model_cost(study: Study, network: dict, frame: pd.DataFrame) -> list[dict]:
    """Parameters and forward multiply-adds per patch of every model x channel configuration, at the patch sizes
    the cells trained (the cost of attention where it does not depend on the machine or a short run's noise)."""
    from src.classes import CZII_CLASSES
    from src.models.factory import build_model
    from src.models.summary import count_gmacs

    patches = sorted({tuple(p) for p in frame["patch_size"]}, key=lambda p: p[0] * p[1] * p[2])
    rows = []
    for channels in study.channel_keys:
        for name in study.model_keys:
            spec = study.models[name]
            sizes = study.channels[channels]
            model = build_model(spec.attention, sizes, len(CZII_CLASSES) + 1, spec.attention_kwargs, **network).eval()
            rows.append(
                {
                    "model": name,
                    "channels": size_label(sizes, "-"),
                    "params": sum(p.numel() for p in model.parameters()),
                    "gmacs": [count_gmacs(model, p) for p in patches],
                }
            )
    base = {r["channels"]: r for r in rows if r["model"] == study.baseline}
    for r in rows:
        b = base[r["channels"]]
        r["params_pct"] = 100 * (r["params"] / b["params"] - 1)
        r["gmacs_pct"] = [100 * (g / bg - 1) for g, bg in zip(r["gmacs"], b["gmacs"], strict=True)]
    return [{"patches": [size_label(p) for p in patches], **r} for r in rows]


STEP_COLUMNS = ["device", "mode", "patch", "channels", "model", "step_ms"]


def distinct_machines(df: pd.DataFrame) -> pd.DataFrame:
    """Each CSV is one machine; where two name their device alike (every CPU file says "cpu"), the file's name is
    added to it, so that one machine's times are never set against another's baseline."""
    shared = df.groupby("device")["source"].transform("nunique") > 1
    df.loc[shared, "device"] = df.loc[shared, "device"] + " (" + df.loc[shared, "source"] + ")"
    return df.drop(columns="source")


def step_times(paths, study: Study) -> list[dict]:
    """The measured training-step times of `benchmarks/train_step_speed.py --csv` files, each with its % over the
    baseline on the same machine, mode, patch and channels; empty when no file is given."""
    frames = []
    for path in paths or ():
        try:
            frame = pd.read_csv(path)
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
            raise UserError(f"report.step_times: cannot read {path} ({str(e).splitlines()[0]})") from None
        missing = [c for c in STEP_COLUMNS if c not in frame]
        if missing:
            raise UserError(
                f"report.step_times: {path} lacks column(s) {', '.join(missing)}; write it with "
                "python benchmarks/train_step_speed.py --csv FILE"
            )
        frames.append(frame[STEP_COLUMNS].assign(source=Path(path).name))
    if not frames:
        return []
    df = distinct_machines(pd.concat(frames, ignore_index=True))
    keys = ["device", "mode", "patch", "channels"]
    base = df[df["model"] == study.baseline].set_index(keys)["step_ms"]
    df["pct"] = 100 * (df["step_ms"].to_numpy() / base.reindex(pd.MultiIndex.from_frame(df[keys])).to_numpy() - 1)
    order = {m: i for i, m in enumerate(study.model_keys)}
    df = df.sort_values(keys + ["model"], key=lambda c: c.map(order) if c.name == "model" else c)
    return df.to_dict("records")


def per_class_rows(means: pd.DataFrame, low: pd.DataFrame, high: pd.DataFrame) -> list[dict]:
    """One row per model: its mean per-class F-beta and the interval of each over the test tomograms."""
    return [
        {"model": m, "scores": list(row), "lows": list(low.loc[m]), "highs": list(high.loc[m])}
        for m, row in means.iterrows()
    ]


def step_summary(rows: list[dict]) -> list[dict]:
    """Mean % step time over the baseline per machine, mode and model (over its patch x channel configurations)."""
    if not rows:
        return []
    df = pd.DataFrame(rows)
    summary = df.groupby(["device", "mode", "model"], sort=False)["pct"].agg(["mean", "min", "max", "count"])
    return [{"device": d, "mode": m, "model": x, **r} for (d, m, x), r in summary.to_dict("index").items()]


REPORT_FILE = re.compile(r"table\d+\.(md|tex)|[a-z_]+\.(md|png)")  # what the report writes (or wrote before)


def is_report_file(name: str) -> bool:
    return REPORT_FILE.fullmatch(name) is not None


def comparisons(runs, frame, published, study: Study, s: stats.Settings, scoring: stats.Scoring, timed) -> tuple:
    """Our paired comparisons (each family beside the paper's, attention beside the mixed model), the paper's, and
    the mixed model: (ours, paper, mixed)."""
    ours, paper = analysis(frame, study, s, scoring, timed), analysis(published, study, s, scoring)
    for family in ("attention", "patch", "patch_steps", "channels"):
        ours[family] = stats.against_paper(ours[family], paper[family], s)
    mixed = stats.mixed_model(runs, study, s)
    ours["attention"] = stats.against_mixed(ours["attention"], mixed, study.baseline)
    return ours, paper, mixed


def write_tables(folder: Path, frame, published, study: Study, elsewhere, common: dict) -> list[str]:
    """Tables 3 and 4 (one per sample), Markdown and LaTeX; the names written."""
    md, tex, s, facts = render.markdown_env(), render.latex_env(), common["bootstrap"], common["facts"]
    names = []
    for sample, number in TABLES.items():
        rows = table_rows(frame, published, study, sample, elsewhere)
        table = {"sample_number": sample[1:], "table_number": number, "rows": rows, "d": common["d"]}
        table["conf"], table["resamples"] = common["conf"], s.bootstrap_resamples
        table["machine_note"], table["main_machine"] = common["machine_note"], facts["machines"][0].label
        table["data_line"], table["paper_data"] = common["data_line"], common["paper_data"]
        table["present"] = sum(r["fbeta"] is not None for r in rows)
        for env, template, suffix in ((md, "table.md.j2", "md"), (tex, "table.tex.j2", "tex")):
            render.render_to(env, template, folder / f"table{number}.{suffix}", **table)
            names.append(f"table{number}.{suffix}")
    return names


def write_figures(folder: Path, frame, study: Study, elsewhere, per_class, intervals: tuple, common: dict) -> list[str]:
    """The three figures (score by patch, score by training minutes, per-class scores); the names written."""
    line, machines = common["data_line"], common["facts"]["machines"]
    figures.fbeta_vs_patch(frame, study, folder / "fbeta_vs_patch.png", line, common["labels"])
    figures.score_vs_minutes(frame, study, folder / "score_vs_minutes.png", line, elsewhere, machines)
    figures.per_class_scores(per_class, study, folder / "per_class.png", line, intervals, common["weights"])
    return ["fbeta_vs_patch.png", "score_vs_minutes.png", "per_class.png"]


def build_report(
    metrics_dir: str | Path,
    out: str | Path,
    report_params,
    study: Study,
    tracking_uri: str | None = None,
    make_figures: bool = True,
    scoring: stats.Scoring | None = None,
    network: dict | None = None,
) -> list[Path]:
    """Read the runs the metrics files name, compute the statistics, write tables, text and figures; return paths.
    `network` (train.network) adds the parameter and multiply-add cost of each model; None leaves it out."""
    out = check_updatable(out, is_report_file, "the report")  # before any work
    s = stats.Settings.from_params(report_params)
    scoring = scoring or stats.Scoring(SCORE_WEIGHTS)
    runs, frame = with_intervals(load_runs(metrics_dir, study, tracking_uri), scoring, s)
    timed, elsewhere = same_machine(runs)
    columns = class_columns(runs)
    classes = [c.split("/", 1)[1] for c in columns]
    per_class = stats.per_class(frame, study, columns)
    class_low, class_high = stats.per_class_intervals(runs, study, classes, scoring, s)
    published = load_published(study)
    claims = yaml.safe_load(CLAIMS_FILE.read_text())
    names = set(frame["cell"])
    ours, paper, mixed = comparisons(runs, frame, published, study, s, scoring, timed)
    common = {
        "d": report_params.decimals,
        "alpha": s.alpha,
        "conf": f"{100 * s.confidence:g}",
        "power": f"{100 * s.power:g}",
        "margin": s.equivalence_margin,
        "baseline": study.baseline,
        "models": list(study.model_keys),
        "n_cells": len(frame),
        "n_runs": len(runs),
        "n_grid": len(study.configurations()),
        "missing": [c.name for c in study.configurations() if c.name not in names],
        "ours": ours,
        "paper": paper,
        "mixed": mixed,
        "paper_patches": [size_label(p) for p in study.patches.values()],
        "weights": {c: scoring.weights.get(c, 0.0) for c in classes},
        "total_weight": scoring.total_weight,
        "facts": (facts := study_facts(runs, frame)),
        "data_line": data_line(facts),
        "machine_note": machine_note(facts["machines"]),
        "our_scale": data_line(facts).removeprefix("Our data: "),
        "family": f"{100 * (1 - s.alpha):g}",  # the simultaneous level of a family's intervals
        "paper_data": claims["data"],
        "cost": model_cost(study, network, frame) if network is not None else None,
        "steps": (steps := step_times(getattr(report_params, "step_times", None), study)),
        "step_summary": step_summary(steps),
        "seconds_per_epoch": summary_rows(frame.assign(fbeta=frame["seconds_per_epoch"]), study),
        "checks": paper_checks(published, study, claims),
        "per_class": per_class_rows(per_class, class_low, class_high),
        "classes": classes,
        "labels": patch_labels(frame, study),
        "patches": patch_rows(frame, study),
        "paper_labels": paper_patch_labels(study),
        "min_pairs": s.min_pairs,
        "bootstrap": s,
    }
    md = render.markdown_env()
    texts = ("statistics.md", "published_statistics.md", "conclusions.md")
    # Written into a copy of the folder that replaces it at the end: a failure (a full disk) leaves the old report
    # whole, not new tables beside old figures.
    with updated_folder(out, is_report_file, "the report") as folder:
        written = write_tables(folder, frame, published, study, elsewhere, common)
        for name in texts:
            render.render_to(md, f"{name}.j2", folder / name, **common)
        written += texts
        if make_figures:
            intervals = (class_low.to_numpy(), class_high.to_numpy())
            written += write_figures(folder, frame, study, elsewhere, per_class, intervals, common)
    return [out / name for name in written]
