"""Loss terms of MaskTwins (paper eq. for L_total; authors' released code for the details).

L_total = L_sup + L_cl + lambda_cm * L_cm with
  L_sup = CE(student(source), y)                                  (optional class weights)
  L_cl  = lambda * CE_w(p_D, yhat) + (1 - lambda) * CE_w(p_1-D, yhat)   (K > 2 views: mean)
  L_cm  = mean squared difference between the twin predictions (logits by default).
CE_w is the per-voxel cross-entropy times the pseudo-label weight, averaged over all voxels.
Shapes: logits (B, C, *spatial), labels (B, *spatial) int64, weights (B, *spatial) float.

Sigmoid tasks (synapse detection, C independent channels, e.g. pre/post) replace CE by the
weighted binary cross-entropy of :func:`weighted_bce` (AdaSyn's WeightedBCE); targets and
weights are then (B, C, *spatial) float, and L_cm on probabilities uses the sigmoid.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F


def supervised_loss(logits: torch.Tensor, labels: torch.Tensor,
                    class_weights: torch.Tensor | None = None,
                    ignore_label: int | None = None) -> torch.Tensor:
    """Mean cross-entropy on labeled voxels (weighted mean when class weights are given);
    voxels labeled ``ignore_label`` count nowhere (a batch of ignored voxels only gives 0, with
    a gradient of zeros)."""
    if ignore_label is None:
        return F.cross_entropy(logits.float(), labels, weight=class_weights)
    if not bool((labels != ignore_label).any()):
        return logits.float().sum() * 0.0
    return F.cross_entropy(logits.float(), labels, weight=class_weights, ignore_index=ignore_label)


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


def consistency_loss(view_logits: Sequence[torch.Tensor], on: str = "logits",
                     activation: str = "softmax") -> torch.Tensor:
    """L_cm: mean squared difference between views (mean over the pairs when K > 2).

    ``on='logits'`` compares raw scores (authors' code, ``F.mse_loss`` with mean reduction);
    ``on='probabilities'`` compares ``activation`` outputs (``softmax`` over the classes, or
    ``sigmoid`` per channel). Gradients flow into both views.
    """
    if len(view_logits) < 2:
        return view_logits[0].new_zeros((), dtype=torch.float32)
    if on == "logits":
        views = [v.float() for v in view_logits]
    elif activation == "sigmoid":
        views = [torch.sigmoid(v.float()) for v in view_logits]
    else:
        views = [torch.softmax(v.float(), dim=1) for v in view_logits]
    pairs = [F.mse_loss(a, b) for a, b in itertools.combinations(views, 2)]
    return torch.stack(pairs).mean()


# ------------------------------------------------------------------ sigmoid (synapse) tasks
RATIO_CLIP = (0.05, 0.95)


@torch.no_grad()
def rebalance_weights(targets: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """AdaSyn's binary rebalancing, per channel over the whole batch.

    targets: (B, C, *spatial) 0/1; valid: same shape, 1 where the voxel counts (None = all).
    Per channel c, r = foreground fraction of the valid voxels, clipped to [0.05, 0.95]; the
    rarer class gets weight max(r, 1-r) / min(r, 1-r), the other 1 (r = 0.5: both 1; a channel
    with no valid voxel: all 1). Returns float32 weights of the targets' shape.
    """
    targets = targets.float()
    valid = torch.ones_like(targets) if valid is None else valid.float()
    dims = [0, *range(2, targets.ndim)]
    count = valid.sum(dim=dims, keepdim=True)
    ratio = ((targets * valid).sum(dim=dims, keepdim=True) / count.clamp(min=1.0))
    ratio = torch.where(count > 0, ratio, torch.full_like(ratio, 0.5)).clamp(*RATIO_CLIP)
    foreground = torch.where(ratio < 0.5, (1.0 - ratio) / ratio, torch.ones_like(ratio))
    background = torch.where(ratio > 0.5, ratio / (1.0 - ratio), torch.ones_like(ratio))
    return targets * foreground + (1.0 - targets) * background


def weighted_bce(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor | None = None,
                 rebalance: bool = True) -> torch.Tensor:
    """Mean over all voxels and channels of valid * w * BCE(sigmoid(logits), targets).

    logits, targets, valid: (B, C, *spatial); ``valid`` 0 ignores a voxel (pseudo-labels) and
    None counts all. w = :func:`rebalance_weights` of the targets (over the valid voxels) when
    ``rebalance``, else 1. The mean runs over all voxels, ignored ones included, as CE_w does.
    """
    targets = targets.float()
    per_voxel = F.binary_cross_entropy_with_logits(logits.float(), targets, reduction="none")
    weights = rebalance_weights(targets, valid) if rebalance else torch.ones_like(per_voxel)
    if valid is not None:
        weights = weights * valid.float()
    return (per_voxel * weights).mean()


def twin_weighted_bce(view_logits: Sequence[torch.Tensor], targets: torch.Tensor, valid: torch.Tensor,
                      lambda_cl: float, rebalance: bool = True) -> torch.Tensor:
    """L_cl for sigmoid tasks: each view's :func:`weighted_bce` against the shared pseudo-labels
    (targets, valid: (B, C, *spatial)), mixed by :func:`view_weights`."""
    factors = view_weights(len(view_logits), lambda_cl)
    terms = [f * weighted_bce(v, targets, valid, rebalance) for f, v in zip(factors, view_logits)]
    return torch.stack(terms).sum()
