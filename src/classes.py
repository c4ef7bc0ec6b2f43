"""The particle class table: the one place that states facts about particle classes.

A project's classes come from its copick config (`pickable_objects`: name, label, radius, ...); the competition's
score weights are not part of a copick config, so they are joined in here by name. The synthetic generator writes
`CZII_CLASSES` into the copick config it creates, and every other module reads classes back from a config.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from src.errors import UserError
from src.names import check_name


@dataclass(frozen=True)
class ParticleClass:
    """One pickable object. `radius` is in Angstrom, `label` is its index in label masks (0 is background)."""

    name: str
    label: int
    radius: float
    weight: float
    pdb_id: str | None = None
    color: tuple[int, int, int, int] = (128, 128, 128, 255)  # the copick config's; drawings use `display_colors`
    map_threshold: float | None = None
    is_particle: bool = True

    def copick_object(self) -> dict:
        """This class as a copick `pickable_objects` entry (the score weight is not a copick field)."""
        entry = asdict(self)
        entry.pop("weight")
        entry["color"] = list(self.color)
        return entry


# The CZII competition's six classes (docs/design.md section 2). Weight 0 means "present but not scored".
CZII_CLASSES: tuple[ParticleClass, ...] = (
    ParticleClass("apo-ferritin", 1, 60.0, 1.0, "4V1W", (0, 117, 220, 128), 0.0418),
    ParticleClass("beta-amylase", 2, 65.0, 0.0, "1FA2", (153, 63, 0, 128), 0.035),
    ParticleClass("beta-galactosidase", 3, 90.0, 2.0, "6X1Q", (76, 0, 92, 128), 0.0578),
    ParticleClass("ribosome", 4, 150.0, 1.0, "6EK0", (0, 92, 49, 128), 0.0374),
    ParticleClass("thyroglobulin", 5, 130.0, 2.0, "6SCJ", (43, 206, 72, 128), 0.0278),
    ParticleClass("virus-like-particle", 6, 135.0, 1.0, "6N4V", (255, 204, 153, 128), 0.201),
)

SCORE_WEIGHTS: dict[str, float] = {c.name: c.weight for c in CZII_CLASSES}

# The one palette that pictures and exported markers draw classes in: Okabe & Ito's colour-blind-safe set (RGB 0-255),
# less its black, which vanishes on a tomogram. The copick colours it replaces for drawing made two pairs hard to tell
# apart (ribosome / thyroglobulin both green, virus-like-particle / beta-amylase peach / brown).
CLASS_PALETTE: tuple[tuple[int, int, int], ...] = (
    (86, 180, 233),  # sky blue: apo-ferritin
    (230, 159, 0),  # orange: beta-amylase
    (204, 121, 167),  # reddish purple: beta-galactosidase
    (0, 158, 115),  # bluish green: ribosome
    (213, 94, 0),  # vermillion: thyroglobulin
    (0, 114, 178),  # blue: virus-like-particle
    (240, 228, 66),  # yellow: a seventh class
)


class ClassTableError(UserError):
    """A copick config whose classes cannot be used as given."""


def classes_from_copick(config: dict, weights: dict[str, float] | None = None) -> tuple[ParticleClass, ...]:
    """The particle classes of a copick config, sorted by label, with score weights joined by name.

    Only objects with `is_particle` true are returned. A class with no known weight is an error, since the score
    would silently change; pass `weights` to score classes the competition did not have.
    """
    weights = {**SCORE_WEIGHTS, **(weights or {})}
    classes = []
    for obj in config.get("pickable_objects", []):
        if not obj.get("is_particle", True):
            continue
        name = check_name(obj.get("name"), "class name", "the copick config", ClassTableError)
        if name not in weights:
            raise ClassTableError(f"class '{name}' has no score weight; add it under classes.weights in params.yaml")
        if obj.get("radius") is None or float(obj["radius"]) <= 0:
            raise ClassTableError(f"class '{name}' has no positive radius in the copick config")
        color = tuple(obj.get("color") or (128, 128, 128, 255))
        classes.append(
            ParticleClass(
                name=name,
                label=int(obj["label"]),
                radius=float(obj["radius"]),
                weight=float(weights[name]),
                pdb_id=obj.get("pdb_id"),
                color=color,
                map_threshold=obj.get("map_threshold"),
                is_particle=True,
            )
        )
    if not classes:
        raise ClassTableError("the copick config lists no particle classes under pickable_objects")
    labels = [c.label for c in classes]
    if len(set(labels)) != len(labels) or min(labels) < 1:
        raise ClassTableError(f"particle labels must be distinct and >= 1, got {labels}")
    return tuple(sorted(classes, key=lambda c: c.label))


def by_name(classes: tuple[ParticleClass, ...]) -> dict[str, ParticleClass]:
    return {c.name: c for c in classes}


def display_colors(classes: tuple[ParticleClass, ...]) -> dict[str, tuple[float, float, float]]:
    """Each class's drawing colour (RGB, 0-1) from CLASS_PALETTE in label order (the CZII classes get the colours
    named there); past the palette's length the colours repeat."""
    ordered = sorted(classes, key=lambda c: c.label)
    return {c.name: tuple(v / 255 for v in CLASS_PALETTE[i % len(CLASS_PALETTE)]) for i, c in enumerate(ordered)}
