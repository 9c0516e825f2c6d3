"""``masktwins evaluate --task synapse``: score predicted synapse point tables against the truth.

Each (prediction, truth) pair is one volume, scored with the WASP-SYN rules
(:func:`~masktwins_cli.synapse.scoring.score_synapses`); several volumes are averaged as the
challenge does (plain mean of F1_pre, F1_post and score).

Tables are CSV (local voxel coordinates) or WASP-SYN HDF5. As in the challenge's scorer, an
HDF5 table whose file name encodes a crop offset (``syns_zyx_<z0>-<z1>_<y0>-<y1>_<x0>-<x1>.h5``)
holds global coordinates and the offset is subtracted; an HDF5 table without one in its name (a
``*predict.h5`` submission, ``masktwins detect -o pred.h5``) holds local coordinates. The offset
used is reported per volume.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MaskTwinsError
from ..synapse.points import HDF5_SUFFIXES, SynapsePoints, offset_from_name, read_points
from ..synapse.scoring import (
    POST_RADIUS,
    PRE_RADIUS,
    MeanSynapseScore,
    SynapseScore,
    average_scores,
    match_points,
    score_synapses,
)


@dataclass(frozen=True)
class VolumeScore:
    """Scores of one (prediction, truth) pair; offsets (z, y, x voxels) subtracted on reading."""

    prediction: str
    ground_truth: str
    prediction_offset: tuple[int, int, int]
    truth_offset: tuple[int, int, int]
    scores: SynapseScore

    def as_dict(self) -> dict[str, Any]:
        return {"prediction": self.prediction, "ground_truth": self.ground_truth,
                "prediction_offset": list(self.prediction_offset),
                "truth_offset": list(self.truth_offset), **self.scores.as_dict()}


@dataclass(frozen=True)
class SynapseEvaluation:
    """Per-volume scores, their mean and the overlay PNGs written."""

    volumes: tuple[VolumeScore, ...]
    mean: MeanSynapseScore
    overlays: tuple[Path, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        first = self.volumes[0].scores
        return {"task": "synapse", "pre_radius": first.pre_radius, "post_radius": first.post_radius,
                "volumes": [v.as_dict() for v in self.volumes], "mean": self.mean.as_dict(),
                "overlays": [str(p) for p in self.overlays]}


@dataclass(frozen=True)
class DetectionClasses:
    """Points by outcome, each (K, 3) z, y, x voxels: true positives at the predicted position,
    false positives (predicted, unmatched) and false negatives (true, unmatched)."""

    pre_tp: np.ndarray
    pre_fp: np.ndarray
    pre_fn: np.ndarray
    post_tp: np.ndarray
    post_fp: np.ndarray
    post_fn: np.ndarray


def read_table(path: str | Path, shape: tuple[int, ...] | None = None
               ) -> tuple[SynapsePoints, tuple[int, int, int]]:
    """A point table in local voxels and the offset subtracted (module docstring); with
    ``shape`` (Z, Y, X) every point must lie inside it (errors name the file and row)."""
    path = Path(path)
    offset = (0, 0, 0)
    if path.suffix.lower() in HDF5_SUFFIXES:
        try:
            offset = offset_from_name(path)
        except MaskTwinsError:
            offset = (0, 0, 0)  # no offset in the name: local coordinates
        return read_points(path, shape, offset=offset), offset
    return read_points(path, shape), offset


def classify_detections(pred: SynapsePoints, truth: SynapsePoints, pre_radius: float = PRE_RADIUS,
                        post_radius: float = POST_RADIUS) -> DetectionClasses:
    """Split the points of one volume into TP / FP / FN with the scoring's matches.

    Pre points: the challenge's pre match. Posts of a matched pre pair: the post match within the
    pair; posts of unmatched pres count as FP (predicted) or FN (true).
    """
    pre = match_points(pred.pre, truth.pre, pre_radius)
    pre_fp = np.setdiff1d(np.arange(pred.n_pre), pre.pred_rows)
    pre_fn = np.setdiff1d(np.arange(truth.n_pre), pre.truth_rows)
    post_tp = np.zeros(pred.n_post, bool)
    pred_seen, truth_seen = np.zeros(pred.n_post, bool), np.zeros(truth.n_post, bool)
    for pred_row, truth_row in zip(pre.pred_rows, pre.truth_rows):
        pred_posts = np.flatnonzero(pred.post_pre == pred_row)
        truth_posts = np.flatnonzero(truth.post_pre == truth_row)
        match = match_points(pred.post[pred_posts], truth.post[truth_posts], post_radius)
        post_tp[pred_posts[match.pred_rows]] = True
        pred_seen[pred_posts[match.pred_rows]] = True
        truth_seen[truth_posts[match.truth_rows]] = True
    return DetectionClasses(
        pre_tp=pred.pre[pre.pred_rows], pre_fp=pred.pre[pre_fp], pre_fn=truth.pre[pre_fn],
        post_tp=pred.post[post_tp], post_fp=pred.post[~pred_seen], post_fn=truth.post[~truth_seen])


def evaluate_synapses(pairs: list[tuple[str, str]], pre_radius: float = PRE_RADIUS,
                      post_radius: float = POST_RADIUS, overlay_dir: str | Path | None = None,
                      raw: str | None = None,
                      json_out: str | Path | None = None) -> SynapseEvaluation:
    """Score every (prediction, truth) pair; PNG overlays of the single pair on ``raw``;
    ``json_out``: also write the result there as JSON."""
    if not pairs:
        raise MaskTwinsError("no point tables to score: give PRED_POINTS TRUTH_POINTS")
    if overlay_dir is not None and raw is None:
        raise MaskTwinsError("--overlay needs --raw: the image volume to draw the detections on")
    if overlay_dir is not None and len(pairs) != 1:
        raise MaskTwinsError(f"--overlay draws one volume, but {len(pairs)} pairs were given")
    image = None
    if overlay_dir is not None:
        from ..io.volumes import open_volume

        image = open_volume(raw, ndim=3)
    shape = None if image is None else image.shape  # drawn points must lie on the image
    volumes, tables = [], []
    for prediction, truth in pairs:
        pred_points, pred_offset = read_table(prediction, shape)
        truth_points, truth_offset = read_table(truth, shape)
        scores = score_synapses(pred_points, truth_points, pre_radius, post_radius)
        volumes.append(VolumeScore(str(prediction), str(truth), pred_offset, truth_offset, scores))
        tables.append((pred_points, truth_points))
    overlays: tuple[Path, ...] = ()
    if image is not None:
        from .synapse_overlays import write_synapse_overlays

        classes = classify_detections(*tables[0], pre_radius, post_radius)
        overlays = tuple(write_synapse_overlays(image, classes, Path(overlay_dir)))
    result = SynapseEvaluation(tuple(volumes), average_scores([v.scores for v in volumes]), overlays)
    if json_out is not None:
        from .scores_file import write_scores_json

        write_scores_json(json_out, result.as_dict())
    return result

