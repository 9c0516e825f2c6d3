"""The per-iteration maths of MaskTwins: one function from a batch to the loss terms.

For an unlabeled target batch x: the teacher (EMA, or the student itself) predicts pseudo-labels
on the unmasked x; masks D (and 1 - D, or K views) make the twins; the student predicts each
view; the loss is L_sup + L_cl + lambda_cm * L_cm. With AdaIN, the teacher pass also records the
target's shallow feature statistics and the source pass is re-styled with them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..method.adain import AdaINStyler, StatisticsRecorder
from ..method.losses import consistency_loss, supervised_loss, twin_cross_entropy
from ..method.masking import masked_views, view_masks
from ..method.pseudo_labels import pseudo_labels


@dataclass
class Batch:
    """One iteration's tensors: source images (B, 1, *sp), labels (B, *sp) int64, target (Bt, 1, *sp)."""

    source: torch.Tensor
    source_labels: torch.Tensor
    target: torch.Tensor | None = None


def student_views(student: nn.Module, views: list[torch.Tensor], batched: bool) -> list[torch.Tensor]:
    """Predict each masked view; one forward over all views when normalisation is per-sample."""
    if batched and len(views) > 1:
        return list(torch.chunk(student(torch.cat(views, dim=0)), len(views), dim=0))
    return [student(v) for v in views]


def masktwins_losses(student: nn.Module, labeler: nn.Module, batch: Batch, method,
                     generator: torch.Generator, class_weights: torch.Tensor | None = None,
                     batched_views: bool = True) -> dict[str, torch.Tensor]:
    """All loss terms of one iteration (0-d tensors); ``loss`` is the total to minimise.

    Args:
        student: network being trained (train mode).
        labeler: the EMA teacher, or the student itself when EMA is off.
        batch: source images/labels and target images.
        method: the recipe's ``[method]`` section.
        generator: draws the block masks.
        class_weights: optional (C,) weights of L_sup.
        batched_views: predict all views in one forward (instance norm makes this exact).

    Returns keys: loss, loss_sup, and when adapting loss_cl, loss_cm, confident_fraction.
    """
    if not method.adapt or batch.target is None:
        loss_sup = supervised_loss(student(batch.source), batch.source_labels, class_weights)
        return {"loss": loss_sup, "loss_sup": loss_sup.detach()}
    recorder = StatisticsRecorder(method.adain_stages if method.adain else 0)
    with torch.no_grad():
        teacher_logits = labeler(batch.target, stage_hook=recorder if method.adain else None)
    labels, weights, confident = pseudo_labels(teacher_logits, method.confidence,
                                               method.confidence_threshold, method.quality_tau)
    styler = AdaINStyler(recorder.statistics) if method.adain else None
    loss_sup = supervised_loss(student(batch.source, stage_hook=styler), batch.source_labels,
                               class_weights)
    spatial = tuple(batch.target.shape[2:])
    masks = view_masks(method.mask_mode, batch.target.shape[0], spatial, method.block_size,
                       method.mask_ratio, method.num_views, generator)
    view_logits = student_views(student, masked_views(batch.target, masks), batched_views)
    loss_cl = twin_cross_entropy(view_logits, labels, weights, method.lambda_cl)
    loss_cm = consistency_loss(view_logits, method.consistency_on)
    total = loss_sup + loss_cl + method.lambda_cm * loss_cm
    return {"loss": total, "loss_sup": loss_sup.detach(), "loss_cl": loss_cl.detach(),
            "loss_cm": loss_cm.detach(), "confident_fraction": confident.detach()}
