"""Pseudo-labels from the teacher's prediction on the unmasked target patch.

Two ways of handling confidence (paper section 4.3 and the authors' DAFormer base):

- ``threshold``: per-voxel weight 1 where the teacher's top probability is >= delta, else 0
  (the voxel is ignored). EM default delta = 0.7.
- ``quality``: every voxel gets the same weight q = fraction of the batch's voxels whose top
  probability is >= tau (DAFormer, tau = 0.968), as in the authors' released code.
- ``class_balanced``: class-balanced selection (CBST, Zou et al., ECCV 2018): per batch and per
  predicted class, the ``keep`` share of its voxels with the highest top probability get weight
  1, the rest 0. A global delta keeps nearly every background voxel of a rare-foreground volume,
  including uncertain ones at missed objects, which self-training then pushes further towards
  background; a per-class quantile drops the least certain part of every class alike.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pseudo_labels(teacher_logits: torch.Tensor, confidence: str, threshold: float,
                  tau: float, keep: float = 0.5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hard labels, loss weights and the confident fraction.

    Args:
        teacher_logits: (B, C, *spatial) raw scores.
        confidence: ``threshold``, ``quality`` or ``class_balanced``.
        threshold: delta, for ``threshold``.
        tau: confidence level, for ``quality``.
        keep: share of each predicted class kept, for ``class_balanced``, in (0, 1].

    Returns:
        labels (B, *spatial) int64, weights (B, *spatial) float32 in [0, 1], and a 0-d tensor: the
        fraction of voxels above delta (``threshold``), tau (``quality``) or kept
        (``class_balanced``).
    """
    probs = torch.softmax(teacher_logits.float(), dim=1)
    top, labels = probs.max(dim=1)
    if confidence == "threshold":
        weights = (top >= threshold).float()
        return labels, weights, weights.mean()
    if confidence == "quality":
        quality = (top >= tau).float().mean()
        return labels, torch.full_like(top, 1.0) * quality, quality
    if confidence == "class_balanced":
        weights = class_balanced_selection(top, labels, probs.shape[1], keep).float()
        return labels, weights, weights.mean()
    raise ValueError(f"unknown confidence mode {confidence!r}")


def class_balanced_selection(top: torch.Tensor, labels: torch.Tensor, num_classes: int,
                             keep: float) -> torch.Tensor:
    """bool, ``labels``' shape: per class c, the voxels labelled c whose ``top`` probability is
    at least the (1 - keep) quantile of that class's (ties at the cut all kept)."""
    selected = torch.zeros_like(labels, dtype=torch.bool)
    for c in range(num_classes):
        members = labels == c
        count = int(members.sum())
        if count == 0:
            continue
        dropped = min(count - 1, int(count * (1.0 - keep)))  # at least one voxel stays
        cut = torch.kthvalue(top[members], dropped + 1).values if dropped > 0 else top.new_tensor(-1.0)
        selected |= members & (top >= cut)
    return selected


def sigmoid_pseudo_labels(teacher_logits: torch.Tensor, thresholds, keep: float | None = None,
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-channel hard labels and ignore mask for independent sigmoid channels.

    Args:
        teacher_logits: (B, C, *spatial) raw scores, one independent channel each.
        thresholds: C numbers delta_c in [0.5, 1): p >= delta_c -> 1, p <= 1 - delta_c -> 0,
            otherwise ignored (valid 0). delta_c = 0.5 labels every voxel.
        keep: class-balanced selection instead of the thresholds (None: thresholds): per
            channel, p >= 0.5 -> 1 else 0, and of each label the ``keep`` share with the highest
            confidence max(p, 1 - p) is valid (see :func:`class_balanced_selection`).

    Returns:
        labels (B, C, *spatial) float32 0/1, valid (B, C, *spatial) float32 0/1, and the
        confident fraction per channel, (C,) float32 (share of valid voxels).
    """
    probs = torch.sigmoid(teacher_logits.float())
    if keep is not None:
        labels = (probs >= 0.5).long()
        confidence = torch.maximum(probs, 1.0 - probs)
        valid = torch.stack([class_balanced_selection(confidence[:, c], labels[:, c], 2, keep)
                             for c in range(probs.shape[1])], dim=1).float()
        dims = [0, *range(2, probs.ndim)]
        return labels.float(), valid, valid.mean(dim=dims)
    delta = channel_deltas(probs, thresholds)
    positive = probs >= delta
    return labels_and_fraction(positive, positive | (probs <= 1.0 - delta))


def channel_deltas(probs: torch.Tensor, thresholds) -> torch.Tensor:
    """The C per-channel thresholds as a (1, C, 1, ...) tensor broadcasting over ``probs``."""
    shape = (1, probs.shape[1]) + (1,) * (probs.ndim - 2)
    return torch.as_tensor(list(thresholds), dtype=probs.dtype, device=probs.device).reshape(shape)


def labels_and_fraction(positive: torch.Tensor, valid: torch.Tensor,
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(labels, valid) as float32 0/1 and the share of valid voxels per channel, (C,)."""
    dims = [0, *range(2, valid.ndim)]
    return positive.float(), valid.float(), valid.float().mean(dim=dims)


def cube_pseudo_labels(teacher_logits: torch.Tensor, thresholds, cube_size: int,
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Synapse pseudo-labels in the form of the true labels: the teacher's detections as cubes.

    Per channel c: a voxel with p >= delta_c that is the largest p within its
    (2 * cube_size + 1)^3 neighbourhood is a detected point, and its cube_size^3 cube is
    labelled 1 (as a labelled point becomes a cube); voxels with p <= 1 - delta_c outside every
    cube are 0; the rest is ignored: the shoulders of each above-threshold blob and the
    uncertain voxels. Per-voxel thresholding instead labels whole blobs, whatever their size, so
    self-training can grow them, and a grown blob splits into several detections.

    Args:
        teacher_logits: (B, C, z, y, x) raw scores, one independent sigmoid channel each.
        thresholds: C numbers delta_c in [0.5, 1).
        cube_size: odd edge of the cubes in voxels (the recipe's data.cube_size).

    Returns:
        labels (B, C, z, y, x) float32 0/1, valid (same shape) float32 0/1, and the confident
        fraction per channel, (C,) float32 (share of valid voxels).
    """
    probs = torch.sigmoid(teacher_logits.float())
    delta = channel_deltas(probs, thresholds)
    window = 2 * cube_size + 1
    local_max = F.max_pool3d(probs, window, stride=1, padding=window // 2)
    peaks = (probs >= delta) & (probs == local_max)
    cubes = F.max_pool3d(peaks.float(), cube_size, stride=1, padding=cube_size // 2) > 0
    return labels_and_fraction(cubes, cubes | (probs <= 1.0 - delta))


def margin_pairs(margin, spatial_dims: int) -> list[tuple[int, int]]:
    """(before, after) voxels per spatial axis: ``margin`` holds one value per axis (both ends)
    or a pair per axis (2-D: top, bottom, left, right)."""
    margin = [int(m) for m in margin]
    if len(margin) == 2 * spatial_dims:
        return list(zip(margin[0::2], margin[1::2]))
    return [(m, m) for m in margin]


def ignore_margin(weights: torch.Tensor, margin, spatial_dims: int | None = None) -> torch.Tensor:
    """Zero the pseudo-label weights within ``margin`` voxels of the patch border.

    ``weights`` is (B, *spatial) or (B, C, *spatial); ``margin`` has one entry per spatial axis
    (counted from the end) or, given ``spatial_dims``, a (before, after) pair per axis (see
    :func:`margin_pairs`); 0 = keep that end whole. The teacher predicts each patch without
    the context beyond it, so its border predictions are its least reliable, and they carry
    whatever the network does at a window edge (zero padding): pseudo-labels there would teach
    the student the teacher's border behaviour, and self-training amplifies it. (DAFormer drops
    fixed image margins of its pseudo-labels for a related reason.) Returns a new tensor.
    """
    if not any(margin):
        return weights
    out = weights.clone()
    pairs = margin_pairs(margin, spatial_dims or len(margin))
    for axis, (before, after) in enumerate(pairs):
        dim = weights.dim() - len(pairs) + axis
        size = weights.shape[dim]
        if before > 0:
            out.narrow(dim, 0, min(before, size)).zero_()
        if after > 0:
            out.narrow(dim, max(size - after, 0), min(after, size)).zero_()
    return out
