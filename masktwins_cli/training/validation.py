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
from ..scoring.classes import class_scores, confusion_matrix
from ..scoring.counted import score_counted
from ..scoring.metrics import score_volume
from .data import open_image

VALIDATION_BYTES = 512 * 1024**2


@dataclass
class ValidationVolume:
    """One labeled validation volume in memory."""

    image: np.ndarray  # float32 (c, z, y, x), normalised
    truth: np.ndarray  # (z, y, x): 0/1 foreground (two classes), class ids (K > 2)
    counted: np.ndarray | None = None  # two classes: bool (z, y, x), False where ignored

    @classmethod
    def open(cls, recipe: Recipe, volume: RoleVolume) -> ValidationVolume:
        image, stats = open_image(recipe, volume.raw, volume.key("raw"))
        labels_path = resolve_data_path(recipe, volume.labels)
        labels = as_zyx(open_volume(labels_path, ndim=(2, 3)).read_all(VALIDATION_BYTES))
        check_labels(labels, recipe.model.num_classes, labels_path, recipe.data.ignore_label)
        pixels = image.read_all(VALIDATION_BYTES)
        pixels = normalize(pixels if pixels.ndim == 4 else as_zyx(pixels)[None], stats)
        if labels.shape != pixels.shape[1:]:
            raise MaskTwinsError(f"{labels_path}: shape {labels.shape} differs from the validation "
                                 f"image {pixels.shape[1:]}")
        if recipe.model.num_classes > 2:
            return cls(pixels, labels)
        ignored = labels == recipe.data.ignore_label
        return cls(pixels, (labels == 1).astype(np.uint8), ~ignored if ignored.any() else None)


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
        """``val_iou``, ``val_f1``, ``val_mcc``, ``val_ap`` (two classes: the foreground), or
        ``val_miou`` and ``val_pixel_accuracy`` from one confusion matrix over every volume
        (K > 2; ``data.ignore_label`` left out); :attr:`score_key` is the one that picks
        best.pt."""
        r = self.recipe
        was_training = model.training
        model.eval()
        k = r.model.num_classes
        settings = recipe_window_settings(r, tta=False, channels=(1,) if k == 2 else None)
        per_volume, matrix = [], np.zeros((k, k), np.int64)
        for volume in self.volumes:
            probs = predict_array(model, volume.image, settings, self.device)
            if k > 2:
                matrix += confusion_matrix(probs.argmax(axis=0), volume.truth, k,
                                           r.data.ignore_label, where="validation labels")
                continue
            if volume.counted is None:
                scores = score_volume(probs[0], volume.truth, r.evaluate.threshold,
                                      r.evaluate.mode)
            else:  # voxels labeled data.ignore_label count nowhere
                scores = score_counted(probs[0], volume.truth.astype(bool), volume.counted,
                                       r.evaluate.threshold, r.evaluate.mode)
            per_volume.append(scores.as_dict() if scores is not None else {})
        model.train(was_training)
        if k > 2:
            scores = class_scores(matrix)
            return {"val_miou": scores.miou, "val_pixel_accuracy": scores.pixel_accuracy}
        return {f"val_{key}": mean_or_none([scores.get(key) for scores in per_volume])
                for key in ("iou", "f1", "mcc", "ap")}

    @property
    def score_key(self) -> str:
        """The validation score that selects best.pt."""
        return "val_miou" if self.recipe.model.num_classes > 2 else "val_iou"


def mean_or_none(values: list) -> float | None:
    """The mean of the values that are defined (None where a score is undefined); None if none."""
    known = [float(v) for v in values if v is not None]
    return float(np.mean(known)) if known else None
