"""WASP-SYN scoring: F1_pre, F1_post and their mean (the challenge's ``scoring_program/evaluate.py``
at commit 28552d1, radii 11 and 6.5 voxels of 8 nm).

Per volume, with coordinates in voxels (z, y, x) of the same volume:

* **Pre.** The Euclidean distances between predicted (rows) and true (columns) pre points form the
  cost matrix; ``scipy.optimize.linear_sum_assignment`` assigns min(P, T) pairs one-to-one with the
  minimum total distance; assigned pairs farther than ``pre_radius`` are rejected (a distance equal
  to the radius is kept). TP = kept pairs, FP = P - TP, FN = T - TP, F1_pre = 2TP / (2TP + FP + FN).
  The reference writes the denominator as ``2TP + |P - T| + 2 * (#assigned pairs beyond the
  radius)``; as TP = min(P, T) - beyond, FP + FN = P + T - 2TP = |P - T| + 2 * beyond: the same.
  Note the challenge's order: the assignment minimises the total distance over *all* points and
  the radius is applied afterwards, which does not always give the most pairs within the radius.
* **Post.** For every kept pre pair (p, t), the posts linked to p and those linked to t are matched
  the same way with ``post_radius``; pairs where both have no posts are skipped, a pair where one
  side has none scores 0. F1_post is the mean over the scored pairs; 0 when none was scored (no
  kept pre pair, or no posts on either side of any), as in the reference. Unmatched pre points do
  not enter F1_post (their posts count only through F1_pre's FP/FN of the pre).
* **Score** = (F1_pre + F1_post) / 2; over volumes, :func:`average_scores` takes plain means.

Empty tables: prediction or truth without pre points gives F1_pre = 0 (the formula's 0 / |P - T|),
F1_post = 0, score 0. Both without pre points (hence without posts) is 0 / 0 in the reference (it
crashes); here it is perfect agreement: F1_pre = F1_post = score = 1.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from masktwins_cli.errors import MaskTwinsError
from masktwins_cli.synapse.points import SynapsePoints, check_points

PRE_RADIUS = 11.0  # voxels (88 nm at 8 nm)
POST_RADIUS = 6.5  # voxels (52 nm)


@dataclass(frozen=True)
class PointMatch:
    """One-to-one match of ``n_pred`` predicted and ``n_truth`` true points; ``pred_rows[k]`` and
    ``truth_rows[k]`` (int64) are the k-th kept pair (within the radius)."""

    pred_rows: np.ndarray
    truth_rows: np.ndarray
    n_pred: int
    n_truth: int

    tp = property(lambda self: len(self.pred_rows))
    fp = property(lambda self: self.n_pred - self.tp)
    fn = property(lambda self: self.n_truth - self.tp)

    @property
    def f1(self) -> float:
        """2TP / (2TP + FP + FN); 1.0 when both sides are empty."""
        denominator = 2 * self.tp + self.fp + self.fn
        return 1.0 if denominator == 0 else 2 * self.tp / denominator


@dataclass(frozen=True)
class SynapseScore:
    """WASP-SYN scores of one volume and the counts behind them.

    ``tp_pre`` is also the number of kept pre pairs; ``post_pairs_scored`` those that entered the
    F1_post mean; ``tp_post``/``fp_post``/``fn_post`` are summed over the scored pairs.
    """

    f1_pre: float
    f1_post: float
    score: float
    tp_pre: int
    fp_pre: int
    fn_pre: int
    post_pairs_scored: int
    tp_post: int
    fp_post: int
    fn_post: int
    pre_radius: float
    post_radius: float

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict."""
        return asdict(self)


@dataclass(frozen=True)
class MeanSynapseScore:
    """Means of F1_pre, F1_post and score over ``n_volumes`` volumes."""

    f1_pre: float
    f1_post: float
    score: float
    n_volumes: int

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict."""
        return asdict(self)


def _radius(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < math.inf:
        raise MaskTwinsError(f"scoring {name} = {value!r}; expected a finite number >= 0 (voxels)")
    return float(value)


def match_points(pred: np.ndarray, truth: np.ndarray, radius: float) -> PointMatch:
    """The challenge's match: minimum-total-distance assignment, then pairs > ``radius`` rejected.

    pred: (P, 3), truth: (T, 3) coordinates (voxels). The cost is computed as the reference does
    (sqrt of the sum of squared z, y, x differences) so that ties resolve the same way.
    """
    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 3)
    truth = np.asarray(truth, dtype=np.float64).reshape(-1, 3)
    radius = _radius(radius, "radius")
    if len(pred) == 0 or len(truth) == 0:
        empty = np.zeros(0, np.int64)
        return PointMatch(empty, empty, len(pred), len(truth))
    cost = np.sqrt(sum((pred[:, None, axis] - truth[None, :, axis]) ** 2 for axis in range(3)))
    rows, cols = linear_sum_assignment(cost)
    kept = cost[rows, cols] <= radius
    return PointMatch(rows[kept].astype(np.int64), cols[kept].astype(np.int64),
                      len(pred), len(truth))


def score_synapses(pred: SynapsePoints, truth: SynapsePoints, pre_radius: float = PRE_RADIUS,
                   post_radius: float = POST_RADIUS) -> SynapseScore:
    """WASP-SYN scores of one volume (module docstring); both tables in the same voxel frame."""
    check_points(pred, "prediction")
    check_points(truth, "ground truth")
    pre_radius = _radius(pre_radius, "pre_radius")
    post_radius = _radius(post_radius, "post_radius")
    pre = match_points(pred.pre, truth.pre, pre_radius)
    if pre.n_pred == 0 and pre.n_truth == 0:
        return SynapseScore(1.0, 1.0, 1.0, 0, 0, 0, 0, 0, 0, 0, pre_radius, post_radius)
    post_matches = []
    for pred_row, truth_row in zip(pre.pred_rows, pre.truth_rows):
        pred_posts, truth_posts = pred.posts_of(pred_row), truth.posts_of(truth_row)
        if len(pred_posts) or len(truth_posts):
            post_matches.append(match_points(pred_posts, truth_posts, post_radius))
    f1_post = float(np.mean([m.f1 for m in post_matches])) if post_matches else 0.0
    return SynapseScore(
        f1_pre=pre.f1, f1_post=f1_post, score=(pre.f1 + f1_post) / 2,
        tp_pre=pre.tp, fp_pre=pre.fp, fn_pre=pre.fn, post_pairs_scored=len(post_matches),
        tp_post=sum(m.tp for m in post_matches), fp_post=sum(m.fp for m in post_matches),
        fn_post=sum(m.fn for m in post_matches), pre_radius=pre_radius, post_radius=post_radius,
    )


def average_scores(scores: Sequence[SynapseScore]) -> MeanSynapseScore:
    """Plain means over volumes (the challenge's final number is the mean ``score``)."""
    if not scores:
        raise MaskTwinsError("no volumes to average: score at least one volume")
    return MeanSynapseScore(
        f1_pre=float(np.mean([s.f1_pre for s in scores])),
        f1_post=float(np.mean([s.f1_post for s in scores])),
        score=float(np.mean([s.score for s in scores])),
        n_volumes=len(scores),
    )
