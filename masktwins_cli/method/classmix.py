"""DACS ClassMix (Tranheden et al., WACV 2021), as DAFormer, MIC and MaskTwins' released code
use it for natural images: half of the classes of each source image are pasted onto a target
image; the mixed labels are the source labels there and the teacher's pseudo-labels elsewhere.

Pure functions on tensors; the random choices come from a ``numpy.random.Generator``.
"""

from __future__ import annotations

import numpy as np
import torch


def class_mix_masks(labels: torch.Tensor, rng: np.random.Generator,
                    ignore_label: int | None = None) -> torch.Tensor:
    """(B, 1, *spatial) float 0/1 masks: for each source label map of ``labels`` (B, *spatial),
    the pixels of a random half (rounded up) of the classes it holds (the ignore label is no
    class), as DACS chooses them."""
    masks = []
    for sample in labels:
        classes = torch.unique(sample)
        if ignore_label is not None:
            classes = classes[classes != ignore_label]
        count = len(classes)
        chosen = classes[torch.as_tensor(rng.choice(count, (count + count % 2) // 2, replace=False),
                                         dtype=torch.long, device=classes.device)] if count else classes
        masks.append(torch.isin(sample, chosen))
    return torch.stack(masks)[:, None].float()


def paired_targets(target: torch.Tensor, count: int) -> torch.Tensor:
    """The target sample each of ``count`` source samples is mixed with: target i % Bt."""
    index = torch.arange(count, device=target.device) % target.shape[0]
    return target.index_select(0, index)


def mix_images(masks: torch.Tensor, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """masks * source + (1 - masks) * target, the target paired by :func:`paired_targets`.
    ``source`` (B, C, *sp), ``target`` (Bt, C, *sp), ``masks`` (B, 1, *sp)."""
    return masks * source + (1 - masks) * paired_targets(target, source.shape[0])


def mix_labels(masks: torch.Tensor, source_labels: torch.Tensor, pseudo: torch.Tensor,
               pseudo_weights: torch.Tensor, ignore_label: int | None = None,
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels, weights) of the mixed images: source labels (weight 1; 0 where they hold the
    ignore label) inside the masks, the paired pseudo-labels and their weights outside.
    ``source_labels`` (B, *sp) int64, ``pseudo`` / ``pseudo_weights`` (Bt, *sp)."""
    inside = masks[:, 0] > 0
    count = source_labels.shape[0]
    pseudo, pseudo_weights = paired_targets(pseudo, count), paired_targets(pseudo_weights, count)
    labelled = torch.ones_like(pseudo_weights) if ignore_label is None else \
        (source_labels != ignore_label).to(pseudo_weights.dtype)
    source = torch.where(labelled > 0, source_labels, torch.zeros_like(source_labels))
    return (torch.where(inside, source, pseudo),
            torch.where(inside, labelled, pseudo_weights))
