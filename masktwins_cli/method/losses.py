"""Loss terms of MaskTwins (paper eq. for L_total; authors' released code for the details).

L_total = L_sup + L_cl + lambda_cm * L_cm with
  L_sup = CE(student(source), y)                                  (optional class weights)
  L_cl  = lambda * CE_w(p_D, yhat) + (1 - lambda) * CE_w(p_1-D, yhat)   (K > 2 views: mean)
  L_cm  = mean squared difference between the twin predictions (logits by default).
CE_w is the per-voxel cross-entropy times the pseudo-label weight, averaged over all voxels.
Shapes: logits (B, C, *spatial), labels (B, *spatial) int64, weights (B, *spatial) float.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F


def supervised_loss(logits: torch.Tensor, labels: torch.Tensor,
                    class_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy on labeled voxels (weighted mean when class weights are given)."""
    return F.cross_entropy(logits.float(), labels, weight=class_weights)


def weighted_cross_entropy(logits: torch.Tensor, labels: torch.Tensor,
                           weights: torch.Tensor) -> torch.Tensor:
    """mean over all voxels of weight * CE; a weight of 0 ignores the voxel."""
    per_voxel = F.cross_entropy(logits.float(), labels, reduction="none")
    return (per_voxel * weights).mean()


def view_weights(num_views: int, lambda_cl: float) -> list[float]:
    """lambda, 1 - lambda for two views; 1 for one view; 1/K each for K > 2 views."""
    if num_views == 1:
        return [1.0]
    if num_views == 2:
        return [lambda_cl, 1.0 - lambda_cl]
    return [1.0 / num_views] * num_views


def twin_cross_entropy(view_logits: Sequence[torch.Tensor], labels: torch.Tensor,
                       weights: torch.Tensor, lambda_cl: float) -> torch.Tensor:
    """L_cl: each view's weighted CE against the shared pseudo-labels, mixed by view weight."""
    factors = view_weights(len(view_logits), lambda_cl)
    terms = [f * weighted_cross_entropy(v, labels, weights) for f, v in zip(factors, view_logits)]
    return torch.stack(terms).sum()


def consistency_loss(view_logits: Sequence[torch.Tensor], on: str = "logits") -> torch.Tensor:
    """L_cm: mean squared difference between views (mean over the pairs when K > 2).

    ``on='logits'`` compares raw scores (authors' code, ``F.mse_loss`` with mean reduction);
    ``on='probabilities'`` compares softmax outputs. Gradients flow into both views.
    """
    if len(view_logits) < 2:
        return view_logits[0].new_zeros((), dtype=torch.float32)
    views = [v.float() if on == "logits" else torch.softmax(v.float(), dim=1) for v in view_logits]
    pairs = [F.mse_loss(a, b) for a, b in itertools.combinations(views, 2)]
    return torch.stack(pairs).mean()
