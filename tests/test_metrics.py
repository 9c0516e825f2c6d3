"""Tests for masktwins_cli.scoring.metrics: golden values, sklearn cross-checks, conventions."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from masktwins_cli.errors import MaskTwinsError
from masktwins_cli.scoring.metrics import (
    SegmentationScores,
    average_precision,
    confusion_counts,
    iou_f1_mcc,
    score_slices,
    score_volume,
)

# A 2x3 slice worked out by hand.
#   truth = 1 1 1     prob = 0.9 0.6 0.2     pred (>= 0.5) = 1 1 0
#           0 0 0            0.7 0.1 0.4                     1 0 0
# tp = 2 (0.9, 0.6), fn = 1 (0.2), fp = 1 (0.7), tn = 2 (0.1, 0.4)
# IoU = 2 / (2 + 1 + 1) = 1/2
# F1  = 2*2 / (2*2 + 1 + 1) = 2/3
# MCC = (2*2 - 1*1) / sqrt((2+1)(2+1)(2+1)(2+1)) = 3/9 = 1/3
# AP: scores descending 0.9 T, 0.7 F, 0.6 T, 0.4 F, 0.2 T, 0.1 F (3 positives)
#   t=0.9: tp=1 fp=0 P=1   R=1/3 (+1/3 * 1)
#   t=0.7: tp=1 fp=1       R unchanged
#   t=0.6: tp=2 fp=1 P=2/3 R=2/3 (+1/3 * 2/3)
#   t=0.4: tp=2 fp=2       R unchanged
#   t=0.2: tp=3 fp=2 P=3/5 R=1   (+1/3 * 3/5)
#   AP = 1/3 + 2/9 + 1/5 = (15 + 10 + 9) / 45 = 34/45
TRUTH_A = np.array([[1, 1, 1], [0, 0, 0]], dtype=bool)
PROB_A = np.array([[0.9, 0.6, 0.2], [0.7, 0.1, 0.4]])
AP_A = 34 / 45


def test_confusion_counts_golden():
    assert confusion_counts(PROB_A >= 0.5, TRUTH_A) == (2, 1, 1, 2)
    counts = confusion_counts(PROB_A >= 0.5, TRUTH_A)
    assert all(type(c) is int for c in counts)


def test_iou_f1_mcc_golden():
    iou, f1, mcc = iou_f1_mcc(2, 1, 1, 2)
    assert iou == pytest.approx(0.5)
    assert f1 == pytest.approx(2 / 3)
    assert mcc == pytest.approx(1 / 3)


def test_iou_f1_mcc_large_counts_do_not_overflow():
    # tp = tn = 3e9, fp = fn = 1e9: every MCC factor is 4e9, their product 2.56e38 > int64.
    # IoU = 3/5, F1 = 6/8, MCC = (9e18 - 1e18) / (4e9)^2 = 1/2
    iou, f1, mcc = iou_f1_mcc(3 * 10**9, 10**9, 10**9, 3 * 10**9)
    assert (iou, f1, mcc) == pytest.approx((0.6, 0.75, 0.5))
    # the same through numpy int64 inputs
    c = np.array([3 * 10**9, 10**9, 10**9, 3 * 10**9], dtype=np.int64)
    assert iou_f1_mcc(*c) == pytest.approx((0.6, 0.75, 0.5))


def test_average_precision_golden():
    assert average_precision(PROB_A, TRUTH_A) == pytest.approx(AP_A)


def test_average_precision_ties_golden():
    # prob = 0.8 0.8 0.3 0.3, truth = 1 0 1 0: tied scores enter together.
    #   t=0.8: tp=1 fp=1 P=1/2 R=1/2;  t=0.3: tp=2 fp=2 P=1/2 R=1  -> AP = 1/2
    # (ranking the tied positive first would instead give 1 * 1/2 + 2/3 * 1/2 = 5/6)
    prob = np.array([0.8, 0.8, 0.3, 0.3])
    truth = np.array([1, 0, 1, 0])
    assert average_precision(prob, truth) == pytest.approx(0.5)
    assert average_precision(prob[::-1], truth[::-1]) == pytest.approx(0.5)


def test_average_precision_no_positives_is_none():
    assert average_precision(np.full((2, 2), 0.3), np.zeros((2, 2), dtype=bool)) is None


def test_score_volume_single_slice_golden():
    for mode in ("per_slice", "volume"):
        s = score_volume(PROB_A, TRUTH_A, mode=mode)
        assert (s.iou, s.f1, s.mcc) == pytest.approx((0.5, 2 / 3, 1 / 3))
        assert s.ap == pytest.approx(AP_A)
        assert (s.n_slices, s.n_slices_ap, s.mode, s.threshold) == (1, 1, mode, 0.5)


def test_two_slice_volume_golden_both_modes():
    # slice 0: the hand-worked slice; slice 1: empty truth, prob 0.1 everywhere (empty pred).
    prob = np.stack([PROB_A, np.full((2, 3), 0.1)])
    truth = np.stack([TRUTH_A, np.zeros((2, 3), dtype=bool)])
    # per slice: slice 1 is perfect agreement (1, 1, 1) and has no AP.
    #   IoU = (1/2 + 1)/2 = 3/4, F1 = (2/3 + 1)/2 = 5/6, MCC = (1/3 + 1)/2 = 2/3, mAP = 34/45
    s = score_volume(prob, truth)
    assert (s.iou, s.f1, s.mcc) == pytest.approx((0.75, 5 / 6, 2 / 3))
    assert s.ap == pytest.approx(AP_A)
    assert (s.n_slices, s.n_slices_ap) == (2, 1)
    # volume: tp=2 fp=1 fn=1 tn=2+6=8
    #   IoU = 1/2, F1 = 2/3, MCC = (2*8 - 1*1)/sqrt(3*3*9*9) = 15/27 = 5/9
    #   AP unchanged: the 6 extra negatives score 0.1, below every positive -> 34/45
    v = score_volume(prob, truth, mode="volume")
    assert (v.iou, v.f1, v.mcc) == pytest.approx((0.5, 2 / 3, 5 / 9))
    assert v.ap == pytest.approx(AP_A)
    assert (v.n_slices, v.n_slices_ap, v.mode) == (2, 2, "volume")


def test_threshold_is_inclusive():
    prob = np.array([[0.5, 0.49]])
    truth = np.array([[1, 0]])
    s = score_volume(prob, truth)
    assert (s.iou, s.f1, s.mcc) == (1.0, 1.0, 1.0)
    s = score_volume(prob, truth, threshold=0.51)  # now nothing is predicted: one-sided empty
    assert (s.iou, s.f1, s.mcc) == (0.0, 0.0, 0.0)


# ------------------------------------------------------------------------------------------
# empty-slice conventions


@pytest.mark.parametrize(
    ("prob", "truth", "expected", "ap"),
    [
        ([[0.1, 0.2]], [[0, 0]], (1.0, 1.0, 1.0), None),  # both empty
        ([[0.9, 0.2]], [[0, 0]], (0.0, 0.0, 0.0), None),  # only prediction
        ([[0.1, 0.2]], [[1, 0]], (0.0, 0.0, 0.0), 0.5),  # only truth; AP: 0.2 F then 0.1 T
        ([[0.9, 0.8]], [[1, 1]], (1.0, 1.0, 1.0), 1.0),  # both all-foreground
    ],
)
def test_empty_conventions(prob, truth, expected, ap):
    for mode in ("per_slice", "volume"):
        s = score_volume(np.array(prob), np.array(truth), mode=mode)
        assert (s.iou, s.f1, s.mcc) == expected
        if ap is None:
            assert s.ap is None
            assert s.n_slices_ap == 0
        else:
            assert s.ap == pytest.approx(ap)
            assert s.n_slices_ap == 1


def test_all_empty_volume_has_no_nan_and_serialises():
    prob = np.zeros((3, 4, 5), dtype=np.float32)
    prob[1, 2, 2] = 0.9  # one false positive on slice 1
    truth = np.zeros((3, 4, 5), dtype=np.uint8)
    for mode in ("per_slice", "volume"):
        s = score_volume(prob, truth, mode=mode)
        assert s.ap is None
        assert s.n_slices == 3
        assert s.n_slices_ap == 0
        d = s.as_dict()
        for key in ("iou", "f1", "mcc"):
            assert math.isfinite(d[key])
        text = json.dumps(d, allow_nan=False)
        assert '"ap": null' in text
    per = score_volume(prob, truth)
    assert per.iou == pytest.approx(2 / 3)  # slices 0 and 2 perfect, slice 1 zero
    vol = score_volume(prob, truth, mode="volume")
    assert (vol.iou, vol.f1, vol.mcc) == (0.0, 0.0, 0.0)


def test_as_dict_fields():
    d = score_volume(PROB_A, TRUTH_A).as_dict()
    assert set(d) == {"iou", "f1", "mcc", "ap", "threshold", "mode", "n_slices", "n_slices_ap"}
    json.dumps(d, allow_nan=False)
    assert isinstance(score_volume(PROB_A, TRUTH_A), SegmentationScores)


# ------------------------------------------------------------------------------------------
# streaming and equivalences


def _random_volume(seed: int, shape=(4, 16, 20), dtype=np.float64):
    """Probabilities quantised to 0.1 steps (many ties) and a random truth of varying density."""
    rng = np.random.default_rng(seed)
    prob = (rng.integers(0, 11, size=shape) / 10).astype(dtype)
    density = rng.uniform(0.15, 0.5)
    # correlate the truth with prob so the scores are not trivial
    truth = rng.random(shape) < np.clip(density + 0.5 * (prob - 0.5), 0.02, 0.98)
    return prob, truth


def test_score_slices_equals_score_volume_per_slice():
    prob, truth = _random_volume(3)
    truth[1] = False  # one slice without foreground
    streamed = score_slices((prob[z], truth[z]) for z in range(prob.shape[0]))
    assert streamed == score_volume(prob, truth)
    assert streamed.n_slices_ap == prob.shape[0] - 1


class _LazyVolume:
    """Array-like that only supports .shape and [z], recording which slices were read."""

    def __init__(self, arr):
        self._arr = arr
        self.shape = arr.shape
        self.reads: list[int] = []

    def __getitem__(self, z):
        assert isinstance(z, int)
        self.reads.append(z)
        return self._arr[z]


def test_lazy_array_inputs_are_read_slice_by_slice():
    prob, truth = _random_volume(4)
    for mode in ("per_slice", "volume"):
        lp, lt = _LazyVolume(prob), _LazyVolume(truth)
        assert score_volume(lp, lt, mode=mode) == score_volume(prob, truth, mode=mode)
        assert set(lp.reads) == set(range(prob.shape[0]))


def test_float32_and_float64_agree_on_quantised_input():
    prob, truth = _random_volume(5)
    for mode in ("per_slice", "volume"):
        a = score_volume(prob, truth, mode=mode)
        b = score_volume(prob.astype(np.float32), truth.astype(np.uint8), mode=mode)
        assert a.as_dict() == pytest.approx(b.as_dict())


# ------------------------------------------------------------------------------------------
# sklearn cross-checks


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_volume_mode_matches_sklearn(seed, dtype):
    skm = pytest.importorskip("sklearn.metrics")
    prob, truth = _random_volume(seed, dtype=dtype)
    s = score_volume(prob, truth, mode="volume")
    y, p = truth.ravel(), prob.ravel()
    pred = p >= 0.5
    assert s.iou == pytest.approx(skm.jaccard_score(y, pred), abs=1e-12)
    assert s.f1 == pytest.approx(skm.f1_score(y, pred), abs=1e-12)
    assert s.mcc == pytest.approx(skm.matthews_corrcoef(y, pred), abs=1e-12)
    assert s.ap == pytest.approx(skm.average_precision_score(y, p), abs=1e-12)
    assert average_precision(prob, truth) == pytest.approx(s.ap, abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.75])
def test_per_slice_mode_matches_sklearn_mean(seed, threshold):
    skm = pytest.importorskip("sklearn.metrics")
    prob, truth = _random_volume(seed, dtype=np.float32)
    s = score_volume(prob, truth, threshold=threshold)
    ious, f1s, mccs, aps = [], [], [], []
    for z in range(prob.shape[0]):
        y, p = truth[z].ravel(), prob[z].ravel()
        pred = p >= threshold
        ious.append(skm.jaccard_score(y, pred))
        f1s.append(skm.f1_score(y, pred))
        mccs.append(skm.matthews_corrcoef(y, pred))
        aps.append(skm.average_precision_score(y, p))
    assert s.iou == pytest.approx(np.mean(ious), abs=1e-12)
    assert s.f1 == pytest.approx(np.mean(f1s), abs=1e-12)
    assert s.mcc == pytest.approx(np.mean(mccs), abs=1e-12)
    assert s.ap == pytest.approx(np.mean(aps), abs=1e-12)
    assert (s.n_slices, s.n_slices_ap) == (prob.shape[0], prob.shape[0])


@pytest.mark.parametrize("seed", range(4))
def test_average_precision_matches_sklearn_heavy_ties(seed):
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(100 + seed)
    prob = rng.integers(0, 4, size=500) / 3  # only 4 distinct scores
    truth = rng.random(500) < 0.2
    truth[0] = True
    assert average_precision(prob, truth) == pytest.approx(
        skm.average_precision_score(truth, prob), abs=1e-12
    )


@pytest.mark.parametrize("seed", range(3))
def test_volume_mode_streams_ties_across_slices_like_sklearn(seed):
    """Volume-mode AP counts the background slice by slice against the foreground's scores:
    ties within and across slices, and background scores above every foreground score."""
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(200 + seed)
    prob = (rng.integers(0, 6, size=(5, 12, 10)) / 5).astype(np.float32)
    truth = rng.random((5, 12, 10)) < 0.15
    prob[truth & (prob == 1.0)] = 0.8  # only the background reaches 1.0
    s = score_volume(prob, truth, mode="volume")
    assert s.ap == pytest.approx(skm.average_precision_score(truth.ravel(), prob.ravel()), abs=1e-12)


def test_per_slice_skips_empty_truth_slices_in_map():
    skm = pytest.importorskip("sklearn.metrics")
    prob, truth = _random_volume(7)
    truth[0] = False
    truth[2] = False
    s = score_volume(prob, truth)
    aps = [skm.average_precision_score(truth[z].ravel(), prob[z].ravel()) for z in (1, 3)]
    assert s.ap == pytest.approx(np.mean(aps), abs=1e-12)
    assert s.n_slices_ap == 2


# ------------------------------------------------------------------------------------------
# validation


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(MaskTwinsError, match=r"\(2, 3, 4\).*\(2, 3, 5\)"):
        score_volume(np.zeros((2, 3, 4)), np.zeros((2, 3, 5)))


@pytest.mark.parametrize("shape", [(5,), (1, 2, 3, 4)])
def test_wrong_ndim(shape):
    with pytest.raises(MaskTwinsError, match="2-D"):
        score_volume(np.zeros(shape), np.zeros(shape))


def test_empty_array_rejected():
    with pytest.raises(MaskTwinsError, match="empty"):
        score_volume(np.zeros((0, 3, 3)), np.zeros((0, 3, 3)))


@pytest.mark.parametrize(
    ("bad", "pattern"), [(1.2, "max 1.2"), (-0.1, "min -0.1"), (np.nan, "NaN")]
)
def test_prob_out_of_range_or_nan(bad, pattern):
    prob = np.full((2, 3, 3), 0.5)
    prob[1, 1, 1] = bad
    for mode in ("per_slice", "volume"):
        with pytest.raises(MaskTwinsError, match=pattern):
            score_volume(prob, np.zeros((2, 3, 3)), mode=mode)


@pytest.mark.parametrize(
    ("truth_value", "dtype", "pattern"),
    [(255, np.uint8, r"\[0, 255\]"), (2, np.int64, r"\[0, 2\]"), (0.5, np.float32, r"0\.5")],
)
def test_non_binary_truth_reports_values(truth_value, dtype, pattern):
    truth = np.zeros((2, 3, 3), dtype=dtype)
    truth[0, 0, 0] = truth_value
    with pytest.raises(MaskTwinsError, match=pattern):
        score_volume(np.zeros((2, 3, 3)), truth)


def test_binary_truth_dtypes_accepted():
    for dtype in (bool, np.uint8, np.int32, np.float32):
        truth = TRUTH_A.astype(dtype)
        assert score_volume(PROB_A, truth).iou == pytest.approx(0.5)


@pytest.mark.parametrize("threshold", [0.0, 1.0, -0.2, 1.5, float("nan"), True])
def test_bad_threshold(threshold):
    with pytest.raises(MaskTwinsError, match="threshold"):
        score_volume(PROB_A, TRUTH_A, threshold=threshold)
    with pytest.raises(MaskTwinsError, match="threshold"):
        score_slices([(PROB_A, TRUTH_A)], threshold=threshold)


def test_bad_mode():
    with pytest.raises(MaskTwinsError, match="mode"):
        score_volume(PROB_A, TRUTH_A, mode="3d")


def test_score_slices_validation():
    with pytest.raises(MaskTwinsError, match="no slices"):
        score_slices([])
    with pytest.raises(MaskTwinsError, match="2-D"):
        score_slices([(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)))])
    with pytest.raises(MaskTwinsError, match=r"z=1.*\(2, 3\).*\(3, 2\)"):
        score_slices([(PROB_A, TRUTH_A), (np.zeros((2, 3)), np.zeros((3, 2)))])


def test_confusion_counts_shape_mismatch():
    with pytest.raises(MaskTwinsError, match="shape"):
        confusion_counts(np.zeros((2, 2), bool), np.zeros((2, 3), bool))
