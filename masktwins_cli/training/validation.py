"""Validation on a labeled target volume during training (student weights, in memory)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..config.recipe import resolve_data_path
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
class Validator:
    """Scores the student on the validation volume: IoU/F1/MCC/AP as ``val_*`` keys."""

    image: np.ndarray  # float32 (z, y, x), normalised
    truth: np.ndarray  # uint8 (z, y, x), 0/1 foreground
    recipe: Recipe
    device: torch.device

    @classmethod
    def from_recipe(cls, recipe: Recipe, device: torch.device) -> Validator | None:
        if not recipe.data.val_raw:
            return None
        volume, stats = open_image(recipe, recipe.data.val_raw, "data.val_raw")
        labels_path = resolve_data_path(recipe, recipe.data.val_labels)
        labels = as_zyx(open_volume(labels_path, ndim=(2, 3)).read_all(VALIDATION_BYTES))
        check_labels(labels, recipe.model.num_classes, labels_path)
        image = normalize(as_zyx(volume.read_all(VALIDATION_BYTES)), stats)
        if labels.shape != image.shape:
            raise MaskTwinsError(f"{labels_path}: shape {labels.shape} differs from the validation "
                                 f"image {image.shape}")
        return cls(image, (labels == 1).astype(np.uint8), recipe, device)

    def __call__(self, model: torch.nn.Module) -> dict[str, float | None]:
        r = self.recipe
        was_training = model.training
        model.eval()
        settings = recipe_window_settings(r, tta=False)  # the foreground class, as infer keeps
        probs = predict_array(model, self.image, settings, self.device)
        model.train(was_training)
        scores = score_volume(probs[0], self.truth, r.evaluate.threshold, r.evaluate.mode)
        return {f"val_{k}": v for k, v in scores.as_dict().items()
                if k in ("iou", "f1", "mcc", "ap")}
