"""The post-processing plan a checkpoint carries: how its probability maps become points (as nnU-Net keeps its plans).

A plan names the point extractor (`argmax`, `components` or `peaks`, src/inference/points.py), the per-class
thresholds tuned for each extractor on validation, the label-sphere and blob/window sizes, and the test-time flips.
`predict` applies the checkpoint's plan; params.yaml's `predict.plan_source: params` overrides it with params' values.
A checkpoint written before plans existed predicts with params (and the thresholds it holds, tuned for argmax).
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass

from src.errors import DataError
from src.fields import ANY_TEXT, NUMBER, OBJECT, field, map_of, one_of
from src.params import AUTO, EXTRACTORS, SELECTABLE, Params  # the extractors' names, which params.yaml checks

# A stored plan's fields, checked when a checkpoint is loaded (`PostprocessPlan.check`).
PLAN_FIELDS = {
    "extractor": one_of(*EXTRACTORS),
    "thresholds": map_of(map_of(NUMBER)),
    "label_radius_fraction": NUMBER,
    "min_blob_fraction": NUMBER,
    "max_blob_fraction": NUMBER,
    "peak_radius_fraction": NUMBER,
    "tta_flips": ANY_TEXT,
}


@dataclass(frozen=True)
class PostprocessPlan:
    """Everything between the network's softmax and the points, as plain data (it is stored in checkpoints)."""

    extractor: str  # one of EXTRACTORS: the one predict uses
    thresholds: dict[str, dict[str, float]]  # extractor -> class name -> probability threshold
    label_radius_fraction: float  # label sphere: this x the class radius (the blob-size bounds scale with it)
    min_blob_fraction: float  # components: blobs under this x the label-sphere volume are dropped
    max_blob_fraction: float  # components: blobs over this x the label-sphere volume are dropped
    peak_radius_fraction: float  # peaks: one peak per this x the class radius (the non-maximum suppression radius)
    tta_flips: str  # axes among "zyx" flipped one at a time at inference ("" = none)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def check(cls, d, where: str) -> None:
        """A DataError naming `where` and the field unless `d` is a plan as `to_dict` writes it."""
        if not OBJECT.holds(d):
            raise DataError(f"{where}: field 'postprocess' is not an object, so not a post-processing plan")
        for name, kind in PLAN_FIELDS.items():
            field(d, name, kind, where, prefix="postprocess.")

    @classmethod
    def from_dict(cls, d: dict) -> PostprocessPlan:
        fields = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in fields}
        d["thresholds"] = {str(e): {str(k): float(v) for k, v in t.items()} for e, t in d["thresholds"].items()}
        return cls(**d)

    def class_thresholds(self, classes, default: float, extractor: str | None = None) -> dict[str, float]:
        """Threshold per class for `extractor` (default: the plan's); an untuned class gets `default`."""
        saved = self.thresholds.get(extractor or self.extractor, {})
        return {c.name: float(saved.get(c.name, default)) for c in classes}


def plan_from_params(params: Params, thresholds: dict[str, dict[str, float]] | None = None) -> PostprocessPlan:
    """The plan params.yaml describes (`predict.extractor: auto` stands for `components` until tuning chooses)."""
    p = params.predict
    return PostprocessPlan(
        extractor=SELECTABLE[0] if p.extractor == AUTO else p.extractor,
        thresholds=dict(thresholds or {}),
        label_radius_fraction=params.masks.label_radius_fraction,
        min_blob_fraction=p.min_blob_fraction,
        max_blob_fraction=p.max_blob_fraction,
        peak_radius_fraction=p.peak_radius_fraction,
        tta_flips=p.tta_flips,
    )


def _notice(text: str) -> None:
    print(f"notice: {text}", file=sys.stderr, flush=True)


def plan_for(meta: dict, params: Params) -> PostprocessPlan:
    """The plan `predict` applies with a loaded checkpoint's `meta`: the checkpoint's own, or params' where
    `predict.plan_source` is `params` (the checkpoint's tuned thresholds kept) or the checkpoint has none."""
    stored = meta.get("postprocess")
    if stored is None:
        _notice(
            "the checkpoint has no post-processing plan (written before plans were saved): predicting with "
            "params.yaml's predict and masks settings and its argmax thresholds"
        )
        legacy = {"argmax": dict(meta.get("thresholds") or {})}
        plan = plan_from_params(params, legacy)
        return plan if params.predict.extractor != AUTO else dataclasses.replace(plan, extractor="argmax")
    plan = PostprocessPlan.from_dict(stored)
    if params.predict.plan_source == "checkpoint":
        return plan
    own = plan_from_params(params, plan.thresholds)
    return own if params.predict.extractor != AUTO else dataclasses.replace(own, extractor=plan.extractor)
