"""One iteration's batch: crops drawn on the host, moved to the device, augmented there."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from ..config.schema import Recipe
from ..data.augmentation import Augmenter
from ..method.classmix import class_mix_masks, mix_images
from .data import TrainingData
from .step import Batch, centre


def memory_format(recipe: Recipe, device: torch.device) -> torch.memory_format:
    """channels_last (2-D) or channels_last_3d (3-D) on CUDA with ``train.channels_last``;
    else contiguous."""
    if device.type != "cuda" or not recipe.train.channels_last:
        return torch.contiguous_format
    return torch.channels_last_3d if recipe.model.spatial_dims == 3 else torch.channels_last


def augment_batch(batch: Batch, augmenter: Augmenter, rng: np.random.Generator) -> Batch:
    """The recipe's ``[augment]`` on a batch already on the training device.

    Source: geometric (image and labels alike), then intensity. Target: geometric once (the
    teacher and the student see the same warp, so pseudo-labels stay aligned), then the strong
    augmentation on the student's copy only (``target_student``); the teacher's target is never
    augmented in intensity. With every switch off nothing is drawn from ``rng`` and ``batch`` is
    returned as it is.
    """
    source, labels = augmenter.geometric(batch.source, batch.source_labels, rng)
    source = augmenter.intensity(source, rng)
    target, student = batch.target, batch.target_student
    if target is not None:
        target, _ = augmenter.geometric(target, None, rng)
        if augmenter.strong_on:
            student = augmenter.strong_target(target, rng)
    return Batch(source, labels, target, student)


def draw_batch(data: TrainingData, recipe: Recipe, rng: np.random.Generator, device: torch.device,
               with_target: bool = True) -> Batch:
    """Source crops and labels, and target crops when ``with_target`` (and a target exists), on
    ``device``, augmented there (:func:`augment_batch`); images in the recipe's memory format."""
    images, labels = data.source.sample(recipe.train.batch_size, rng)
    target = None
    if with_target and data.target is not None:
        target = torch.from_numpy(data.target.sample(recipe.train.target_batch_size, rng)[0])
    batch = Batch(torch.from_numpy(images).to(device, non_blocking=True),
                  torch.from_numpy(labels).to(device, non_blocking=True),
                  None if target is None else target.to(device, non_blocking=True))
    augmenter = Augmenter(recipe.augment, recipe.model.spatial_dims)
    batch = augment_batch(batch, augmenter, rng)
    if recipe.method.classmix and batch.target is not None:
        batch = class_mixed(batch, recipe, augmenter, rng)
    layout = memory_format(recipe, device)

    def laid_out(images: torch.Tensor | None) -> torch.Tensor | None:
        return None if images is None else images.contiguous(memory_format=layout)

    return replace(batch, source=laid_out(batch.source), target=laid_out(batch.target),
                   target_student=laid_out(batch.target_student), mixed=laid_out(batch.mixed))


def class_mixed(batch: Batch, recipe: Recipe, augmenter: Augmenter,
                rng: np.random.Generator) -> Batch:
    """DACS ClassMix on an augmented batch: half of each source crop's classes pasted onto the
    (clean) target crop it is paired with (the student's centre with ``method.teacher_context``),
    then the strong augmentation (``augment.strong_target``) on the mixed images, as DACS does.
    The mixed labels need the pseudo-labels and are made in the step."""
    context = recipe.method.teacher_context or (0,) * recipe.model.spatial_dims
    masks = class_mix_masks(batch.source_labels, rng, recipe.data.ignore_label)
    mixed = mix_images(masks, batch.source, centre(batch.target, context))
    return replace(batch, mixed=augmenter.strong_target(mixed, rng), mix_masks=masks)
