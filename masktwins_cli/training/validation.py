"""Validation on labeled target volumes during training (student weights, in memory); the
scores are the mean over the ``[[data.val]]`` volumes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..config.recipe import resolve_data_path
from ..config.roles import RoleVolume, role_volumes
from ..config.schema import Recipe
from ..data.normalization import normalize
from ..data.patches import as_zyx, check_labels
from ..errors import MaskTwinsError
from ..io.volumes import open_volume
from ..runtime.windows import predict_array, recipe_window_settings
from ..scoring.metrics import score_volume
from .data import open_image

VALIDATION_BYTES = 512 * 1024**2


@dataclass
class ValidationVolume:
    """One labeled validation volume in memory."""

    image: np.ndarray  # float32 (z, y, x), normalised
    truth: np.ndarray  # uint8 (z, y, x), 0/1 foreground

    @classmethod
    def open(cls, recipe: Recipe, volume: RoleVolume) -> ValidationVolume:
        image, stats = open_image(recipe, volume.raw, volume.key("raw"))
        labels_path = resolve_data_path(recipe, volume.labels)
        labels = as_zyx(open_volume(labels_path, ndim=(2, 3)).read_all(VALIDATION_BYTES))
        check_labels(labels, recipe.model.num_classes, labels_path, recipe.data.ignore_label)
        pixels = normalize(as_zyx(image.read_all(VALIDATION_BYTES)), stats)
        if labels.shape != pixels.shape:
            raise MaskTwinsError(f"{labels_path}: shape {labels.shape} differs from the validation "
                                 f"image {pixels.shape}")
        return cls(pixels, (labels == 1).astype(np.uint8))


@dataclass
class Validator:
    """Scores the student on the validation volumes: IoU/F1/MCC/AP as ``val_*`` keys, each the
    mean over the volumes."""

    volumes: list[ValidationVolume]
    recipe: Recipe
    device: torch.device

    @classmethod
    def from_recipe(cls, recipe: Recipe, device: torch.device) -> Validator | None:
        listed = role_volumes(recipe.data, "val")
        if not listed:
            return None
        return cls([ValidationVolume.open(recipe, volume) for volume in listed], recipe, device)

    def __call__(self, model: torch.nn.Module) -> dict[str, float | None]:
        r = self.recipe
        was_training = model.training
        model.eval()
        settings = recipe_window_settings(r, tta=False)  # the foreground class, as infer keeps
        per_volume = []
        for volume in self.volumes:
            probs = predict_array(model, volume.image, settings, self.device)
            scores = score_volume(probs[0], volume.truth, r.evaluate.threshold, r.evaluate.mode)
            per_volume.append(scores.as_dict())
        model.train(was_training)
        return {f"val_{key}": mean_or_none([scores[key] for scores in per_volume])
                for key in ("iou", "f1", "mcc", "ap")}


def mean_or_none(values: list) -> float | None:
    """The mean of the values that are defined (None where a score is undefined); None if none."""
    known = [float(v) for v in values if v is not None]
    return float(np.mean(known)) if known else None
