"""Tests for masktwins_cli.synapse.scoring: hand-worked WASP-SYN cases and a brute-force matcher."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from masktwins_cli.errors import MaskTwinsError
from masktwins_cli.synapse.cubes import points_to_cubes
from masktwins_cli.synapse.detection import detect_synapses_blockwise
from masktwins_cli.synapse.points import SynapsePoints, read_points, write_points
from masktwins_cli.synapse.scoring import (
    SynapseScore,
    average_scores,
    match_points,
    score_synapses,
)


def table(pre: list, posts: list[tuple[int, list]] = ()) -> SynapsePoints:
    """Pre points and (pre row, post point) pairs."""
    return SynapsePoints(np.array(pre, float).reshape(-1, 3),
                         np.array([p for _, p in posts], float).reshape(-1, 3),
                         np.array([k for k, _ in posts], np.int64))


# Truth: pre A, B, C far apart (> 20 voxels); A has posts a1, a2, B has b1, C has none.
A, B, C = [10, 10, 10], [30, 10, 10], [10, 40, 10]
A1, A2, B1 = [10, 10, 14], [10, 14, 10], [30, 10, 15]
TRUTH = table([A, B, C], [(0, A1), (0, A2), (1, B1)])


def shifted(point: list, delta: list) -> list:
    return list(np.add(point, delta))


def check(score: SynapseScore, f1_pre: float, f1_post: float) -> None:
    assert score.f1_pre == pytest.approx(f1_pre, abs=1e-12)
    assert score.f1_post == pytest.approx(f1_post, abs=1e-12)
    assert score.score == pytest.approx((f1_pre + f1_post) / 2, abs=1e-12)


def test_perfect():
    # 3 pre pairs at distance 0: F1_pre = 6 / 6 = 1. Post pairs: A 2 vs 2 -> 1, B 1 vs 1 -> 1,
    # C has no posts on either side -> skipped. F1_post = 1, score 1.
    score = score_synapses(TRUTH, TRUTH)
    check(score, 1, 1)
    assert (score.tp_pre, score.fp_pre, score.fn_pre, score.post_pairs_scored) == (3, 0, 0, 2)
    assert (score.tp_post, score.fp_post, score.fn_post) == (3, 0, 0)
    assert json.loads(json.dumps(score.as_dict()))["f1_pre"] == 1.0


def test_shifted_within_the_radius_and_at_it():
    # pres shifted by 11 along x (= pre radius, kept), posts by 6.5 along y (= post radius):
    # every pair is kept: F1_pre = F1_post = 1.
    pred = table([shifted(p, [0, 0, 11]) for p in (A, B, C)],
                 [(0, shifted(A1, [0, 6.5, 0])), (0, shifted(A2, [0, 6.5, 0])),
                  (1, shifted(B1, [0, 6.5, 0]))])
    check(score_synapses(pred, TRUTH), 1, 1)


def test_pre_shifted_beyond_the_radius():
    # pres shifted by 11.5 along x: the 3 assigned pairs are all beyond 11: TP = 0,
    # F1_pre = 0 / (0 + |3 - 3| + 2*3) = 0; no kept pre pair -> F1_post = 0; score 0.
    pred = table([shifted(p, [0, 0, 11.5]) for p in (A, B, C)], [(0, A1), (0, A2), (1, B1)])
    score = score_synapses(pred, TRUTH)
    check(score, 0, 0)
    assert (score.tp_pre, score.fp_pre, score.fn_pre) == (0, 3, 3)


def test_post_shifted_beyond_the_radius():
    # a1 moved by 7 along x to (10, 10, 21). Pair A: assignments a1'-a1 + a2-a2 = 7 + 0 = 7 vs
    # a1'-a2 + a2-a1 = sqrt(16 + 121) + sqrt(32) = 17.4; the first is taken, a1'-a1 (7 > 6.5)
    # rejected: TP = 1, F1 = 2 / (2 + 0 + 2) = 1/2. Pair B: 1. F1_post = 3/4, score 7/8.
    pred = table([A, B, C], [(0, shifted(A1, [0, 0, 7])), (0, A2), (1, B1)])
    score = score_synapses(pred, TRUTH)
    check(score, 1, 0.75)
    assert score.score == pytest.approx(7 / 8)
    assert (score.tp_post, score.fp_post, score.fn_post) == (2, 1, 1)


def test_missing_pre():
    # C missing: P = 2, T = 3, TP = 2: F1_pre = 4 / (4 + 1) = 4/5; posts of A, B perfect: 1.
    # score = (4/5 + 1) / 2 = 9/10
    pred = table([A, B], [(0, A1), (0, A2), (1, B1)])
    score = score_synapses(pred, TRUTH)
    check(score, 0.8, 1)
    assert (score.tp_pre, score.fp_pre, score.fn_pre) == (2, 0, 1)


def test_extra_pre_with_a_post():
    # extra D with one post: P = 4, T = 3, TP = 3: F1_pre = 6 / 7. D is unmatched, so its post
    # does not enter F1_post: A, B perfect -> 1. score = (6/7 + 1) / 2 = 13/14
    pred = table([A, B, C, [50, 50, 50]], [(0, A1), (0, A2), (1, B1), (3, [50, 50, 53])])
    score = score_synapses(pred, TRUTH)
    check(score, 6 / 7, 1)
    assert score.score == pytest.approx(13 / 14)


def test_post_linked_to_the_wrong_pre():
    # a2 linked to B in the prediction. Pair A: pred {a1} vs truth {a1, a2}: TP 1, |1 - 2| = 1,
    # F1 = 2 / 3. Pair B: pred {b1, a2} vs truth {b1}: b1-b1 (0) kept, a2 left over: F1 = 2 / 3.
    # F1_post = 2/3, F1_pre = 1, score = 5/6.
    pred = table([A, B, C], [(0, A1), (1, A2), (1, B1)])
    score = score_synapses(pred, TRUTH)
    check(score, 1, 2 / 3)
    assert score.score == pytest.approx(5 / 6)
    # and a post on C, which has none in the truth: pair C now scores 0 (one side empty);
    # F1_post = (2/3 + 2/3 + 0) / 3 = 4/9
    pred_c = table([A, B, C], [(0, A1), (1, A2), (1, B1), (2, [10, 40, 12])])
    score_c = score_synapses(pred_c, TRUTH)
    check(score_c, 1, 4 / 9)
    assert score_c.post_pairs_scored == 3


def test_empty_prediction_empty_truth_and_both():
    # no prediction: TP 0, F1_pre = 0 / (0 + |0 - 3| + 0) = 0, F1_post = 0 (no kept pair)
    empty = SynapsePoints.empty()
    score = score_synapses(empty, TRUTH)
    check(score, 0, 0)
    assert (score.tp_pre, score.fp_pre, score.fn_pre) == (0, 0, 3)
    # no truth: F1_pre = 0 / 3 = 0
    score = score_synapses(TRUTH, empty)
    check(score, 0, 0)
    assert (score.tp_pre, score.fp_pre, score.fn_pre) == (0, 3, 0)
    # both empty: 0 / 0 in the reference; defined here as perfect agreement
    check(score_synapses(empty, empty), 1, 1)


def test_matched_pres_without_any_post_score_zero_post_as_the_reference():
    # F1_pre = 1, every kept pair is skipped for posts -> the reference's F1_post = 0
    check(score_synapses(table([A, B]), table([A, B])), 1, 0)


def test_assignment_minimises_total_distance_before_the_radius():
    # p1 = (0,0,0), p2 = (0,0,12); t1 = (0,0,1), t2 = (0,5,0).
    # {p1-t1, p2-t2} costs 1 + 13 = 14, {p1-t2, p2-t1} costs 5 + 11 = 16. The challenge takes the
    # first and rejects p2-t2 (13 > 11): TP = 1, F1 = 2 / (2 + 0 + 2) = 1/2, although the second
    # assignment would keep both pairs.
    match = match_points([[0, 0, 0], [0, 0, 12]], [[0, 0, 1], [0, 5, 0]], 11)
    assert (match.tp, match.fp, match.fn, match.f1) == (1, 1, 1, 0.5)
    assert list(match.pred_rows) == [0] and list(match.truth_rows) == [0]


# ----------------------------------------------------------------------------- brute force
def brute_force_match(pred: np.ndarray, truth: np.ndarray, radius: float) -> list[tuple[int, int]]:
    """Kept pairs of the minimum-total-distance assignment, by enumerating all of them."""
    if len(pred) == 0 or len(truth) == 0:
        return []
    if len(pred) <= len(truth):
        candidates = [list(zip(range(len(pred)), p))
                      for p in itertools.permutations(range(len(truth)), len(pred))]
    else:
        candidates = [list(zip(p, range(len(truth))))
                      for p in itertools.permutations(range(len(pred)), len(truth))]
    best = min(candidates, key=lambda pairs: sum(math.dist(pred[i], truth[j]) for i, j in pairs))
    return [(i, j) for i, j in best if math.dist(pred[i], truth[j]) <= radius]


def brute_force_f1(n_pred: int, n_truth: int, tp: int) -> float:
    """The reference formula 2TP / (2TP + |P - T| + 2 * (min(P, T) - TP)); 1 when both empty."""
    beyond = min(n_pred, n_truth) - tp
    denominator = 2 * tp + abs(n_pred - n_truth) + 2 * beyond
    return 1.0 if denominator == 0 else 2 * tp / denominator


def test_match_points_agrees_with_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(300):
        pred = rng.uniform(0, 20, (rng.integers(0, 6), 3))
        truth = rng.uniform(0, 20, (rng.integers(0, 6), 3))
        match = match_points(pred, truth, 8.0)
        pairs = brute_force_match(pred, truth, 8.0)
        assert sorted(zip(match.pred_rows, match.truth_rows)) == sorted(pairs)
        assert match.f1 == pytest.approx(brute_force_f1(len(pred), len(truth), len(pairs)))
        # the reference's denominator equals the standard 2TP + FP + FN
        assert match.f1 == pytest.approx(brute_force_f1(len(pred), len(truth), match.tp))


def random_table(rng: np.random.Generator) -> SynapsePoints:
    pre = rng.uniform(0, 15, (rng.integers(0, 5), 3))
    n_post = rng.integers(0, 6) if len(pre) else 0
    links = rng.integers(0, max(len(pre), 1), n_post)
    post = pre[links] + rng.uniform(-5, 5, (n_post, 3)) if n_post else np.zeros((0, 3))
    return SynapsePoints(pre, post, links)


def jittered(truth: SynapsePoints, rng: np.random.Generator) -> SynapsePoints:
    """A prediction near ``truth``: rows shuffled, points moved, some posts dropped or relinked."""
    order = rng.permutation(truth.n_pre)
    keep = rng.random(truth.n_post) < 0.8
    links = np.argsort(order)[truth.post_pre[keep]]
    relink = rng.random(len(links)) < 0.2
    links[relink] = rng.integers(0, truth.n_pre, relink.sum())
    return SynapsePoints(truth.pre[order] + rng.normal(0, 2.5, (truth.n_pre, 3)),
                         truth.post[keep] + rng.normal(0, 1.5, (keep.sum(), 3)), links)


def test_score_synapses_agrees_with_brute_force():
    rng = np.random.default_rng(1)
    scored_posts = partial_posts = 0
    for case in range(200):
        truth = random_table(rng)
        pred = jittered(truth, rng) if case % 2 else random_table(rng)
        score = score_synapses(pred, truth, pre_radius=6.0, post_radius=3.0)
        pre_pairs = brute_force_match(pred.pre, truth.pre, 6.0)
        f1_pre = brute_force_f1(pred.n_pre, truth.n_pre, len(pre_pairs))
        post_f1 = []
        for i, j in pre_pairs:
            p, t = pred.posts_of(i), truth.posts_of(j)
            if len(p) or len(t):
                post_f1.append(brute_force_f1(len(p), len(t), len(brute_force_match(p, t, 3.0))))
        if pred.n_pre == 0 and truth.n_pre == 0:
            f1_post = 1.0
        else:
            f1_post = float(np.mean(post_f1)) if post_f1 else 0.0
        check(score, f1_pre, f1_post)
        assert score.post_pairs_scored == len(post_f1)
        scored_posts += score.tp_post > 0
        partial_posts += 0 < score.f1_post < 1
    assert scored_posts > 30 and partial_posts > 20  # the post rules were exercised


def test_average_scores_and_bad_radii():
    # per-volume scores 1 and 7/8 (F1_pre 1 and 1, F1_post 1 and 3/4): means 1, 7/8, 15/16
    second = score_synapses(table([A, B, C], [(0, shifted(A1, [0, 0, 7])), (0, A2), (1, B1)]), TRUTH)
    mean = average_scores([score_synapses(TRUTH, TRUTH), second])
    assert (mean.f1_pre, mean.f1_post, mean.score, mean.n_volumes) == pytest.approx((1, 0.875, 0.9375, 2))
    assert mean.as_dict()["n_volumes"] == 2
    with pytest.raises(MaskTwinsError, match="no volumes to average"):
        average_scores([])
    with pytest.raises(MaskTwinsError, match="pre_radius = -1"):
        score_synapses(TRUTH, TRUTH, pre_radius=-1)
    with pytest.raises(MaskTwinsError, match="post_radius = nan"):
        score_synapses(TRUTH, TRUTH, post_radius=float("nan"))
    with pytest.raises(MaskTwinsError, match="prediction: pre row 0 has a non-finite"):
        score_synapses(table([[np.nan, 0, 0]]), TRUTH)


def test_waspsyn_labels_through_cubes_and_detection_score_perfectly(tmp_path):
    # labels in the challenge layout (global coordinates, offset in the name) -> local table ->
    # cube targets -> detection -> detections written and read back -> score 1
    shape = (12, 40, 50)
    local = table([[0, 5, 5], [6, 20, 30], [11, 39, 49]],
                  [(0, [3, 5, 9]), (1, [6, 26, 30]), (1, [9, 20, 34]), (2, [11, 33, 49])])
    labels_path = tmp_path / "syns_zyx_100-112_200-240_300-350.h5"
    write_points(labels_path, local, offset=(100, 200, 300))
    labels = read_points(labels_path, shape)
    detections = detect_synapses_blockwise(points_to_cubes(labels, shape), block_shape=(5, 16, 16))
    write_points(tmp_path / "pred.csv", detections)
    score = score_synapses(read_points(tmp_path / "pred.csv", shape), labels)
    check(score, 1, 1)
    assert (score.tp_pre, score.tp_post) == (3, 4)
