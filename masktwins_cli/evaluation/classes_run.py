"""``masktwins evaluate`` for K classes: a class map (integers, e.g. ``infer``'s argmax) or
per-class probabilities (K, z, y, x) against a truth of class ids, read slab by slab along z so
that memory does not grow with the volume; one confusion matrix over the whole volume (see
:mod:`masktwins_cli.scoring.classes`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MaskTwinsError
from ..io.volumes import Volume, open_volume
from ..scoring.benchmarks import check_protocol, protocol_scores
from ..scoring.classes import DEFAULT_IGNORE, ClassScores, class_scores, confusion_matrix

SLAB_VOXELS = 16 * 1024 * 1024
"""About this many truth voxels are read at a time (the prediction's slab is K times that for
probabilities)."""


@dataclass(frozen=True)
class ClassEvaluation:
    """K-class scores of one prediction, and what was compared."""

    prediction: str
    ground_truth: str
    scores: ClassScores
    ignore: int | None
    source: str  # "class map" or "probabilities"
    protocol: dict | None = None  # a benchmark's figures (see scoring.benchmarks)
    overlays: tuple[Path, ...] = ()

    def as_dict(self) -> dict:
        return {"prediction": self.prediction, "ground_truth": self.ground_truth,
                "prediction_kind": self.source, "ignore": self.ignore, **self.scores.as_dict(),
                **(self.protocol or {}), "overlays": [str(p) for p in self.overlays]}


def holds_classes(prediction: Volume, truth_ndim: int, num_classes: int | None = None) -> bool:
    """Whether a prediction is scored as K classes: per-class probabilities (one more, leading,
    axis than the truth), or an integer class map when ``num_classes`` is given or the recipe
    that made it has more than two classes. An integer map otherwise stays a binary prediction
    (0/1 masks are scored as today)."""
    kind = np.dtype(prediction.dtype).kind
    if kind == "f" and prediction.ndim == truth_ndim + 1:
        return True
    if kind not in "iu":
        return False
    if num_classes is not None:
        return True
    recorded = _recorded_num_classes(prediction)
    return recorded is not None and recorded > 2


def _recorded_model(prediction: Volume) -> dict:
    """The [model] section of the recipe that made the prediction (``infer`` stores the recipe
    with its output); {} when there is none."""
    try:
        from ..io.backends import open_zarr_array

        if prediction.location.kind != "zarr":
            return {}
        recipe = open_zarr_array(prediction.location).attrs.get("masktwins", {}).get("recipe", {})
        model = recipe.get("model", {}) if isinstance(recipe, dict) else {}
        return model if isinstance(model, dict) else {}
    except Exception:  # provenance is a convenience: without it, --num-classes is asked for
        return {}


def _recorded_num_classes(prediction: Volume) -> int | None:
    value = _recorded_model(prediction).get("num_classes")
    return int(value) if isinstance(value, int) else None


def resized(probabilities: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(K, ..., y, x) probabilities resized in-plane to ``size`` (bilinear, half-pixel centres
    as mmsegmentation's resize)."""
    import torch
    import torch.nn.functional as F

    k, *rest = probabilities.shape
    planes = torch.from_numpy(np.ascontiguousarray(probabilities, np.float32))
    planes = planes.reshape(k, -1, *rest[-2:]).transpose(0, 1)  # (slices, K, y, x)
    out = F.interpolate(planes, size=size, mode="bilinear", align_corners=False)
    return out.transpose(0, 1).reshape(k, *rest[:-2], *size).numpy()


def _slabs(depth: int, plane_voxels: int) -> list[slice]:
    step = max(1, SLAB_VOXELS // max(1, plane_voxels))
    return [slice(z, min(z + step, depth)) for z in range(0, depth, step)]


def evaluate_classes(prediction: str, ground_truth: str, num_classes: int | None = None,
                     ignore: int | None = DEFAULT_IGNORE, classes: Sequence[int] | None = None,
                     json_out: str | Path | None = None,
                     protocol: str | None = None, upsample: bool = False) -> ClassEvaluation:
    """Score a class map or per-class probabilities against class-id labels.

    ``num_classes``: K (default: the probabilities' channel count, or the recipe stored with an
    ``infer`` output); ``ignore``: the truth value left out (None: none); ``classes``: the
    classes the mIoU averages (default all). Shapes: truth (z, y, x) or (y, x); prediction the
    same (class map) or (K, z, y, x) / (K, y, x) (probabilities). ``protocol``: also report a
    benchmark's figures (``synthia``: mIoU19/16/13 and the 13 classes' IoUs). ``upsample``:
    probabilities smaller in-plane than the truth are resized to it (bilinear, slice by slice)
    before the argmax, as the Cityscapes protocol scores predictions of a down-scaled input
    against the full-resolution labels.
    """
    pred = open_volume(prediction, ndim=(2, 3, 4))
    truth = open_volume(ground_truth, ndim=(2, 3))
    recorded = _recorded_model(pred)  # read once: the task and the class count
    if recorded.get("task") == "synapse":
        raise MaskTwinsError(f"{prediction}: pre/post synapse probabilities are not classes; "
                             "detect points (masktwins detect) and score them with evaluate "
                             "--task synapse")
    probabilities = pred.ndim == truth.ndim + 1
    spatial = tuple(pred.shape[1:] if probabilities else pred.shape)
    if upsample and not probabilities:
        raise MaskTwinsError(f"--upsample resizes class probabilities (K, z, y, x); {prediction} "
                             "is a class map (infer it with infer.classes = 'probabilities')")
    if upsample and spatial[:-2] == tuple(truth.shape[:-2]):
        spatial = tuple(truth.shape)  # in-plane sizes may differ: resized slice by slice
    if spatial != tuple(truth.shape):
        raise MaskTwinsError(f"{prediction}: shape {tuple(pred.shape)} does not match the ground "
                             f"truth {ground_truth} {tuple(truth.shape)}"
                             + (" (class probabilities are (K, *truth shape))" if probabilities else ""))
    count = recorded.get("num_classes")
    k = num_classes or (int(pred.shape[0]) if probabilities
                        else int(count) if isinstance(count, int) else None)
    if k is None:
        raise MaskTwinsError(f"{prediction}: a class map without a recorded class count: pass "
                             "--num-classes K")
    if k < 2:
        raise MaskTwinsError(f"--num-classes {k}: expected at least 2 classes")
    if protocol is not None:
        check_protocol(protocol, k)
    if probabilities and pred.shape[0] != k:
        raise MaskTwinsError(f"{prediction}: {pred.shape[0]} class channels, but --num-classes {k}")
    flat = truth.ndim == 2
    depth = 1 if flat else int(truth.shape[0])
    matrix = np.zeros((k, k), np.int64)
    resize = upsample and tuple(pred.shape[-2:]) != tuple(truth.shape[-2:])
    plane = int(np.prod(truth.shape[-2:])) * (k if resize else 1)  # a resized slab is K planes
    for slab in _slabs(depth, plane):
        box = (slice(None), slice(None)) if flat else (slab,)
        labels = np.asarray(truth[box])
        predicted = np.asarray(pred[(slice(None), *box) if probabilities else box])
        if probabilities:
            if not np.all(np.isfinite(predicted)):
                raise MaskTwinsError(f"{prediction}: NaN or infinite probabilities near z = "
                                     f"{0 if flat else slab.start}")
            if resize:
                predicted = resized(predicted, tuple(truth.shape[-2:]))
            predicted = predicted.argmax(axis=0)
        matrix += confusion_matrix(predicted, labels, k, ignore, where=ground_truth)
    scores = class_scores(matrix, classes)
    result = ClassEvaluation(prediction, ground_truth, scores, ignore,
                             "probabilities" if probabilities else "class map",
                             None if protocol is None else protocol_scores(scores, protocol))
    if json_out is not None:
        from .scores_file import write_scores_json

        write_scores_json(json_out, result.as_dict())
    return result
