"""Synthetic cryo-ET tomograms in the CZII copick layout, so every later stage runs the same code on real and fake data.

Each tomogram is made in steps, each with its parameters in params.yaml (`synth:`):

1. Placement: per-class counts from the paper's Table 2 (per 184 x 630 x 630 tomogram), scaled to the volume and by
   `count_scale`, Poisson-drawn; particles, vesicles and blobs are placed largest first at uniform random positions,
   rejected when closer than the sum of radii plus `min_gap` to anything already placed (no overlap); a
   `cluster_fraction` of particles is placed next to one of their own class, as real particles aggregate.
2. Particles: each class's shape is a few soft ellipsoid "lobes" in units of its radius (`PARTICLE_SHAPES`): hollow
   shells for apo-ferritin and the VLP capsid, two lobes for the ribosome, an elongated dimer for thyroglobulin, four
   lobes for beta-galactosidase, a compact body for beta-amylase. Its density map is the UNION of its lobes (a voxel
   holds protein or not: density 1, never a sum of overlapping lobes), sized to the class's molecular mass: solid
   shapes are scaled to the volume mass / protein_density, shells keep their outer radius and get the wall thickness
   their mass fills (`synth.particles`). Each particle gets a uniform random rotation (stored in its pick's
   `transformation_`).
3. Distractors (unlabelled): membrane vesicles (lipid bilayers seen as thin shells), protein-like blobs, and compact
   "look-alike" proteins with the masses of the hard classes.
4. Imaging, in one Fourier pass: a phase-contrast CTF (voltage, defocus, Cs, amplitude contrast, B-factor envelope),
   a missing wedge from a +-`tilt_range_deg` tilt series about y, and white noise passed through the same wedge,
   scaled to the set SNR (signal variance / noise variance). The result is the raw `wbp` type; a Gaussian low-pass
   of it is the `denoised` type.
Same seed, same bytes: each run draws from its own generator seeded by (seed, run index).
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import scipy.fft
from scipy.spatial.transform import Rotation

from src.atomic import atomic_output
from src.classes import ParticleClass
from src.data import portable_math as pmath
from src.data.copick_io import (
    picks_file_name,
    spacing_folder,
    voxel_to_angstrom,
    write_copick_config,
    write_picks_json,
    write_zarr_tomogram,
)
from src.errors import UserError
from src.params import ImagingParams, ParticleParams, SynthParams, range_problems, synth_order_problems
from src.progress import each

# The paper's per-tomogram counts refer to the CZII tomograms' size.
REFERENCE_SHAPE = (184, 630, 630)
REFERENCE_SPACING = 10.012444  # Angstrom: the counts are per physical volume, whatever the voxel size
TOMO_TYPES = ("wbp", "denoised")


@dataclass(frozen=True)
class Lobe:
    """A soft ellipsoid in a particle's own frame, in units of the class radius; `hollow` > 0 makes it a shell whose
    inner surface sits at that fraction of the outer one."""

    centre: tuple[float, float, float]
    semi_axes: tuple[float, float, float]
    hollow: float = 0.0
    density: float = 1.0


PARTICLE_SHAPES: dict[str, tuple[Lobe, ...]] = {
    # 24-mer cage: 12 nm outer, 8 nm inner cavity.
    "apo-ferritin": (Lobe((0, 0, 0), (1.0, 1.0, 1.0), hollow=0.67),),
    # Compact tetramer: a slightly flattened body with a shallow bump.
    "beta-amylase": (Lobe((0, 0, 0), (0.95, 0.8, 0.7)), Lobe((0.45, 0.35, 0), (0.4, 0.35, 0.35))),
    # D2 tetramer: four lobes in a plane.
    "beta-galactosidase": tuple(Lobe((sx * 0.35, sy * 0.3, 0), (0.5, 0.5, 0.45)) for sx in (-1, 1) for sy in (-1, 1)),
    # Large and small subunit.
    "ribosome": (Lobe((0, 0.18, 0), (0.8, 0.68, 0.75)), Lobe((0.03, -0.55, 0.03), (0.44, 0.34, 0.42))),
    # Elongated dimer.
    "thyroglobulin": (Lobe((-0.47, 0, 0), (0.52, 0.36, 0.36)), Lobe((0.47, 0, 0), (0.52, 0.36, 0.36))),
    # T = 3 capsid: a thin shell (its thickness comes from the mass).
    "virus-like-particle": (Lobe((0, 0, 0), (1.0, 1.0, 1.0), hollow=0.86),),
}
GENERIC_SHAPE = (Lobe((0, 0, 0), (1.0, 1.0, 1.0)),)


@dataclass
class PlacedObject:
    kind: str  # a class name, "vesicle", "blob" or "lookalike"
    centre_zyx: np.ndarray  # voxels, continuous
    radius: float  # voxels
    rotation: np.ndarray  # (3, 3), object frame (x, y, z) -> tomogram frame (x, y, z)
    annotated: bool = True  # a particle without a pick: in the volume, not in the ground truth


def _lobes_density(offsets_xyz: np.ndarray, lobes: tuple[Lobe, ...], radius: float, edge: float) -> np.ndarray:
    """Density of the union of soft ellipsoids at points given in the object frame (voxels): where lobes overlap the
    densest one counts, so a voxel never holds more than one lobe's density. `edge` is the soft edge in voxels."""
    out = np.zeros(offsets_xyz.shape[:-1], dtype=np.float32)
    for lobe in lobes:
        q = (offsets_xyz - np.asarray(lobe.centre) * radius) / (np.asarray(lobe.semi_axes) * radius)
        d = np.sqrt((q * q).sum(-1))  # 1 on the ellipsoid surface
        scale = min(lobe.semi_axes) * radius / edge
        solid = pmath.sigmoid(np.clip((1.0 - d) * scale, -30, 30))
        if lobe.hollow > 0:
            solid = solid - pmath.sigmoid(np.clip((lobe.hollow - d) * scale, -30, 30))
        np.maximum(out, lobe.density * solid.astype(np.float32), out=out)
    return out


def _norm(v: np.ndarray) -> np.ndarray:
    """Euclidean length along the last axis, summed in numpy rather than by BLAS (whose kernels differ by CPU)."""
    return np.sqrt((v * v).sum(-1))


def _rotate_rows(points: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """points (..., 3) @ rotation (3, 3) in float64, written out so that no BLAS kernel (CPU-specific) computes it."""
    p = points.astype(np.float64, copy=False)
    r = np.asarray(rotation, dtype=np.float64)
    return np.stack([p[..., 0] * r[0, j] + p[..., 1] * r[1, j] + p[..., 2] * r[2, j] for j in range(3)], axis=-1)


RNA_DENSITY = 1.5  # packaged RNA's density relative to protein's (1.7-2.0 against 1.35 g/cm3)
EDGE = 0.7  # voxels: the soft edge of every object (a sigmoid), so that a particle is not aliased on the grid


def _soft_volume(lobes: tuple[Lobe, ...], radius: float) -> float:
    """Integrated density (voxels) of the union of `lobes` at `radius` voxels, soft edges included."""
    half = int(np.ceil(radius * 1.6 + 2 * EDGE)) + 1
    axis = np.arange(-half, half + 1, dtype=np.float32)
    z, y, x = np.meshgrid(axis, axis, axis, indexing="ij")
    return float(_lobes_density(np.stack([x, y, z], axis=-1), lobes, radius, EDGE).sum())


def _bisect(f, low: float, high: float, steps: int = 24) -> float:
    """The x in [low, high] where the increasing function f crosses 0."""
    for _ in range(steps):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if f(mid) < 0 else (low, mid)
    return 0.5 * (low + high)


def protein_volume(mass_kda: float, particles: ParticleParams) -> float:
    """Cubic Angstrom of protein in a molecule of this mass."""
    return mass_kda * 1000.0 / particles.protein_density


@functools.lru_cache(maxsize=256)
def fit_to_mass(name: str, lobes: tuple[Lobe, ...], radius: float, volume: float) -> tuple[Lobe, ...]:
    """`lobes` (units of `radius` voxels) resized so that their union, soft edges included, integrates to `volume`
    voxels of density 1.

    A single hollow lobe is a shell: its outer surface stays and its inner one moves until the wall holds the volume.
    Any other shape keeps its proportions and is scaled as a whole.
    """
    if len(lobes) == 1 and lobes[0].hollow > 0:
        lobe = lobes[0]
        solid = _soft_volume((replace(lobe, hollow=0.0),), radius)
        if volume >= solid:
            raise UserError(
                f"{name}: its mass fills {volume:.3g} voxels, more than the {solid:.3g} inside its outer shell, so it "
                "cannot be a shell (lower synth.particles.mass_kda)"
            )
        hollow = _bisect(lambda h: volume - _soft_volume((replace(lobe, hollow=h),), radius), 0.0, 1.0)
        return (replace(lobe, hollow=hollow),)

    def scaled(f: float) -> tuple[Lobe, ...]:
        return tuple(
            replace(lobe, centre=tuple(c * f for c in lobe.centre), semi_axes=tuple(a * f for a in lobe.semi_axes))
            for lobe in lobes
        )

    factor = _bisect(lambda f: _soft_volume(scaled(f), radius) - volume, 0.05, 3.0)
    return scaled(factor)


def class_lobes(
    classes: tuple[ParticleClass, ...], particles: ParticleParams, spacing: float
) -> dict[str, tuple[Lobe, ...]]:
    """Each class's lobes (units of its pick radius) sized to its mass at this voxel spacing; a class without a mass
    keeps its envelope."""
    out = {}
    for c in classes:
        lobes = PARTICLE_SHAPES.get(c.name, GENERIC_SHAPE)
        radius = c.radius / spacing
        if c.name in particles.mass_kda:
            volume = protein_volume(particles.mass_kda[c.name], particles) / spacing**3
            lobes = fit_to_mass(c.name, lobes, radius, volume)
        if particles.cargo_kda.get(c.name, 0) > 0:
            _check_cargo(c.name, lobes, radius, protein_volume(particles.cargo_kda[c.name], particles) / spacing**3)
        out[c.name] = lobes
    return out


def _check_cargo(name: str, lobes: tuple[Lobe, ...], radius: float, volume: float) -> None:
    if len(lobes) != 1 or lobes[0].hollow <= 0:
        raise UserError(f"synth.particles.cargo_kda.{name}: only a shell class can hold cargo")
    cavity = 4.0 / 3.0 * math.pi * (lobes[0].hollow * radius) ** 3
    if volume > 0.5 * cavity:
        raise UserError(f"synth.particles.cargo_kda.{name}: the cargo would fill more than half of its cavity")


@functools.lru_cache(maxsize=64)
def _sphere_radius_holding(volume: float) -> float:
    """Radius (voxels) of a soft-edged sphere whose density integrates to `volume` voxels."""
    sphere = (Lobe((0, 0, 0), (1.0, 1.0, 1.0)),)
    return _bisect(lambda r: _soft_volume(sphere, r) - volume, 0.05, 50.0)


def _random_packing(rng: np.random.Generator, count: int, size: float, cavity: float) -> np.ndarray | None:
    """`count` centres of spheres of radius `size` inside a sphere of radius `cavity`, apart by their soft edges too
    (random sequential addition), or None when they do not fit."""
    room = cavity - size - 2 * EDGE
    centres = np.empty((0, 3))
    for _ in range(500 * count):
        if len(centres) == count or room < 0:
            break
        c = rng.uniform(-room, room, size=3) if room > 0 else np.zeros(3)
        if _norm(c) <= room and np.all(_norm(centres - c) >= 2 * (size + EDGE)):
            centres = np.vstack([centres, c])
    return centres if len(centres) == count else None


def cargo_granules(
    rng: np.random.Generator, shell: Lobe, radius: float, volume: float, granule: float
) -> tuple[Lobe, ...]:
    """Packaged cargo (e.g. RNA in a VLP) as non-overlapping protein-dense granules of radius `granule` (voxels) that
    hold `volume` voxels together, at random inside the shell's cavity: granular, so it survives the CTF's cut of
    low frequencies as real packaged RNA does. Lobes in units of `radius`."""
    unit = 4.0 / 3.0 * math.pi * granule**3
    # Fewer, larger granules where the cavity is too small (in voxels) to hold them apart: a coarse grid.
    for count in range(max(1, int(round(volume / unit))), 0, -1):
        size = _sphere_radius_holding(volume / count)  # soft edges included, so the total is exact
        centres = _random_packing(rng, count, size, shell.hollow * radius)
        if centres is not None:
            break
    else:
        raise UserError(f"the cargo ({volume:.3g} voxels) does not fit in its shell's cavity: lower the cargo mass")
    granules = tuple(Lobe(tuple(float(v) for v in c / radius), (size / radius,) * 3) for c in centres)
    # Soft tails still overlap a little; the granules' density makes up for it. Packaged RNA is denser than
    # protein (about 1.7-2.0 against 1.35 g/cm3), so a density above 1, up to RNA_DENSITY, is physical.
    density = volume / _soft_volume(granules, radius)
    if density > RNA_DENSITY:
        raise UserError(f"{count} cargo granules of {size:.2g} voxels overlap too much: raise the granule size")
    return tuple(replace(g, density=density) for g in granules)


def check_realism(settings: SynthParams) -> None:
    """Realism parameters that would make a NaN or meaningless volume, with the ranges params.yaml declares (for
    settings built in code too): one sentence before any work."""
    problems = range_problems(settings.particles, "synth.particles")
    problems += range_problems(settings.placement, "synth.placement") + synth_order_problems(settings)
    if not settings.imaging.snr > 0:  # in code, .inf means no noise
        problems.append(f"synth.imaging.snr = {settings.imaging.snr:g} (must be > 0, .inf for no noise)")
    if problems:
        raise UserError("; ".join(problems))


def _stamp(volume: np.ndarray, obj: PlacedObject, lobes: tuple[Lobe, ...], edge: float = EDGE) -> None:
    """Add one object's density to `volume`, evaluated on the voxels of its bounding box (clipped to the volume)."""
    half = int(np.ceil(obj.radius + 2 * edge)) + 1
    lo = np.floor(obj.centre_zyx).astype(int) - half
    hi = lo + 2 * half + 1
    clo = np.maximum(lo, 0)
    chi = np.minimum(hi, volume.shape)
    if np.any(chi <= clo):
        return
    axes = [np.arange(a, b, dtype=np.float32) - c for a, b, c in zip(clo, chi, obj.centre_zyx, strict=True)]
    z, y, x = np.meshgrid(*axes, indexing="ij")
    offsets_xyz = _rotate_rows(np.stack([x, y, z], axis=-1), obj.rotation)  # tomogram frame -> object frame
    volume[clo[0] : chi[0], clo[1] : chi[1], clo[2] : chi[2]] += _lobes_density(offsets_xyz, lobes, obj.radius, edge)


def _place(
    rng: np.random.Generator,
    shape: tuple[int, int, int],
    wanted: list[tuple[str, float]],
    gap: float,
    margin: float,
    cluster_fraction: float = 0.0,
    attempts: int = 200,
) -> list[PlacedObject]:
    """Random non-overlapping placement, largest first; an object that finds no room after `attempts` is skipped.

    With probability `cluster_fraction` a particle is tried next to one of its own class already placed (a shell
    between touching and one radius apart), since real particles aggregate; distractors are placed uniformly.
    """
    placed: list[PlacedObject] = []
    centres = np.empty((0, 3))
    radii = np.empty(0)
    for kind, radius in sorted(wanted, key=lambda kr: -kr[1]):
        # Vesicles may be cut by the volume's edge, as real membranes are; particles stay inside.
        inset = 0.0 if kind == "vesicle" else margin * radius
        low = np.full(3, inset)
        high = np.array(shape, dtype=float) - 1 - inset
        if np.any(high < low):
            continue
        kin = [o for o in placed if o.kind == kind and kind not in ("vesicle", "blob")]
        for _ in range(attempts):
            if kin and rng.random() < cluster_fraction:
                anchor = kin[int(rng.integers(len(kin)))]
                direction = rng.normal(size=3)
                distance = anchor.radius + radius + gap + rng.uniform(0, radius)
                c = anchor.centre_zyx + direction / _norm(direction) * distance
                if np.any(c < low) or np.any(c > high):
                    continue
            else:
                c = rng.uniform(low, high)
            if len(radii) == 0 or np.all(_norm(centres - c) >= radii + radius + gap):
                placed.append(PlacedObject(kind, c, radius, Rotation.random(rng=rng).as_matrix()))
                centres = np.vstack([centres, c])
                radii = np.append(radii, radius)
                break
    return placed


def _frequency_grids(shape: tuple[int, int, int], voxel_spacing: float):
    """Broadcastable kz, ky, kx (1/Angstrom) for an rfftn of `shape`."""
    kz = scipy.fft.fftfreq(shape[0], d=voxel_spacing).astype(np.float32)[:, None, None]
    ky = scipy.fft.fftfreq(shape[1], d=voxel_spacing).astype(np.float32)[None, :, None]
    kx = scipy.fft.rfftfreq(shape[2], d=voxel_spacing).astype(np.float32)[None, None, :]
    return kz, ky, kx


def _variance_from_spectrum(spectrum: np.ndarray, shape: tuple[int, int, int]) -> float:
    """Variance of the real signal of an rfftn spectrum (Parseval, counting the rfft's mirrored half twice)."""
    n = int(np.prod(shape))
    power = spectrum.real.astype(np.float64) ** 2 + spectrum.imag.astype(np.float64) ** 2  # |z|^2 without hypot
    weights = np.full(spectrum.shape[-1], 2.0)
    weights[0] = 1.0
    if shape[-1] % 2 == 0:
        weights[-1] = 1.0
    total = float((power.sum(axis=(0, 1)) * weights).sum())
    mean_sq = float(power[0, 0, 0])
    return (total - mean_sq) / n**2


def _electron_wavelength(voltage_kv: float) -> float:
    """Relativistic electron wavelength in Angstrom."""
    v = voltage_kv * 1e3
    return 12.2643 / np.sqrt(v * (1 + 0.978466e-6 * v))


def image(
    density: np.ndarray, voxel_spacing: float, imaging: ImagingParams, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """CTF, missing wedge and noise applied to a density; returns the `wbp` and `denoised` volumes (z-scored)."""
    shape = density.shape
    workers = -1
    spectrum = scipy.fft.rfftn(density, workers=workers)
    kz, ky, kx = _frequency_grids(shape, voxel_spacing)
    k2 = kz**2 + ky**2 + kx**2
    if imaging.ctf:
        lam = _electron_wavelength(imaging.voltage_kv)
        chi = (
            np.pi * lam * imaging.defocus_um * 1e4 * k2
            - 0.5 * np.pi * imaging.spherical_aberration_mm * 1e7 * (lam**3) * k2**2
        )
        a = imaging.amplitude_contrast
        sin_chi, cos_chi = pmath.sin_cos(chi)
        transfer = -(np.sqrt(1 - a * a) * sin_chi + a * cos_chi) * pmath.exp(-imaging.bfactor * k2 / 4)
    else:
        transfer = -np.ones_like(k2)  # keep the phase-contrast sign: protein darker than ice
    # Missing wedge: a tilt series about y over +-theta measures only |kz| <= tan(theta) |kx|.
    wedge = np.abs(kz) <= pmath.tan(imaging.tilt_range_deg * (np.pi / 180.0)) * np.abs(kx)
    wedge[0, 0, 0] = True
    spectrum *= (transfer * wedge).astype(np.float32)
    noise = scipy.fft.rfftn(rng.standard_normal(shape, dtype=np.float32), workers=workers)
    noise *= wedge
    signal_var = _variance_from_spectrum(spectrum, shape)
    noise_var = _variance_from_spectrum(noise, shape)
    # The SNR is set for voxels of the CZII size; a voxel of k times the volume averages k times the dose.
    snr = imaging.snr * (voxel_spacing / REFERENCE_SPACING) ** 3
    if snr > 0 and noise_var > 0 and signal_var > 0:
        spectrum += noise * np.float32(np.sqrt(signal_var / (snr * noise_var)))
    del noise
    raw = scipy.fft.irfftn(spectrum, s=shape, workers=workers)
    spectrum *= pmath.exp(-2 * np.pi**2 * imaging.denoise_sigma**2 * k2).astype(np.float32)
    smooth = scipy.fft.irfftn(spectrum, s=shape, workers=workers)
    return {"wbp": _zscore(raw), "denoised": _zscore(smooth)}


def _zscore(v: np.ndarray) -> np.ndarray:
    # float64 sums (numpy's pairwise summation, the same order on every CPU), then one rounding to float32
    v = v.astype(np.float64, copy=False)
    centred = v - v.sum() / v.size
    sd = np.sqrt((centred * centred).sum() / v.size)
    return (centred / max(float(sd), 1e-12)).astype(np.float32)


def draw_objects(
    rng: np.random.Generator, settings: SynthParams, shape: tuple[int, int, int], classes: tuple[ParticleClass, ...]
) -> list[PlacedObject]:
    """How many of each object, how large (voxels), then where."""
    placement, distractors, spacing = settings.placement, settings.distractors, settings.voxel_spacing
    physical = float(np.prod(shape)) * (spacing / REFERENCE_SPACING) ** 3
    volume_ratio = physical / float(np.prod(REFERENCE_SHAPE)) * placement.count_scale
    wanted: list[tuple[str, float]] = []
    for c in classes:
        mean = placement.counts.get(c.name, 0.0) * volume_ratio
        n = max(placement.min_per_class, int(rng.poisson(mean)))
        wanted += [(c.name, c.radius / spacing)] * n
    for _ in range(int(rng.poisson(distractors.vesicles * volume_ratio))):
        wanted.append(("vesicle", rng.uniform(*distractors.vesicle_radius) / spacing))
    for _ in range(int(rng.poisson(distractors.blobs * volume_ratio))):
        wanted.append(("blob", rng.uniform(*distractors.blob_radius) / spacing))
    for _ in range(int(rng.poisson(distractors.lookalikes * volume_ratio))):
        volume = protein_volume(rng.uniform(*distractors.lookalike_mass_kda), settings.particles)
        wanted.append(("lookalike", pmath.cbrt(3.0 * volume / (4.0 * math.pi)) / spacing))
    gap = placement.min_gap / spacing
    placed = _place(rng, shape, wanted, gap, placement.edge_margin, placement.cluster_fraction)
    for obj in placed:  # real annotators miss some particles of the hard classes
        obj.annotated = not rng.random() < placement.unannotated.get(obj.kind, 0.0)
    return placed


def _object_parts(
    obj: PlacedObject, particle_lobes: dict[str, tuple[Lobe, ...]], settings: SynthParams, rng
) -> tuple[tuple[Lobe, ...], ...]:
    """The lobes of one object, per molecule: each part is a union of lobes, and parts add (a VLP's capsid and the
    RNA it packages are different molecules in different places)."""
    spacing = settings.voxel_spacing
    membrane_thickness_vox = settings.distractors.membrane_thickness / spacing
    if obj.kind == "vesicle":
        return ((Lobe((0, 0, 0), (1.0, 1.0, 1.0), hollow=max(0.0, 1 - membrane_thickness_vox / obj.radius)),),)
    if obj.kind == "blob":
        axes = tuple(float(a) for a in rng.uniform(0.6, 1.0, size=3))
        return ((Lobe((0, 0, 0), axes, density=float(rng.uniform(0.5, 1.0))),),)
    if obj.kind == "lookalike":  # a compact protein: an ellipsoid with the volume of a sphere of its radius
        axes = rng.uniform(0.7, 1.0, size=3)
        axes = axes / pmath.cbrt(axes[0] * axes[1] * axes[2])
        return ((Lobe((0, 0, 0), tuple(float(a) for a in axes)),),)
    lobes = particle_lobes.get(obj.kind, GENERIC_SHAPE)
    cargo = settings.particles.cargo_kda.get(obj.kind, 0.0)
    if cargo > 0:
        volume = protein_volume(cargo, settings.particles) / spacing**3
        granule = max(settings.particles.cargo_granule_radius / spacing, 2.0)  # no finer than the grid can hold
        return lobes, cargo_granules(rng, lobes[0], obj.radius, volume, granule)
    return (lobes,)


def synthesize_run(
    settings: SynthParams, run_index: int, classes: tuple[ParticleClass, ...]
) -> tuple[dict[str, np.ndarray], list[PlacedObject]]:
    """Tomogram `run_index` of `settings`: its volumes by type and the objects placed in it (particles and
    distractors)."""
    s = settings
    check_realism(s)
    particle_lobes = class_lobes(classes, s.particles, s.voxel_spacing)
    rng = np.random.default_rng([s.seed, run_index])
    objects = draw_objects(rng, s, s.shape, classes)
    density = np.zeros(s.shape, dtype=np.float32)
    for obj in objects:
        for lobes in _object_parts(obj, particle_lobes, s, rng):
            _stamp(density, obj, lobes)
    return image(density, s.voxel_spacing, s.imaging, rng), objects


def _write_run(
    root: Path, settings: SynthParams, classes: tuple[ParticleClass, ...], voxel_folder: float, run_index: int
) -> tuple[float, dict[str, int]]:
    """Synthesize run `run_index` of `settings` and write its tomograms and picks under `root`; (seconds, particles
    per class). The run index comes last so that a partial over the shared values maps over run indices."""
    start = time.perf_counter()
    s = settings
    run = f"{s.run_prefix}{run_index:03d}"
    volumes, objects = synthesize_run(s, run_index, classes)
    tomo_dir = root / "static" / "ExperimentRuns" / run / spacing_folder(voxel_folder)
    for tomo_type in TOMO_TYPES:
        write_zarr_tomogram(tomo_dir / f"{tomo_type}.zarr", volumes[tomo_type], s.voxel_spacing)
    picks_dir = root / "overlay" / "ExperimentRuns" / run / "Picks"
    counts = {}
    for c in classes:
        mine = [o for o in objects if o.kind == c.name and o.annotated]
        centres = np.array([o.centre_zyx for o in mine]).reshape(-1, 3)
        rotations = np.array([o.rotation for o in mine]).reshape(-1, 3, 3)
        write_picks_json(
            picks_dir / picks_file_name(c.name, s.picks_naming),
            c.name,
            run,
            voxel_to_angstrom(centres, s.voxel_spacing),
            s.voxel_spacing,
            rotations,
        )
        counts[c.name] = len(mine)
    return time.perf_counter() - start, counts


def synthesize_project(
    out: str | Path,
    settings: SynthParams,
    classes: tuple[ParticleClass, ...],
    voxel_folder: float,
    *,
    progress: bool = True,
    workers: int = 1,
    force: bool = False,
) -> dict:
    """Write a complete copick project of `settings.runs` synthetic tomograms to `out` (replaced atomically at the end).

    `settings` is params.yaml's `synth:` section: number of runs, shape (z, y, x voxels), true voxel spacing
    (Angstrom), seed, run-name prefix, picks file naming, and the placement, distractor and imaging steps; to change a
    few of them, pass `dataclasses.replace(params.synth, runs=..., shape=...)`. `voxel_folder` is the spacing that
    names the VoxelSpacing folder (params.yaml's `data.voxel_spacing`), which may differ from the true spacing as in
    the CZII data (10.000 vs 10.012 A).
    `workers` > 1 makes runs in that many processes; each run has its own generator, so the bytes are the same.
    Memory grows with it: a 184 x 630 x 630 run needs about 3 GB while it is made.
    `out` may replace only a folder that this program made (or an empty one) unless `force`.
    Returns a summary: seconds per run and particle counts per class.
    """
    runs, shape = settings.runs, settings.shape
    if runs < 1 or len(shape) != 3 or min(shape) < 8:
        raise UserError(f"need at least 1 run and a shape of 3 sizes >= 8 voxels, got runs={runs}, shape={shape}")
    if workers < 1:
        raise UserError(f"workers must be at least 1, got {workers}")
    picks_file_name(classes[0].name, settings.picks_naming)  # fail on a bad naming before any work
    check_realism(settings)
    class_lobes(classes, settings.particles, settings.voxel_spacing)  # a mass that cannot fit its shape, too
    counts = {c.name: 0 for c in classes}
    seconds = []
    with atomic_output(out, folder=True, force=force) as tmp:
        write_copick_config(
            tmp / "copick_config.json",
            classes,
            name="synthetic-czii",
            description=f"Synthetic CZII-like tomograms: {runs} runs of {shape}, seed {settings.seed}",
        )
        # The settings are frozen and picklable: spawned workers get the same values, so they write the same bytes.
        task = functools.partial(_write_run, tmp, replace(settings, shape=tuple(shape)), classes, voxel_folder)
        with contextlib.ExitStack() as stack:
            if workers > 1:
                pool = stack.enter_context(ProcessPoolExecutor(min(workers, runs), mp_context=get_context("spawn")))
                results = pool.map(task, range(runs))
            else:
                results = map(task, range(runs))
            made = each(results, "synthetic tomograms", "run", progress, total=runs, label=None)
            for run_seconds, run_counts in made:
                seconds.append(run_seconds)
                for name, n in run_counts.items():
                    counts[name] += n
    return {"runs": runs, "shape": list(shape), "seconds_per_run": seconds, "particles": counts}
