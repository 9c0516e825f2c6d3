"""Binary scores over a chosen set of voxels (e.g. all but those labeled with the ignore
value), built on :mod:`masktwins_cli.scoring.metrics`."""

from __future__ import annotations

import numpy as np

from ..data.patches import as_zyx
from .metrics import SegmentationScores, score_slices, score_volume


def score_counted(prob: np.ndarray, truth: np.ndarray, counted: np.ndarray,
                  threshold: float = 0.5, mode: str = "per_slice") -> SegmentationScores | None:
    """:func:`score_volume` over the ``counted`` voxels only (bool, the shape of ``prob``, e.g.
    False where the truth holds an ignore label): per slice over each slice's counted voxels
    (slices with none are left out), or over all counted voxels. None when nothing counts."""
    prob, truth, counted = (as_zyx(np.asarray(a)) for a in (prob, truth, counted))
    if mode == "volume":
        if not counted.any():
            return None
        return score_volume(prob[counted][None, None], truth[counted][None, None], threshold,
                            "volume")
    pairs = [(p[c][None], t[c][None]) for p, t, c in zip(prob, truth, counted) if c.any()]
    return score_slices(pairs, threshold) if pairs else None

