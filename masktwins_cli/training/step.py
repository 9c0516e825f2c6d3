"""The per-iteration maths of MaskTwins: one function from a batch to the loss terms.

For an unlabeled target batch x: the teacher (EMA, or the student itself) predicts pseudo-labels
on the unmasked x; masks D (and 1 - D, or K views) make the twins; the student predicts each
view; the loss is L_sup + L_cl + lambda_cm * L_cm. With AdaIN, the teacher pass also records the
target's shallow feature statistics and the source pass is re-styled with them.

The task picks the objective, not the structure: ``segmentation`` uses softmax classes
(cross-entropy, top-class pseudo-labels with delta); ``synapse`` uses independent sigmoid
channels (weighted BCE, per-channel pseudo-labels with delta_pre / delta_post).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..method.adain import AdaINStyler, StatisticsRecorder
from ..method.classmix import mix_labels
from ..method.feature_distance import StageCapture, feature_distance
from ..method.losses import (
    consistency_loss,
    supervised_loss,
    twin_cross_entropy,
    twin_weighted_bce,
    view_weights,
    weighted_bce,
    weighted_cross_entropy,
)
from ..method.masking import masked_views, view_masks
from ..method.pseudo_labels import (
    cube_pseudo_labels,
    ignore_margin,
    pseudo_labels,
    sigmoid_pseudo_labels,
)

SYNAPSE_CHANNELS = ("pre", "post")


@dataclass
class Batch:
    """One iteration's tensors: source images (B, 1, *sp), labels (B, *sp) int64 (segmentation)
    or (B, 2, *sp) float32 0/1 cube targets (synapse), target (Bt, 1, *sp) as the teacher sees
    it, and ``target_student`` (Bt, 1, *sp), the student's strongly augmented copy of it before
    masking (None: the student sees ``target``). With ``method.teacher_context`` = c the target
    tensors are 2c larger per axis than the student's patch: the teacher sees the context, the
    student the centre."""

    source: torch.Tensor
    source_labels: torch.Tensor
    target: torch.Tensor | None = None
    target_student: torch.Tensor | None = None
    mixed: torch.Tensor | None = None  # ClassMix images (B, C, *sp) (method.classmix)
    mix_masks: torch.Tensor | None = None  # (B, 1, *sp): 1 where the source was pasted


@dataclass(frozen=True)
class Objective:
    """The task-specific maths of one iteration.

    - ``supervised(logits, labels)``: L_sup.
    - ``pseudo(teacher_logits)``: (labels, weights, extra log terms incl. confident_fraction).
    - ``twin(view_logits, labels, weights)``: L_cl.
    - ``activation``: softmax or sigmoid, for L_cm on probabilities.
    """

    supervised: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    pseudo: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, dict]]
    twin: Callable[[list, torch.Tensor, torch.Tensor], torch.Tensor]
    activation: str


def objective_for(task: str, method, class_weights: torch.Tensor | None = None,
                  cube_size: int = 3, ignore_label: int | None = None) -> Objective:
    """Softmax segmentation (CE, delta; source voxels labeled ``ignore_label`` count nowhere) or
    sigmoid synapse detection (weighted BCE, per-channel thresholds; ``cube_size`` for cube
    pseudo-labels) from the recipe's ``[method]`` section."""
    if task == "synapse":
        rebalance = method.bce_weighting == "rebalance"

        def synapse_pseudo(logits):
            if method.synapse_pseudo_labels == "cubes":
                labels, valid, fractions = cube_pseudo_labels(logits, method.synapse_thresholds,
                                                              cube_size)
            else:
                keep = method.class_balanced_keep if method.confidence == "class_balanced" else None
                labels, valid, fractions = sigmoid_pseudo_labels(logits, method.synapse_thresholds,
                                                                 keep)
            extra = {f"confident_{name}": f for name, f in zip(SYNAPSE_CHANNELS, fractions)}
            for c, name in enumerate(SYNAPSE_CHANNELS):  # per million: synapse voxels are rare
                extra[f"pseudo_{name}_ppm"] = 1e6 * pseudo_foreground(labels[:, c], valid[:, c])
            return labels, valid, {"confident_fraction": fractions.mean(), **extra}

        return Objective(lambda lg, y: weighted_bce(lg, y, None, rebalance), synapse_pseudo,
                         lambda views, y, w: twin_weighted_bce(views, y, w, method.lambda_cl, rebalance),
                         "sigmoid")
    if task != "segmentation":
        raise ValueError(f"unknown task {task!r}; expected segmentation or synapse")

    def softmax_pseudo(logits):
        labels, weights, confident = pseudo_labels(logits, method.confidence,
                                                   method.confidence_threshold, method.quality_tau,
                                                   method.class_balanced_keep)
        return labels, weights, {"confident_fraction": confident,
                                 "pseudo_foreground": pseudo_foreground(labels, weights),
                                 "teacher_confidence": mean_top_probability(logits)}

    return Objective(lambda lg, y: supervised_loss(lg, y, class_weights, ignore_label),
                     softmax_pseudo,
                     lambda views, y, w: twin_cross_entropy(views, y, w, method.lambda_cl), "softmax")


def pseudo_foreground(labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Share of the weighted pseudo-labels that are foreground (any class > 0), a 0-d tensor:
    a run drifting towards all-background pseudo-labels (confirmation bias) shows it falling."""
    total = weights.sum()
    return torch.where(total > 0, (weights * (labels > 0)).sum() / total.clamp_min(1e-12),
                       torch.zeros_like(total))


def mean_top_probability(logits: torch.Tensor) -> torch.Tensor:
    """Mean over pixels of the largest softmax probability of (N, C, *spatial) logits, a 0-d
    tensor in [1/C, 1]: the teacher's confidence on the target whatever the selection rule
    (with class-balanced selection ``confident_fraction`` is fixed by construction)."""
    return logits.detach().float().softmax(dim=1).amax(dim=1).mean()


def centre(tensor: torch.Tensor, context) -> torch.Tensor:
    """(B, C, *spatial) without ``context`` voxels at each end of each spatial axis: the
    student's patch inside the teacher's larger one (``method.teacher_context``)."""
    spatial = len(context)
    for axis, c in enumerate(context):
        if c:
            dim = tensor.dim() - spatial + axis
            tensor = tensor.narrow(dim, c, tensor.shape[dim] - 2 * c)
    return tensor


def student_views(student: nn.Module, views: list[torch.Tensor], batched: bool,
                  ) -> tuple[list[torch.Tensor], list]:
    """Predict each masked view (one forward over all views when normalisation is per-sample);
    with each view, the network's detail output (HRDA; else None, see :func:`pop_detail`)."""
    if batched and len(views) > 1:
        logits = list(torch.chunk(student(torch.cat(views, dim=0)), len(views), dim=0))
        detail = pop_detail(student)
        if detail is None:
            return logits, [None] * len(views)
        parts = torch.chunk(detail[0], len(views), dim=0)
        return logits, [(part, *detail[1:]) for part in parts]
    logits, details = [], []
    for view in views:
        logits.append(student(view))
        details.append(pop_detail(student))
    return logits, details


def pop_detail(student: nn.Module) -> tuple | None:
    """(detail logits, box, weight) the network kept from its last training forward (HRDA's
    detail window, see :mod:`masktwins_cli.models.hrda`), cleared; None for other networks."""
    module = getattr(student, "module", student)  # DistributedDataParallel
    module = getattr(module, "_orig_mod", module)  # torch.compile
    detail = getattr(module, "detail", None)
    if detail is None:
        return None
    module.detail = None
    return (*detail, module.detail_loss)


def with_detail(loss: torch.Tensor, detail: tuple | None, loss_fn, *maps: torch.Tensor) -> torch.Tensor:
    """HRDA's loss: (1 - w) x ``loss`` (of the fused logits) + w x ``loss_fn`` of the detail
    logits against ``maps`` (labels, weights) cut to the detail window; ``loss`` unchanged
    without a detail output."""
    if detail is None:
        return loss
    logits, box, weight = detail
    return (1 - weight) * loss + weight * loss_fn(logits, *(m[(..., *box)] for m in maps))


def masktwins_losses(student: nn.Module, labeler: nn.Module, batch: Batch, method,
                     generator: torch.Generator, class_weights: torch.Tensor | None = None,
                     batched_views: bool = True, task: str = "segmentation",
                     cube_size: int = 3, objective: Objective | None = None,
                     ignore_label: int | None = None,
                     reference: Callable[[torch.Tensor], torch.Tensor] | None = None,
                     num_classes: int = 2) -> dict[str, torch.Tensor]:
    """All loss terms of one iteration (0-d tensors); ``loss`` is the total to minimise.

    Args:
        student: network being trained (train mode).
        labeler: the EMA teacher, or the student itself when EMA is off.
        batch: source images/labels and target images.
        method: the recipe's ``[method]`` section.
        generator: draws the block masks.
        class_weights: optional (C,) weights of L_sup (segmentation).
        batched_views: predict all views in one forward (instance norm makes this exact).
        task: ``segmentation`` or ``synapse`` (see :func:`objective_for`).
        cube_size: synapse cube edge in voxels, for cube pseudo-labels.
        objective: the task's maths built once by the caller (:func:`objective_for`); by default
            built here from ``task``, ``method``, ``class_weights`` and ``cube_size``.
        ignore_label: the source labels' ignore value (ClassMix pastes no label there).
        reference: the frozen ImageNet encoder's deepest features of an image, for the feature
            distance (``method.feature_distance`` > 0; a loss_fd term).
        num_classes: K of the source labels (for the feature distance's block labels).

    Returns keys: loss, loss_sup, and when adapting loss_cl, loss_cm (loss_mix with ClassMix
    images in the batch), confident_fraction, and
    pseudo_foreground and teacher_confidence (segmentation) or confident_pre, confident_post, pseudo_pre_ppm,
    pseudo_post_ppm (synapse: positive pseudo-labels per million valid voxels).
    """
    objective = objective or objective_for(task, method, class_weights, cube_size)
    if not method.adapt or batch.target is None:
        capture = StageCapture()
        loss_sup = objective.supervised(student(batch.source, stage_hook=capture), batch.source_labels)
        loss_sup = with_detail(loss_sup, pop_detail(student), objective.supervised, batch.source_labels)
        terms = {"loss": loss_sup, "loss_sup": loss_sup.detach()}
        return with_feature_distance(terms, capture, batch, method, reference, ignore_label,
                                     num_classes)
    recorder = StatisticsRecorder(method.adain_stages if method.adain else 0)
    with torch.no_grad():
        teacher_logits = labeler(batch.target, stage_hook=recorder if method.adain else None)
    context = method.teacher_context or (0,) * (batch.target.dim() - 2)
    labels, weights, extra = objective.pseudo(centre(teacher_logits, context))
    dims = batch.target.dim() - 2
    weights = ignore_margin(weights, method.pseudo_margin or (0,) * dims, dims)
    capture = StageCapture(AdaINStyler(recorder.statistics) if method.adain else None)
    loss_sup = objective.supervised(student(batch.source, stage_hook=capture), batch.source_labels)
    loss_sup = with_detail(loss_sup, pop_detail(student), objective.supervised, batch.source_labels)
    student_target = centre(batch.target if batch.target_student is None else batch.target_student,
                            context)
    spatial = tuple(student_target.shape[2:])
    masks = view_masks(method.mask_mode, student_target.shape[0], spatial, method.block_size,
                       method.mask_ratio, method.num_views, generator)
    view_logits, details = student_views(student, masked_views(student_target, masks), batched_views)
    loss_cl = objective.twin(view_logits, labels, weights)
    if any(d is not None for d in details):  # HRDA: each view's own detail loss, view-weighted

        def one_view(logits, targets, pixel_weights):
            return objective.twin([logits], targets, pixel_weights)

        factors = view_weights(len(view_logits), method.lambda_cl)
        loss_cl = sum(f * with_detail(one_view(v, labels, weights), d, one_view, labels, weights)
                      for f, v, d in zip(factors, view_logits, details))
    loss_cm = consistency_loss(view_logits, method.consistency_on, objective.activation)
    total = loss_sup + loss_cl + method.lambda_cm * loss_cm
    if batch.mixed is not None:  # DACS ClassMix: source labels pasted, pseudo-labels elsewhere
        mixed_labels, mixed_weights = mix_labels(batch.mix_masks, batch.source_labels, labels,
                                                 weights, ignore_label)
        loss_mix = weighted_cross_entropy(student(batch.mixed), mixed_labels, mixed_weights)
        extra["loss_mix"] = with_detail(loss_mix, pop_detail(student), weighted_cross_entropy,
                                        mixed_labels, mixed_weights)
        total = total + extra["loss_mix"]
    terms = {"loss": total, "loss_sup": loss_sup.detach(), "loss_cl": loss_cl.detach(),
             "loss_cm": loss_cm.detach(), **{k: v.detach() for k, v in extra.items()}}
    return with_feature_distance(terms, capture, batch, method, reference, ignore_label,
                                 num_classes)


def with_feature_distance(terms: dict, capture: StageCapture, batch: Batch, method,
                          reference: Callable[[torch.Tensor], torch.Tensor] | None,
                          ignore_label: int | None, num_classes: int) -> dict[str, torch.Tensor]:
    """``terms`` with lambda_FD * L_FD added to the loss (``loss_fd``: L_FD itself) when the
    feature distance is on and a reference encoder is given."""
    if method.feature_distance <= 0 or reference is None or capture.features is None:
        return terms
    with torch.no_grad():
        imagenet = reference(batch.source)
    loss_fd = feature_distance(capture.features, imagenet, batch.source_labels, num_classes,
                               method.feature_distance_classes, method.feature_distance_min_ratio,
                               255 if ignore_label is None else ignore_label)
    return {**terms, "loss": terms["loss"] + method.feature_distance * loss_fd,
            "loss_fd": loss_fd.detach()}
