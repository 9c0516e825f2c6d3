"""Scores of a K-class segmentation from one confusion matrix summed over a whole dataset, as the
segmentation benchmarks (Cityscapes, mmsegmentation's ``mIoU``) compute them.

* ``confusion_matrix(pred, truth, K, ignore)``: (K, K) int64 counts, rows = truth class, columns
  = predicted class, over the voxels whose truth is not ``ignore``. Summing the matrices of the
  blocks of a volume (or of many images) gives the matrix of the whole.
* per-class IoU ``tp / (tp + fp + fn)`` = ``M[c, c] / (row c + column c - M[c, c])``; a class
  that is neither in the truth nor predicted has no IoU (``None``) and is left out of the mean;
* mIoU: the mean of the defined IoUs over all classes, or over a listed subset (e.g. the 13 or
  16 SYNTHIA classes);
* pixel accuracy: ``trace(M) / sum(M)`` over the counted (non-ignored) voxels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import MaskTwinsError

DEFAULT_IGNORE = 255


def confusion_matrix(pred: np.ndarray, truth: np.ndarray, num_classes: int,
                     ignore: int | None = DEFAULT_IGNORE, where: str = "truth") -> np.ndarray:
    """(K, K) int64 counts of (truth class, predicted class) over the non-ignored voxels.

    ``pred`` and ``truth``: integer class maps of one shape. Truth values other than 0..K-1 and
    ``ignore``, or predicted classes outside 0..K-1 where the truth counts, are a MaskTwinsError
    naming ``where`` (the truth's file) rather than a silently skewed matrix.
    """
    if pred.shape != truth.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from the truth {truth.shape}")
    truth = np.asarray(truth)
    if truth.dtype.kind not in "biu":
        raise MaskTwinsError(f"{where}: truth labels have dtype {truth.dtype}; expected integer "
                             "class ids")
    counted = truth != ignore if ignore is not None else np.ones(truth.shape, bool)
    labels, predicted = truth[counted].astype(np.int64), np.asarray(pred)[counted].astype(np.int64)
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        values = ", ".join(str(v) for v in np.unique(labels[bad])[:6])
        allowed = f"0..{num_classes - 1}" + (f" or {ignore} (ignored)" if ignore is not None else "")
        raise MaskTwinsError(f"{where}: truth label values {values} are outside the classes "
                             f"{allowed}")
    wrong = (predicted < 0) | (predicted >= num_classes)
    if wrong.any():
        values = ", ".join(str(v) for v in np.unique(predicted[wrong])[:6])
        raise MaskTwinsError(f"prediction classes {values} are outside 0..{num_classes - 1}")
    flat = np.bincount(labels * num_classes + predicted, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


@dataclass(frozen=True)
class ClassScores:
    """Scores from one confusion matrix (see the module docstring)."""

    matrix: np.ndarray
    iou: tuple[float | None, ...]
    miou: float | None
    classes: tuple[int, ...]
    pixel_accuracy: float | None

    @property
    def num_classes(self) -> int:
        return int(self.matrix.shape[0])

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (``None`` for undefined scores, never NaN)."""
        return {"num_classes": self.num_classes, "miou": self.miou, "miou_classes": list(self.classes),
                "pixel_accuracy": self.pixel_accuracy,
                "iou": {str(c): v for c, v in enumerate(self.iou)},
                "voxels": {str(c): int(n) for c, n in enumerate(self.matrix.sum(axis=1))},
                "confusion_matrix": self.matrix.tolist()}


def class_scores(matrix: np.ndarray, classes: Sequence[int] | None = None) -> ClassScores:
    """Per-class IoU, mIoU (over ``classes``, default all) and pixel accuracy of ``matrix``."""
    matrix = np.asarray(matrix, np.int64)
    k = matrix.shape[0]
    chosen = tuple(range(k)) if classes is None else tuple(int(c) for c in classes)
    outside = [c for c in chosen if not 0 <= c < k]
    if outside:
        raise MaskTwinsError(f"--classes {', '.join(map(str, outside))}: outside the {k} classes "
                             f"0..{k - 1}")
    if not chosen:
        raise MaskTwinsError("--classes: no class listed")
    tp = np.diag(matrix).astype(np.float64)
    union = matrix.sum(axis=0) + matrix.sum(axis=1) - tp
    iou = tuple(float(t / u) if u > 0 else None for t, u in zip(tp, union))
    defined = [iou[c] for c in chosen if iou[c] is not None]
    total = matrix.sum()
    return ClassScores(matrix, iou, float(np.mean(defined)) if defined else None, chosen,
                       float(tp.sum() / total) if total else None)
