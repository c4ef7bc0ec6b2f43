"""params.yaml -> one typed, frozen settings object. The only module that reads params.yaml.

Each section is a dataclass; unknown or missing keys are errors so that a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from src.errors import UserError
from src.ranges import inside
from src.repro import ISAS

PARAMS_FILE = Path("params.yaml")
KEY = re.compile(r"^[a-z0-9_]+$")  # study keys join into cell names with '-', so they hold none


class ParamsError(UserError):
    """params.yaml cannot be read, does not match the expected sections and keys, or has values out of range."""


# Ranges, declared on the fields below: every value (each one, for a list or mapping) must lie in the interval.
POSITIVE, NON_NEGATIVE, AT_LEAST_1, PROBABILITY = "(0, inf)", "[0, inf)", "[1, inf)", "[0, 1]"


def ranged(interval: str):
    """A dataclass field whose value must lie in `interval`, written as "[0, 1)", "(0, inf)" and so on."""
    return field(metadata={"range": interval})


@dataclass(frozen=True)
class ModelParams:
    """One model of the study: its attention block (a name in src/models/attention.py) with that block's options,
    and how the report shows it."""

    attention: str
    attention_kwargs: dict[str, Any]
    label: str
    color: str


@dataclass(frozen=True)
class StudyParams:
    """The study's vocabulary (src/study.py): models, channel and patch keys with the paper's sizes, samples."""

    baseline: str
    models: dict[str, ModelParams]
    channels: dict[str, tuple[int, ...]] = ranged(AT_LEAST_1)
    patches: dict[str, tuple[int, int, int]] = ranged(AT_LEAST_1)
    samples: tuple[str, ...]


@dataclass(frozen=True)
class DataParams:
    source: str
    copick_config: str | None
    portal_dataset: int = ranged(AT_LEAST_1)
    portal_dir: str
    tomo_type: str
    voxel_spacing: float = ranged(POSITIVE)
    picks_user: str | None
    out: str


@dataclass(frozen=True)
class ClassParams:
    weights: dict[str, float] = ranged(NON_NEGATIVE)


@dataclass(frozen=True)
class PlacementParams:
    counts: dict[str, float] = ranged(NON_NEGATIVE)
    count_scale: float = ranged(NON_NEGATIVE)
    min_per_class: int = ranged(NON_NEGATIVE)
    unannotated: dict[str, float] = ranged("[0, 1)")
    min_gap: float = ranged(NON_NEGATIVE)
    edge_margin: float = ranged(NON_NEGATIVE)
    cluster_fraction: float = ranged(PROBABILITY)


@dataclass(frozen=True)
class ParticleParams:
    """How much each class weighs: the integrated density of its map is mass / protein_density."""

    protein_density: float = ranged(POSITIVE)
    mass_kda: dict[str, float] = ranged(POSITIVE)
    cargo_kda: dict[str, float] = ranged(NON_NEGATIVE)
    cargo_granule_radius: float = ranged(POSITIVE)


@dataclass(frozen=True)
class DistractorParams:
    vesicles: float = ranged(NON_NEGATIVE)
    vesicle_radius: tuple[float, float] = ranged(POSITIVE)
    membrane_thickness: float = ranged(POSITIVE)
    blobs: float = ranged(NON_NEGATIVE)
    blob_radius: tuple[float, float] = ranged(POSITIVE)
    lookalikes: float = ranged(NON_NEGATIVE)
    lookalike_mass_kda: tuple[float, float] = ranged(POSITIVE)


@dataclass(frozen=True)
class ImagingParams:
    ctf: bool
    voltage_kv: float = ranged(POSITIVE)
    defocus_um: float = ranged(NON_NEGATIVE)
    spherical_aberration_mm: float = ranged(NON_NEGATIVE)
    amplitude_contrast: float = ranged("[0, 1)")
    bfactor: float = ranged(NON_NEGATIVE)
    tilt_range_deg: float = ranged("[0, 90]")
    snr: float = ranged(POSITIVE)
    denoise_sigma: float = ranged(NON_NEGATIVE)


@dataclass(frozen=True)
class SynthParams:
    runs: int = ranged(AT_LEAST_1)
    shape: tuple[int, int, int] = ranged(AT_LEAST_1)
    voxel_spacing: float = ranged(POSITIVE)
    seed: int = ranged(NON_NEGATIVE)
    run_prefix: str
    picks_naming: str
    placement: PlacementParams
    particles: ParticleParams
    distractors: DistractorParams
    imaging: ImagingParams


@dataclass(frozen=True)
class MaskParams:
    label_radius_fraction: float = ranged("(0, 1]")


@dataclass(frozen=True)
class SplitParams:
    seed: int = ranged(NON_NEGATIVE)
    test_runs: int = ranged(AT_LEAST_1)
    runs_per_sample: int = ranged("[2, inf)")
    val_fraction: float = ranged("(0, 1)")
    out: str


EXTRACTORS = ("argmax", "components", "peaks")  # the point extractors of src/inference/points.py
AUTO = "auto"  # predict.extractor: the better of SELECTABLE on the validation runs
SELECTABLE = ("components", "peaks")


@dataclass(frozen=True)
class PredictParams:
    overlap: float = ranged("[0, 1)")
    sw_batch_size: int = ranged(AT_LEAST_1)
    slab_depth: int = ranged(AT_LEAST_1)
    tta_flips: str
    default_threshold: float = ranged(PROBABILITY)
    min_blob_fraction: float = ranged(NON_NEGATIVE)
    max_blob_fraction: float = ranged(POSITIVE)
    threshold_grid: tuple[float, float, float] = ranged(PROBABILITY)
    extractor: str  # AUTO or one of EXTRACTORS
    peak_radius_fraction: float = ranged(POSITIVE)
    plan_source: str  # checkpoint | params


@dataclass(frozen=True)
class AugmentParams:
    background_ratio: float = ranged(NON_NEGATIVE)
    flip_prob: float = ranged(PROBABILITY)
    rotate90_prob: float = ranged(PROBABILITY)
    affine_prob: float = ranged(PROBABILITY)
    rotate_deg: float = ranged("[0, 180]")
    scale: float = ranged("[0, 1)")
    intensity_shift: float = ranged(NON_NEGATIVE)
    intensity_prob: float = ranged(PROBABILITY)
    noise_std: float = ranged(NON_NEGATIVE)
    noise_prob: float = ranged(PROBABILITY)


@dataclass(frozen=True)
class NetworkParams:
    """The backbone all models share: AttentionUNet3D's arguments other than channels and attention."""

    strides: tuple[int, int, int] = ranged(AT_LEAST_1)
    num_res_units: int = ranged(NON_NEGATIVE)
    norm: str
    act: str
    dropout: float = ranged("[0, 1)")
    kernel_size: int = ranged(AT_LEAST_1)
    up_kernel_size: int = ranged(AT_LEAST_1)


class _Block:
    """A block of the grid (train.replicates, train.reruns): every model at its channel, patch and sample keys."""

    def holds(self, channels: str, patch: str, sample: str, seed: int | None = None) -> bool:
        """Whether the block has these keys (and this seed)."""
        inside = channels in self.channels and patch in self.patches and sample in self.samples
        return inside and (seed is None or seed in self.seeds)


@dataclass(frozen=True)
class ReplicateParams(_Block):
    """Extra seeds of a block of configurations (every model at these channel, patch and sample keys)."""

    seeds: list[int] = ranged(NON_NEGATIVE)  # may be empty: no replicates
    channels: tuple[str, ...]
    patches: tuple[str, ...]
    samples: tuple[str, ...]


@dataclass(frozen=True)
class RerunParams(_Block):
    """The rerun block: runs of the study (every model at these channel, patch and sample keys, these seeds) trained
    again with another thread count: the same data, seeds and draws, other rounding."""

    threads: int = ranged(AT_LEAST_1)
    seeds: list[int] = ranged(NON_NEGATIVE)  # may be empty: no reruns
    channels: tuple[str, ...]
    patches: tuple[str, ...]
    samples: tuple[str, ...]


@dataclass(frozen=True)
class TrainParams:
    patch_scale: tuple[float, float, float] = ranged(POSITIVE)
    models_dir: str
    metrics_dir: str
    network: NetworkParams
    epochs: int = ranged(AT_LEAST_1)
    steps_per_epoch: int = ranged(AT_LEAST_1)
    batch_size: int = ranged(AT_LEAST_1)
    crops_per_volume: int = ranged(AT_LEAST_1)
    prefetch: int = ranged(NON_NEGATIVE)
    lr: float = ranged(POSITIVE)
    tversky_alpha: float = ranged(PROBABILITY)
    tversky_beta: float = ranged(PROBABILITY)
    val_every: int = ranged(AT_LEAST_1)
    seeds: tuple[int, ...] = ranged(NON_NEGATIVE)
    replicates: ReplicateParams
    reruns: RerunParams
    amp: bool
    augment: AugmentParams


@dataclass(frozen=True)
class ReproParams:
    """The CPU threads and instruction set every cell computes with (src/repro.py), whatever the machine."""

    cpu_threads: int = ranged(NON_NEGATIVE)  # 0: the libraries' default (all cores), not portable
    cpu_isa: str  # avx2 | native


@dataclass(frozen=True)
class ReportParams:
    out: str
    alpha: float = ranged("(0, 1)")
    confidence: float = ranged("(0, 1)")
    min_pairs: int = ranged("[2, inf)")
    bootstrap_resamples: int = ranged(AT_LEAST_1)
    bootstrap_method: str
    bootstrap_seed: int = ranged(NON_NEGATIVE)
    decimals: int = ranged("[0, 15]")
    equivalence_margin: float = ranged("(0, 1)")
    power: float = ranged("(0, 1)")
    step_times: tuple[str, ...] | None = None


@dataclass(frozen=True)
class SlurmParams:
    """What every SLURM job of the grid asks for (`grid run --executor slurm`; options on the command line win)."""

    partition: str | None
    time: str  # HH:MM (or D-HH:MM), a job's wall-time limit; submitit requeues it from its last epoch when it runs out
    mem: str  # memory per job, as sbatch reads it ("32G")
    cpus_per_task: int = ranged(AT_LEAST_1)
    gpus_per_task: int = ranged(NON_NEGATIVE)
    setup: tuple[str, ...] | None = None  # shell lines run before each job (module load ..., source venv/bin/activate)


@dataclass(frozen=True)
class GridParams:
    """`python -m src grid run`: the cells as local processes or SLURM jobs."""

    retries: int = ranged(NON_NEGATIVE)
    poll_seconds: float = ranged(POSITIVE)
    log_dir: str = "logs/grid"
    slurm: SlurmParams | None = None


@dataclass(frozen=True)
class Params:
    study: StudyParams
    data: DataParams
    classes: ClassParams
    synth: SynthParams
    masks: MaskParams
    split: SplitParams
    predict: PredictParams
    report: ReportParams
    train: TrainParams
    repro: ReproParams
    grid: GridParams


def _build(cls, raw, where: str):
    """Recursively turn a dict into the dataclass `cls`, checking keys and coercing simple types."""
    if dataclasses.is_dataclass(cls):
        if not isinstance(raw, dict):
            raise ParamsError(f"{where}: expected a mapping, got {raw!r}")
        hints = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(raw) - set(names))
        missing = [n for n in names if n not in raw]
        if unknown or missing:
            raise ParamsError(f"{where}: unknown keys {unknown}, missing keys {missing}")
        return cls(**{n: _build(hints[n], raw[n], f"{where}.{n}") for n in names})
    origin = typing.get_origin(cls)
    args = typing.get_args(cls)
    if origin in (typing.Union, types.UnionType):
        if raw is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)][0]
        return _build(inner, raw, where)
    if cls is Any:
        return raw
    if origin is list:  # a list that may be empty (a tuple[x, ...] may not)
        if not isinstance(raw, list | tuple):
            raise ParamsError(f"{where}: expected a list, got {raw!r}")
        return tuple(_build(args[0], v, where) for v in raw)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        if not isinstance(raw, list | tuple) or not raw:
            raise ParamsError(f"{where}: expected a non-empty list, got {raw!r}")
        return tuple(_build(args[0], v, where) for v in raw)
    if origin is tuple:
        if not isinstance(raw, list | tuple) or len(raw) != len(args):
            raise ParamsError(f"{where}: expected a list of {len(args)} values, got {raw!r}")
        return tuple(_build(a, v, where) for a, v in zip(args, raw, strict=True))
    if origin is dict:
        if not isinstance(raw, dict):
            raise ParamsError(f"{where}: expected a mapping, got {raw!r}")
        return {str(k): _build(args[1], v, f"{where}.{k}") for k, v in raw.items()}
    if cls is bool:
        if not isinstance(raw, bool):
            raise ParamsError(f"{where}: expected true or false, got {raw!r}")
        return raw
    if cls in (int, float, str):
        try:
            value = cls(raw)
        except (TypeError, ValueError):
            raise ParamsError(f"{where}: expected {cls.__name__}, got {raw!r}") from None
        if cls is int and isinstance(raw, float) and raw != value:
            raise ParamsError(f"{where}: expected an integer, got {raw!r}")
        return value
    raise ParamsError(f"{where}: unsupported type {cls}")


def range_problems(section, where: str) -> list[str]:
    """'<key> = <value> (must be in <interval>)' for every value outside its field's declared range."""
    problems = []
    for f in dataclasses.fields(section):
        value, name = getattr(section, f.name), f"{where}.{f.name}"
        if dataclasses.is_dataclass(value):
            problems += range_problems(value, name)
        elif "range" in f.metadata:
            for key, v in value.items() if isinstance(value, dict) else [(None, value)]:
                if not all(inside(x, f.metadata["range"]) for x in (v if isinstance(v, tuple) else [v])):
                    shown = list(v) if isinstance(v, tuple) else v
                    problems.append(
                        f"{name}{'' if key is None else '.' + key} = {shown} (must be in {f.metadata['range']})"
                    )
    return problems


def synth_order_problems(s: SynthParams) -> list[str]:
    """The [min, max] pairs of the synthetic distractors out of order."""
    problems = []
    for name in ("vesicle_radius", "blob_radius", "lookalike_mass_kda"):
        lo, hi = getattr(s.distractors, name)
        if lo > hi:
            problems.append(f"synth.distractors.{name} = {[lo, hi]} (must be [min, max] with min <= max)")
    return problems


def _consistency_problems(p: Params) -> list[str]:
    """Ranges that depend on another value."""
    s = p.synth
    problems = synth_order_problems(s)
    start, stop, step = p.predict.threshold_grid
    if not (start <= stop and step > 0):
        problems.append(f"predict.threshold_grid = {[start, stop, step]} (must be start <= stop and step > 0)")
    extractors, sources = (AUTO, *EXTRACTORS), ("checkpoint", "params")
    if p.predict.extractor not in extractors:
        problems.append(f"predict.extractor = {p.predict.extractor} (must be one of {', '.join(extractors)})")
    if p.predict.plan_source not in sources:
        problems.append(f"predict.plan_source = {p.predict.plan_source} (must be one of {', '.join(sources)})")
    if p.predict.min_blob_fraction > p.predict.max_blob_fraction:
        problems.append(
            f"predict.min_blob_fraction = {p.predict.min_blob_fraction} (must be <= predict.max_blob_fraction "
            f"= {p.predict.max_blob_fraction})"
        )
    if p.repro.cpu_isa not in ISAS:
        problems.append(f"repro.cpu_isa = {p.repro.cpu_isa} (must be one of {', '.join(ISAS)})")
    r = p.train.replicates
    if len(set(r.seeds)) != len(r.seeds) or set(r.seeds) & set(p.train.seeds):
        problems.append(f"train.replicates.seeds = {list(r.seeds)} (must be distinct and not in train.seeds)")
    if r.seeds:
        problems += _block_key_problems("train.replicates", r, p.study, empty_allowed=True)
    problems += _rerun_problems(p)
    if len(set(p.train.seeds)) != len(p.train.seeds):
        problems.append(f"train.seeds = {list(p.train.seeds)} (must be distinct: each names a replicate)")
    if p.train.tversky_alpha + p.train.tversky_beta <= 0:
        problems.append("train.tversky_alpha + train.tversky_beta = 0 (must be > 0)")
    n_val = round(p.split.val_fraction * p.split.runs_per_sample)
    if not 1 <= n_val < p.split.runs_per_sample:
        problems.append(
            f"split.val_fraction = {p.split.val_fraction} (of split.runs_per_sample = {p.split.runs_per_sample} "
            "runs it must leave at least one validation and one training run)"
        )
    if p.data.source == "synthetic":
        needed = p.split.test_runs + 2 * p.split.runs_per_sample
        if s.runs < needed:
            problems.append(
                f"synth.runs = {s.runs} (must be >= split.test_runs + 2 x split.runs_per_sample = {needed})"
            )
        for key, paper in p.study.patches.items():
            patch = [round(a * b) for a, b in zip(paper, p.train.patch_scale, strict=True)]
            if any(a > b for a, b in zip(patch, s.shape, strict=True)):
                problems.append(
                    f"study.patches.{key} x train.patch_scale = {patch} (must fit in synth.shape = {list(s.shape)})"
                )
    return problems


def _block_key_problems(name: str, block, study: StudyParams, empty_allowed: bool) -> list[str]:
    """A block's (replicates', reruns') channel, patch and sample keys that the study does not have."""
    problems = []
    for kind, keys, allowed in (
        ("channels", block.channels, study.channels),
        ("patches", block.patches, study.patches),
        ("samples", block.samples, study.samples),
    ):
        if (not keys and not empty_allowed) or [k for k in keys if k not in allowed]:
            problems.append(f"{name}.{kind} = {list(keys)} (must be keys of study.{kind})")
    return problems


def _rerun_problems(p: Params) -> list[str]:
    """The rerun block recomputes runs the study has, with a thread count other than theirs."""
    r, block = p.train.reruns, p.train.replicates
    if not r.seeds:
        return []
    problems = []
    if len(set(r.seeds)) != len(r.seeds):
        problems.append(f"train.reruns.seeds = {list(r.seeds)} (must be distinct)")
    if r.threads == p.repro.cpu_threads:
        problems.append(
            f"train.reruns.threads = {r.threads} (must differ from repro.cpu_threads: the same threads give the same "
            "bits, so the pairs would measure nothing)"
        )
    problems += _block_key_problems("train.reruns", r, p.study, empty_allowed=False)
    replicated = set(r.channels) <= set(block.channels) and set(r.patches) <= set(block.patches)
    replicated = replicated and set(r.samples) <= set(block.samples)
    trained = set(p.train.seeds) | (set(block.seeds) if replicated else set())
    if set(r.seeds) - trained:
        problems.append(
            f"train.reruns.seeds = {list(r.seeds)} (must be seeds the study trains at those keys: train.seeds, and "
            "train.replicates.seeds where the block holds them)"
        )
    return problems


def study_problems(study: StudyParams) -> list[str]:
    """The study's vocabulary that makes no grid: a map that names nothing (no cell at all, an empty table), a key
    that cannot join a cell name, a baseline that is not one of its models, a sample not named as the split names it."""
    problems = [
        f"study.{name} = {{}} (must name at least one)"
        for name in ("models", "channels", "patches")
        if not getattr(study, name)
    ]
    for name in ("models", "channels", "patches", "samples"):
        bad = [k for k in getattr(study, name) if not KEY.match(k)]
        if bad:
            problems.append(f"study.{name} key '{bad[0]}' (must be lower-case letters, digits and '_' only)")
    if study.baseline not in study.models:
        problems.append(f"study.baseline = {study.baseline} (must be one of study.models: {', '.join(study.models)})")
    bad = [k for k in study.samples if not re.fullmatch(r"s\d+", k)]
    if bad:
        problems.append(f"study.samples entry '{bad[0]}' (must be s<number>, naming a sample of the split)")
    return problems


def model_problems(study: StudyParams) -> list[str]:
    """Each study model whose attention block cannot be built with its attention_kwargs at the study's channel
    counts (an unknown name, option or value), which a network would otherwise meet as a traceback. Imports torch
    (seconds): only for the commands that build networks (load_params' `check_models`)."""
    from src.models.attention import attention_problem

    counts = {c for sizes in study.channels.values() for c in sizes}
    found = {key: attention_problem(m.attention, m.attention_kwargs, counts) for key, m in study.models.items()}
    return [f"study.models.{key}: {problem}" for key, problem in found.items() if problem]


def parse_params(raw: dict, check_models: bool = False) -> Params:
    """Params from params.yaml's content; every value out of range is reported at once. `check_models`: also build
    each model's attention block once (see `model_problems`)."""
    params = _build(Params, raw, "params")
    problems = range_problems(params, "params")
    problems = [q.removeprefix("params.") for q in problems] + _consistency_problems(params)
    problems += study_problems(params.study)
    if problems:
        raise ParamsError(f"{len(problems)} params out of range: " + "; ".join(problems))
    if check_models:  # after the ranges: the blocks are built at the channel counts, which must be valid
        unbuildable = model_problems(params.study)
        if unbuildable:
            raise ParamsError("; ".join(unbuildable))
    return params


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error (PyYAML keeps the last one
    silently, so an edit above a forgotten older line would not take effect)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value if isinstance(node, yaml.MappingNode) else ():
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # a merge (<<) brings keys that this mapping may override
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue  # the base loader's error
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, f"found duplicate key '{key}'", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_params(path: str | Path = PARAMS_FILE, check_models: bool = False) -> Params:
    """params.yaml, checked; `check_models` for the commands that build networks from it (see `model_problems`)."""
    path = Path(path)
    if not path.exists():
        raise ParamsError(
            f"{path} not found: run from the repository root or a workspace (python -m src workspace DIR)"
        )
    try:
        raw = yaml.load(path.read_text(), Loader=UniqueKeyLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = getattr(err, "problem", None) or type(err).__name__
        raise ParamsError(f"{path}: not valid YAML, {what}{at}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ParamsError(f"{path}: cannot read it ({getattr(err, 'strerror', None) or err})") from None
    if raw is None:
        raise ParamsError(f"{path} is empty")
    return parse_params(raw, check_models)
