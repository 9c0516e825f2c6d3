"""Mitochondria segmentation metrics: IoU, F1, MCC and AP (the paper's Table 2).

Inputs are a foreground probability map ``prob`` (floats in ``[0, 1]``) and a binary ground truth
``truth`` of the same shape, either one 2-D slice ``(y, x)`` or a volume ``(z, y, x)``. The
prediction is ``prob >= threshold`` (default 0.5). The conventions follow the authors' reference
code (DA-ISC):

* **IoU** (Jaccard) ``tp / (tp + fp + fn)``; **F1** (Dice) ``2 tp / (2 tp + fp + fn)``;
  **MCC** ``(tp tn - fp fn) / sqrt((tp + fp)(tp + fn)(tn + fp)(tn + fn))``, all from the
  binarised prediction.
* **AP** (average precision) on the raw probabilities, identical to
  ``sklearn.metrics.average_precision_score``: the step-wise sum over distinct score thresholds
  ``t`` (descending) of ``(R_t - R_prev) * P_t``, where all voxels sharing a score enter at the
  same threshold (ties handled as scikit-learn does). It is computed here with numpy only.

Two modes:

* ``per_slice`` (default, the convention of the paper's baselines): each metric is computed per
  2-D slice along axis 0 (z) and averaged over slices (mAP for AP).
* ``volume``: each metric is computed once over the whole flattened volume.

Empty-slice conventions (they never produce NaN):

* truth and prediction both empty (more generally: prediction equals truth, ``fp = fn = 0``):
  perfect agreement, IoU = F1 = MCC = 1.0. (For MCC this also covers an all-foreground slice
  predicted as all foreground, whose MCC denominator is 0.)
* exactly one of truth and prediction empty: IoU = F1 = 0 and MCC = 0 (scikit-learn's
  convention when the MCC denominator is 0).
* AP is undefined when the truth has no foreground: such slices are left out of the mAP
  average. :attr:`SegmentationScores.n_slices` counts the slices that entered the IoU/F1/MCC
  averages and :attr:`SegmentationScores.n_slices_ap` those that entered the mAP average. If no
  slice has foreground at all, ``ap`` is ``None`` (JSON ``null``), never NaN.

In ``volume`` mode ``n_slices`` is the number of z-slices of the volume (1 for a 2-D input) and
``n_slices_ap`` equals ``n_slices`` when AP is defined (the truth has foreground somewhere),
otherwise 0.

Counts are exact Python integers (no int32 overflow on large volumes) and all arithmetic is
float64. Volumes are read one z-slice at a time (so ``np.memmap``, zarr or h5py arrays work); in
``volume`` mode AP additionally holds the scores of the foreground voxels only (in the input's
float dtype, e.g. 4 bytes per foreground voxel for float32) and one count per distinct
foreground score; the background is streamed.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from masktwins_cli.errors import MaskTwinsError

MODES = ("per_slice", "volume")


@dataclass(frozen=True)
class SegmentationScores:
    """Scores of one prediction against its ground truth.

    ``ap`` is ``None`` when no slice (or, in volume mode, no voxel) of the truth is foreground.
    ``n_slices`` / ``n_slices_ap``: slices that entered the IoU/F1/MCC and the AP averages (see
    the module docstring for volume mode).
    """

    iou: float
    f1: float
    mcc: float
    ap: float | None
    threshold: float
    mode: str
    n_slices: int
    n_slices_ap: int

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (``ap`` may be ``None``; no NaN ever)."""
        return asdict(self)


# --------------------------------------------------------------------------------------------
# validation helpers (also used by overlays.py)


def check_threshold(threshold: float) -> float:
    """Return ``threshold`` as a float, or raise if it is not in the open interval (0, 1)."""
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise MaskTwinsError(f"threshold must be a number in (0, 1); got {threshold!r}")
    value = float(threshold)
    if not (0.0 < value < 1.0):
        raise MaskTwinsError(f"threshold must be in the open interval (0, 1); got {value:g}")
    return value


def _check_shapes(prob_shape: tuple[int, ...], truth_shape: tuple[int, ...]) -> None:
    """Raise unless the two shapes are equal, 2-D or 3-D and non-empty."""
    prob_shape, truth_shape = tuple(prob_shape), tuple(truth_shape)
    if prob_shape != truth_shape:
        raise MaskTwinsError(
            f"probability map shape {prob_shape} does not match ground truth shape {truth_shape}"
        )
    if len(prob_shape) not in (2, 3):
        raise MaskTwinsError(
            f"expected a 2-D (y, x) or 3-D (z, y, x) array; got shape {prob_shape}"
        )
    if 0 in prob_shape:
        raise MaskTwinsError(f"cannot score an empty array of shape {prob_shape}")


def _where(z: int | None) -> str:
    return "" if z is None else f" (slice z={z})"


def prob_array(prob: Any, z: int | None = None) -> np.ndarray:
    """Validate a probability array: numeric, no NaN, values in [0, 1].

    Floating arrays keep their dtype (float32 stays float32, so ties are those of the stored
    values); bool/integer arrays become float64. Returns the array (no copy for floats).
    """
    arr = np.asarray(prob)
    if arr.dtype.kind in "biu":
        arr = arr.astype(np.float64)
    elif arr.dtype.kind != "f":
        raise MaskTwinsError(f"probability map{_where(z)} must be numeric; got dtype {arr.dtype}")
    if arr.size == 0:
        raise MaskTwinsError(f"cannot score an empty array of shape {arr.shape}")
    lo, hi = float(arr.min()), float(arr.max())
    if math.isnan(lo) or math.isnan(hi):
        raise MaskTwinsError(f"probability map{_where(z)} contains NaN")
    if lo < 0.0 or hi > 1.0:
        raise MaskTwinsError(
            f"probability map{_where(z)} must lie in [0, 1]; found min {lo:g}, max {hi:g}"
        )
    return arr


def _format_values(values: np.ndarray, limit: int = 8) -> str:
    shown = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values[:limit].tolist())
    return f"[{shown}{', ...' if values.size > limit else ''}]"


def truth_array(truth: Any, z: int | None = None) -> np.ndarray:
    """Validate a ground truth (bool, or numbers that are all 0 or 1) and return it as bool."""
    arr = np.asarray(truth)
    if arr.dtype == np.bool_:
        return arr
    if arr.dtype.kind in "iu":
        ok = arr.size == 0 or (int(arr.min()) >= 0 and int(arr.max()) <= 1)
    elif arr.dtype.kind == "f":
        ok = bool(np.all((arr == 0) | (arr == 1)))
    else:
        raise MaskTwinsError(
            f"ground truth{_where(z)} must be binary (bool or 0/1); got dtype {arr.dtype}"
        )
    if not ok:
        raise MaskTwinsError(
            f"ground truth{_where(z)} must be binary (0/1 or bool); found values "
            f"{_format_values(np.unique(arr))}"
        )
    return arr != 0


# --------------------------------------------------------------------------------------------
# building blocks


def confusion_counts(pred: np.ndarray, truth: np.ndarray) -> tuple[int, int, int, int]:
    """Confusion counts ``(tp, fp, fn, tn)`` of two boolean arrays of the same (any) shape.

    Returned as exact Python ints (no overflow, whatever the volume size).
    """
    pred = np.asarray(pred, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    if pred.shape != truth.shape:
        raise MaskTwinsError(
            f"prediction shape {pred.shape} does not match ground truth shape {truth.shape}"
        )
    tp = int(np.count_nonzero(pred & truth))
    n_pred = int(np.count_nonzero(pred))
    n_true = int(np.count_nonzero(truth))
    fp = n_pred - tp
    fn = n_true - tp
    tn = int(pred.size) - tp - fp - fn
    return tp, fp, fn, tn


def iou_f1_mcc(tp: int, fp: int, fn: int, tn: int) -> tuple[float, float, float]:
    """IoU, F1 and MCC from confusion counts, with the module's empty conventions.

    ``fp == fn == 0`` (prediction equals truth, including both empty) gives ``(1, 1, 1)``;
    otherwise a zero MCC denominator gives MCC 0 (scikit-learn's convention).
    """
    tp, fp, fn, tn = int(tp), int(fp), int(fn), int(tn)
    if min(tp, fp, fn, tn) < 0:
        raise MaskTwinsError(f"confusion counts must be >= 0; got {(tp, fp, fn, tn)}")
    if fp == 0 and fn == 0:
        return 1.0, 1.0, 1.0
    # fp + fn > 0 here, so neither denominator below is zero.
    iou = tp / (tp + fp + fn)
    f1 = 2 * tp / (2 * tp + fp + fn)
    # Exact integer numerator; the denominator product can exceed int64, so take the root
    # factor by factor in float64.
    factors = (tp + fp, tp + fn, tn + fp, tn + fn)
    if 0 in factors:
        mcc = 0.0
    else:
        denom = math.prod(math.sqrt(f) for f in factors)
        mcc = (tp * tn - fp * fn) / denom
        mcc = max(-1.0, min(1.0, mcc))  # guard against rounding just outside [-1, 1]
    return float(iou), float(f1), float(mcc)


def _ap_from_sorted(pos_sorted: np.ndarray, neg_sorted: np.ndarray) -> float | None:
    """AP from the ascending-sorted scores of the positive and of the negative voxels.

    Only thresholds at distinct positive scores move the recall, so the sum runs over those:
    for a threshold ``v``, ``tp(v) = #pos >= v`` and ``fp(v) = #neg >= v`` (ties included, as in
    scikit-learn's ``precision_recall_curve``).
    """
    if pos_sorted.size == 0:
        return None
    values = pos_sorted[np.concatenate(([True], pos_sorted[1:] != pos_sorted[:-1]))]
    fp = int(neg_sorted.size) - np.searchsorted(neg_sorted, values, side="left")
    return _ap_at_thresholds(pos_sorted, values, fp)


def _ap_at_thresholds(pos_sorted: np.ndarray, values: np.ndarray, fp: np.ndarray) -> float:
    """AP from the ascending-sorted positive scores, their distinct ``values`` (ascending) and
    ``fp`` = the number of negatives scoring >= each value."""
    n_pos = int(pos_sorted.size)
    tp = (n_pos - np.searchsorted(pos_sorted, values, side="left")).astype(np.float64)
    # descending thresholds: tp increases
    tp, fp = tp[::-1], np.asarray(fp, np.float64)[::-1]
    recall_step = np.diff(tp, prepend=0.0) / n_pos
    precision = tp / (tp + fp)
    return float(max(0.0, np.sum(recall_step * precision)))


def average_precision(prob: np.ndarray, truth: np.ndarray) -> float | None:
    """Average precision of scores ``prob`` against binary ``truth`` (same shape, any ndim).

    Equal to ``sklearn.metrics.average_precision_score(truth.ravel(), prob.ravel())``; ``None``
    when ``truth`` has no foreground (AP undefined).
    """
    prob_arr = prob_array(prob)
    truth_arr = truth_array(truth)
    if prob_arr.shape != truth_arr.shape:
        raise MaskTwinsError(
            f"probability map shape {prob_arr.shape} does not match ground truth shape "
            f"{truth_arr.shape}"
        )
    pos = np.sort(prob_arr[truth_arr])
    if pos.size == 0:
        return None
    neg = np.sort(prob_arr[~truth_arr])
    return _ap_from_sorted(pos, neg)


# --------------------------------------------------------------------------------------------
# scoring


def _mean(values: list[float]) -> float:
    return math.fsum(values) / len(values)


def score_slices(
    slices: Iterable[tuple[np.ndarray, np.ndarray]], threshold: float = 0.5
) -> SegmentationScores:
    """Per-slice scores of a stream of 2-D ``(prob, truth)`` pairs, each ``(y, x)``.

    Holds one slice at a time; IoU/F1/MCC are averaged over all slices, AP over the slices whose
    truth has foreground (``ap`` is ``None`` if there are none).
    """
    threshold = check_threshold(threshold)
    ious: list[float] = []
    f1s: list[float] = []
    mccs: list[float] = []
    aps: list[float] = []
    for z, (prob, truth) in enumerate(slices):
        prob_arr = prob_array(prob, z)
        truth_arr = truth_array(truth, z)
        if prob_arr.shape != truth_arr.shape:
            raise MaskTwinsError(
                f"slice z={z}: probability map shape {prob_arr.shape} does not match ground "
                f"truth shape {truth_arr.shape}"
            )
        if prob_arr.ndim != 2:
            raise MaskTwinsError(
                f"slice z={z}: expected a 2-D (y, x) slice; got shape {prob_arr.shape}"
            )
        iou, f1, mcc = iou_f1_mcc(*confusion_counts(prob_arr >= threshold, truth_arr))
        ious.append(iou)
        f1s.append(f1)
        mccs.append(mcc)
        pos = np.sort(prob_arr[truth_arr])
        if pos.size:
            ap = _ap_from_sorted(pos, np.sort(prob_arr[~truth_arr]))
            aps.append(float(ap))  # not None: pos is non-empty
    if not ious:
        raise MaskTwinsError("no slices to score")
    return SegmentationScores(
        iou=_mean(ious),
        f1=_mean(f1s),
        mcc=_mean(mccs),
        ap=_mean(aps) if aps else None,
        threshold=threshold,
        mode="per_slice",
        n_slices=len(ious),
        n_slices_ap=len(aps),
    )


def _iter_slices(prob: Any, truth: Any) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(prob[z], truth[z])`` as numpy arrays; a 2-D input is one slice."""
    if len(prob.shape) == 2:
        yield np.asarray(prob), np.asarray(truth)
        return
    for z in range(prob.shape[0]):
        yield np.asarray(prob[z]), np.asarray(truth[z])


def _score_whole_volume(prob: Any, truth: Any, threshold: float) -> SegmentationScores:
    """Volume-mode scores in two passes over the slices: the confusion counts and the scores of
    the foreground voxels, then every background voxel counted against the distinct foreground
    scores. AP is exact while only the foreground voxels' scores are held, not the volume."""
    tp = fp = fn = tn = 0
    n_slices = 0
    positives = []
    for z, (p, t) in enumerate(_iter_slices(prob, truth)):
        p_arr = prob_array(p, z)
        t_arr = truth_array(t, z)
        c = confusion_counts(p_arr >= threshold, t_arr)
        tp, fp, fn, tn = tp + c[0], fp + c[1], fn + c[2], tn + c[3]
        positives.append(p_arr[t_arr])
        n_slices += 1
    iou, f1, mcc = iou_f1_mcc(tp, fp, fn, tn)
    ap: float | None = None
    if tp + fn:
        pos = np.sort(np.concatenate(positives))
        del positives
        values = np.unique(pos)
        counts = np.zeros(values.size + 1, np.int64)  # [k]: negatives >= exactly k values
        for p, t in _iter_slices(prob, truth):
            p_arr = prob_array(p)
            above = np.searchsorted(values, p_arr[~truth_array(t)], side="right")
            counts += np.bincount(above, minlength=values.size + 1)
        negatives_at_least = np.cumsum(counts[::-1])[::-1][1:]  # [j]: negatives >= values[j]
        ap = _ap_at_thresholds(pos, values, negatives_at_least)
    return SegmentationScores(
        iou=iou,
        f1=f1,
        mcc=mcc,
        ap=ap,
        threshold=threshold,
        mode="volume",
        n_slices=n_slices,
        n_slices_ap=n_slices if ap is not None else 0,
    )


def score_volume(
    prob: np.ndarray, truth: np.ndarray, threshold: float = 0.5, mode: str = "per_slice"
) -> SegmentationScores:
    """Score a probability map against its ground truth.

    ``prob`` and ``truth`` are 2-D ``(y, x)`` (one slice) or 3-D ``(z, y, x)`` arrays of equal
    shape (numpy, memmap, or any array-like indexable by ``[z]``). ``mode`` is ``"per_slice"``
    (metrics per z-slice, averaged) or ``"volume"`` (metrics over the flattened volume).
    """
    threshold = check_threshold(threshold)
    if mode not in MODES:
        raise MaskTwinsError(f"unknown metrics mode {mode!r}; expected one of {', '.join(MODES)}")
    if not hasattr(prob, "shape"):
        prob = np.asarray(prob)
    if not hasattr(truth, "shape"):
        truth = np.asarray(truth)
    _check_shapes(prob.shape, truth.shape)
    if mode == "per_slice":
        return score_slices(_iter_slices(prob, truth), threshold)
    return _score_whole_volume(prob, truth, threshold)

