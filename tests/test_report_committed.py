"""The report on the committed study (metrics/ and its MLflow exports, copied to a temporary folder), with one run
edited to claim another CPU and a much longer training, as a cell trained on another machine would: time is compared
within one machine and every table and figure says so (issue 25, item 2); and paper/ says exactly what ran: one
shared test set, the trained patch sizes, the training-set size, per-class intervals and the class weights (item 7).
Every expected value is read from the metrics files or computed here, not typed in."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from matplotlib.container import BarContainer, ErrorbarContainer
from matplotlib.lines import Line2D

from src import tracking
from src.classes import SCORE_WEIGHTS
from src.data.split import make_split
from src.params import load_params
from src.report import figures, stats
from src.report.build import build_report
from src.report.machines import MACHINE_FIELDS, machine_groups
from src.study import size_label
from tests.conftest import REPO
from tests.test_report import REPORT, STUDY, md_row, section

EDITED = "unet-c16-p64-s1-r0"  # the run "trained on another machine"
OTHER_CPU = "Other Test CPU 9000"
OTHER_MINUTES = 30.0  # far from the committed cells' minutes, so a comparison that mixes machines moves visibly


def machine(record: dict) -> tuple:
    h = record["hardware"]
    return (h["cpu"], h["gpu"], str(h["device"]).split(":")[0], h["torch_threads"])


def figure_facts(fig) -> dict:
    """What a reader sees of a figure: titles, tick labels, the texts under it, legend entries, the looks (line
    style, marker, marker fill) of each labelled line, and how many bars of a bar chart have whiskers."""
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    looks = {}
    for ax in fig.axes:
        for handle, name in zip(*ax.get_legend_handles_labels(), strict=True):
            line = handle.lines[0] if isinstance(handle, ErrorbarContainer) else handle  # an errorbar's data line
            if isinstance(line, Line2D):
                looks[name] = (line.get_linestyle(), line.get_marker(), str(line.get_markerfacecolor()))
    whiskers = [c.errorbar for ax in fig.axes for c in ax.containers if isinstance(c, BarContainer) and c.errorbar]
    return {
        "titles": [fig._suptitle.get_text() if fig._suptitle else ""] + [ax.get_title() for ax in fig.axes],
        "ticks": [t.get_text() for ax in fig.axes for t in ax.get_xticklabels()],
        "texts": [t.get_text() for t in fig.texts],
        "legend": [t.get_text() for legend in legends for t in legend.get_texts()],
        "looks": looks,
        "whiskers": sum(len(e.lines[2][0].get_segments()) for e in whiskers),
    }


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """The committed study with EDITED on OTHER_CPU, reported; returns (metrics records, texts, figure facts)."""
    root = tmp_path_factory.mktemp("committed")
    metrics = root / "metrics"
    metrics.mkdir()
    for path in (REPO / "metrics").glob("*.json"):
        shutil.copy(path, metrics)
    shutil.copytree(REPO / "metrics" / "mlflow", metrics / "mlflow")
    record = json.loads((metrics / f"{EDITED}.json").read_text())
    record["hardware"]["cpu"], record["train_minutes"] = OTHER_CPU, OTHER_MINUTES
    (metrics / f"{EDITED}.json").write_text(json.dumps(record))
    export = json.loads((metrics / "mlflow" / f"{EDITED}.json").read_text())
    export["metrics"]["train_minutes"] = [[0, point[1], OTHER_MINUTES] for point in export["metrics"]["train_minutes"]]
    (metrics / "mlflow" / f"{EDITED}.json").write_text(json.dumps(export))

    seen = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(tracking.ENV_STORE, str(root / "no-store"))  # the exports, as in a fresh clone
        mp.delenv(tracking.ENV_SERVER, raising=False)
        save = figures._save
        mp.setattr(figures, "_save", lambda fig, path: (seen.update({path.name: figure_facts(fig)}), save(fig, path)))
        written = build_report(metrics, root / "paper", REPORT, STUDY)
    records = [json.loads(p.read_text()) for p in sorted(metrics.glob("*.json"))]
    texts = {p.name: p.read_text() for p in written if p.suffix in (".md", ".tex")}
    return records, texts, seen


def configuration_minutes(records: list[dict]) -> dict[tuple, float]:
    """Mean training minutes per configuration (model, channels, patch, sample) over the given runs."""
    groups: dict[tuple, list[float]] = {}
    for r in records:
        groups.setdefault((r["model"], r["channels"], r["patch"], r["sample"]), []).append(r["train_minutes"])
    return {k: float(np.mean(v)) for k, v in groups.items()}


def extra_minutes(records: list[dict], model: str) -> tuple[float, float]:
    """(mean extra minutes of `model` over the baseline, as % of the baseline's), paired over configurations."""
    minutes = configuration_minutes(records)
    pairs = [(v, minutes[(model, *k[1:])]) for k, v in minutes.items() if k[0] == STUDY.baseline]
    base, variant = np.array(pairs).T
    return float((variant - base).mean()), float(100 * (variant - base).mean() / base.mean())


def test_time_is_compared_on_the_largest_machines_runs_only(mixed):
    records, texts, _ = mixed
    main = Counter(machine(r) for r in records).most_common(1)[0][0]
    here = [r for r in records if machine(r) == main]
    assert len(here) == len(records) - 1 and OTHER_CPU not in main
    conclusions = section(texts["conclusions.md"], "## The cost of attention")
    for model in STUDY.variants:
        diff, pct = extra_minutes(here, model)
        assert f"- {model}: {diff:+.2f} minutes per run ({pct:+.1f} %)" in conclusions
        row = md_row(section(texts["statistics.md"], "## Training time"), model)
        assert row[2:4] == [f"{diff:+.2f}", f"{pct:+.1f}"]
        mixed_diff, _ = extra_minutes(records, model)  # what mixing the machines would have said
        assert f"{mixed_diff:+.2f}" != f"{diff:+.2f}" and f"{mixed_diff:+.2f} minutes" not in conclusions


def test_every_table_page_and_figure_with_time_names_the_machines(mixed):
    records, texts, seen = mixed
    main = Counter(machine(r) for r in records).most_common(1)[0]
    note = f"The runs come from 2 machines (one machine: the same {', '.join(MACHINE_FIELDS[:-1])}"
    for name in ("table3.md", "table4.md", "statistics.md", "conclusions.md"):
        text = texts[name]
        assert note in text and f"{main[1]} runs on" in text, name
        assert f"1 run on 2-core {OTHER_CPU} CPU, 2 torch threads ({EDITED})" in text, name
        assert "2 machines (" in next(x for x in text.splitlines() if x.startswith("Our data:")), name
    assert "The runs come from 2 machines" in texts["table3.tex"] and EDITED.replace("_", "\\_") in texts["table3.tex"]
    assert "\\dag" in texts["table3.tex"]
    # the configuration with a run elsewhere is marked; no other one is
    marked = [line for line in texts["table3.md"].splitlines() if "†" in line and line.startswith("| unet")]
    assert len(marked) == 1 and marked[0].startswith("| unet | 16-32-64-128 | 32x64x64 ")
    assert not [line for line in texts["table4.md"].splitlines() if "†" in line and line.startswith("| unet")]
    minutes = seen["score_vs_minutes.png"]
    assert any("minutes from 2 machines, not comparable across them" in t for t in minutes["titles"])
    assert any(label.startswith("hollow: a run not on") for label in minutes["legend"])
    for facts in seen.values():  # every figure's data line names both machines
        assert OTHER_CPU in " ".join(facts["texts"]).replace("\n", " ")


def test_machines_are_grouped_by_the_fields_that_set_speed():
    def hw(cpu="A", gpu=None, device="cpu", threads=2, cores=2):
        return {"cpu": cpu, "gpu": gpu, "device": device, "torch_threads": threads, "cpu_count": cores}

    runs = pd.DataFrame(
        {
            "run_cell": [f"r{i}" for i in range(7)],
            "hardware": [
                hw(),
                hw(cores=64),
                hw(threads=1),
                hw(gpu="G", device="cuda:0"),
                hw(gpu="G", device="cuda:1"),
                hw(cpu="B"),
                None,
            ],
        }  # fmt: skip
    )
    groups = machine_groups(runs)
    assert [g.runs for g in groups] == [("r0", "r1"), ("r3", "r4"), ("r2",), ("r5",), ("r6",)]
    assert groups[-1].label == "machine not recorded"
    assert len(machine_groups(runs.assign(hardware=None))) == 1  # nothing recorded: nothing says they differ


def test_one_shared_test_set_is_said_as_one(mixed):
    records, texts, seen = mixed
    tests = {r["sample"]: sorted(r["test_counts"]) for r in records}
    assert len(tests) == 2 and len({tuple(t) for t in tests.values()}) == 1  # the committed study's design
    words = f"{len(tests['s1'])} test tomograms shared by s1 and s2 (one test set)"
    for text in [*texts.values(), *(" ".join(f["texts"]).replace("\n", " ") for f in seen.values())]:
        if "Our data:" in text:
            assert words in text and "test tomograms (s1)" not in text
    opening = section(texts["conclusions.md"], "## What these numbers come from")
    assert f"one test set for both samples (the same {len(tests['s1'])} tomograms" in opening


def test_the_training_set_size_is_stated(mixed):
    _, texts, seen = mixed
    split = load_params(REPO / "params.yaml").split  # the committed runs logged these split params
    names = [f"TS_{i:03d}" for i in range(split.test_runs + 2 * split.runs_per_sample)]
    sample = make_split(names, split)["samples"]["1"]
    words = f"{len(sample['train'])} train + {len(sample['val'])} validation tomograms per sample"
    for text in [*texts.values(), *(" ".join(f["texts"]).replace("\n", " ") for f in seen.values())]:
        if "Our data:" in text:
            assert words in text
    assert (
        f"each sample trains on {len(sample['train'])} and validates on {len(sample['val'])}" in texts["conclusions.md"]
    )


def test_patch_labels_carry_the_trained_sizes(mixed):
    records, texts, seen = mixed
    trained = {r["patch"]: size_label(r["patch_size"]) for r in records}
    assert all(trained[p] != size_label(STUDY.patches[p]) for p in trained)  # the demo trains smaller patches
    label = {p: f"{p} (trained {size})" for p, size in trained.items()}
    st = texts["statistics.md"]
    for model in STUDY.model_keys:
        assert md_row(section(st, "## Patch size: largest"), f"{model}: {label['p128']} vs {label['p64']}")
        assert md_row(section(st, "## Patch size, step by step"), f"{model}: {label['p96']} vs {label['p64']}")
    assert "p128 vs p64" not in st and "p128 vs p64" not in texts["conclusions.md"]
    assert f"- unet, {label['p128']} vs {label['p96']}: " in texts["conclusions.md"]
    ticks = seen["fbeta_vs_patch.png"]["ticks"]
    for p, size in trained.items():
        assert any(t.startswith(f"{p}\n(trained {size})") for t in ticks)
    table = md_row(texts["table3.md"], "unet")
    assert table[2] == f"{size_label(STUDY.patches['p64'])} (trained {trained['p64']})"
    # the paper's own page labels its sizes, not ours
    published = texts["published_statistics.md"]
    assert md_row(section(published, "## Patch size: largest"), f"unet: p128 ({size_label(STUDY.patches['p128'])}) "
                  f"vs p64 ({size_label(STUDY.patches['p64'])})")  # fmt: skip


def test_per_class_scores_have_intervals_and_weights(mixed):
    records, texts, seen = mixed
    block = section(texts["statistics.md"], "## Per-class test F-beta per model")
    classes = sorted(records[0]["test_fbeta"])
    header = md_row(block, "Model")[1:]
    assert header == [f"{c} (weight {SCORE_WEIGHTS[c]:g})" for c in classes]
    for model in STUDY.model_keys:
        mine = [r for r in records if r["model"] == model]
        for c, cell in zip(classes, md_row(block, model)[1:], strict=True):
            per_config = {}
            for r in mine:
                per_config.setdefault(r["configuration"], []).append(r["test_fbeta"][c])
            mean = np.mean([np.mean(v) for v in per_config.values()])
            value, interval = cell.split(" ", 1)
            low, high = (float(x) for x in interval.strip("[]").split(", "))
            assert value == f"{mean:.3f}" and low < float(value) < high, (model, c, cell)
    facts = seen["per_class.png"]
    assert facts["whiskers"] == len(STUDY.model_keys) * len(classes)
    zero = [c for c in classes if SCORE_WEIGHTS[c] == 0]
    assert zero and all(any(t == f"{c}\nweight 0 (not scored)" for t in facts["ticks"]) for c in zero)
    assert all(any(t == f"{c}\nweight {SCORE_WEIGHTS[c]:g}" for t in facts["ticks"]) for c in classes if c not in zero)


def test_per_class_interval_is_the_tomogram_bootstrap():
    """One run of two test tomograms: a resample is t0 twice, t1 twice or one of each, so the 95 % interval's ends
    are each tomogram's own per-class F-beta (F-beta does not change when every count doubles)."""
    from src.metric import class_fbeta

    counts = {"t0": {"a": {"tp": 9, "fp": 1, "fn": 1}}, "t1": {"a": {"tp": 2, "fp": 6, "fn": 8}}}
    runs = pd.DataFrame({"model": ["unet"], "cell": ["unet-c16-p64-s1"], "test_counts": [counts]})
    low, high = stats.per_class_intervals(runs, STUDY, ["a"], stats.Scoring({"a": 1.0}), stats.Settings())
    alone = sorted(float(class_fbeta(**c["a"])[2]) for c in counts.values())
    assert (low.loc["unet", "a"], high.loc["unet", "a"]) == pytest.approx(alone)
    assert np.isnan(low.loc["unet_se", "a"])  # a model without runs has none


def test_channel_configurations_look_different_in_the_legend(mixed):
    _, _, seen = mixed
    looks = seen["fbeta_vs_patch.png"]["looks"]
    for model in STUDY.model_keys:
        assert f"{model} c16" in seen["fbeta_vs_patch.png"]["legend"]
        narrow, wide = (looks[f"{model} {c}"] for c in STUDY.channel_keys)
        assert narrow[0] != wide[0] and narrow[1] != wide[1] and narrow[2] != wide[2]  # line, marker and fill


def test_step_times_of_two_cpu_files_are_not_set_against_each_other(tmp_path):
    from src.report.build import step_times

    rows = [{"device": "cpu", "mode": "fp32", "patch": "p", "channels": "c", "model": m, "step_ms": ms}
            for m, ms in (("unet", 100.0), ("unet_se", 110.0))]  # fmt: skip
    pd.DataFrame(rows).to_csv(tmp_path / "a.csv", index=False)
    pd.DataFrame(rows).assign(step_ms=lambda d: d["step_ms"] * 3).to_csv(tmp_path / "b.csv", index=False)
    out = step_times([tmp_path / "a.csv", tmp_path / "b.csv"], STUDY)
    assert {r["device"] for r in out} == {"cpu (a.csv)", "cpu (b.csv)"}
    # each file against its own baseline: 110 / 100 in both, not 330 / 100 across them
    assert [r["pct"] for r in out if r["model"] == "unet_se"] == pytest.approx([100 * (110 / 100 - 1)] * 2)
