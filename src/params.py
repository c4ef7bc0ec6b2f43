"""params.yaml -> one typed, frozen settings object. The only module that reads params.yaml.

Each section is a dataclass; unknown or missing keys are errors so that a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from src.errors import UserError

PARAMS_FILE = Path("params.yaml")


class ParamsError(UserError):
    """params.yaml does not match the expected sections and keys."""


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
    channels: dict[str, tuple[int, ...]]
    patches: dict[str, tuple[int, int, int]]
    samples: tuple[str, ...]


@dataclass(frozen=True)
class DataParams:
    source: str
    copick_config: str | None
    portal_dataset: int
    portal_dir: str
    tomo_type: str
    voxel_spacing: float
    picks_user: str | None
    out: str


@dataclass(frozen=True)
class ClassParams:
    weights: dict[str, float]


@dataclass(frozen=True)
class PlacementParams:
    counts: dict[str, float]
    count_scale: float
    min_per_class: int
    unannotated: dict[str, float]
    min_gap: float
    edge_margin: float
    cluster_fraction: float


@dataclass(frozen=True)
class ParticleParams:
    """How much each class weighs: the integrated density of its map is mass / protein_density."""

    protein_density: float
    mass_kda: dict[str, float]
    cargo_kda: dict[str, float]
    cargo_granule_radius: float


@dataclass(frozen=True)
class DistractorParams:
    vesicles: float
    vesicle_radius: tuple[float, float]
    membrane_thickness: float
    blobs: float
    blob_radius: tuple[float, float]
    lookalikes: float
    lookalike_mass_kda: tuple[float, float]


@dataclass(frozen=True)
class ImagingParams:
    ctf: bool
    voltage_kv: float
    defocus_um: float
    spherical_aberration_mm: float
    amplitude_contrast: float
    bfactor: float
    tilt_range_deg: float
    snr: float
    denoise_sigma: float


@dataclass(frozen=True)
class SynthParams:
    runs: int
    shape: tuple[int, int, int]
    voxel_spacing: float
    seed: int
    run_prefix: str
    picks_naming: str
    placement: PlacementParams
    particles: ParticleParams
    distractors: DistractorParams
    imaging: ImagingParams


@dataclass(frozen=True)
class MaskParams:
    label_radius_fraction: float


@dataclass(frozen=True)
class SplitParams:
    seed: int
    test_runs: int
    runs_per_sample: int
    val_fraction: float
    out: str


@dataclass(frozen=True)
class PredictParams:
    overlap: float
    sw_batch_size: int
    slab_depth: int
    tta_flips: str
    default_threshold: float
    min_blob_fraction: float
    max_blob_fraction: float
    threshold_grid: tuple[float, float, float]


@dataclass(frozen=True)
class AugmentParams:
    background_ratio: float
    flip_prob: float
    rotate90_prob: float
    affine_prob: float
    rotate_deg: float
    scale: float
    intensity_shift: float
    intensity_prob: float
    noise_std: float
    noise_prob: float


@dataclass(frozen=True)
class NetworkParams:
    """The backbone all models share: AttentionUNet3D's arguments other than channels and attention."""

    strides: tuple[int, int, int]
    num_res_units: int
    norm: str
    act: str
    dropout: float
    kernel_size: int
    up_kernel_size: int


@dataclass(frozen=True)
class TrainParams:
    patch_scale: tuple[float, float, float]
    models_dir: str
    metrics_dir: str
    network: NetworkParams
    epochs: int
    steps_per_epoch: int
    batch_size: int
    lr: float
    tversky_alpha: float
    tversky_beta: float
    val_every: int
    seed: int
    amp: bool
    augment: AugmentParams


@dataclass(frozen=True)
class ReportParams:
    out: str
    alpha: float
    confidence: float
    min_pairs: int
    bootstrap_resamples: int
    bootstrap_method: str
    bootstrap_seed: int
    decimals: int


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


def parse_params(raw: dict) -> Params:
    return _build(Params, raw, "params")


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path} not found: run from the repository root")
    with path.open() as f:
        return parse_params(yaml.safe_load(f))
