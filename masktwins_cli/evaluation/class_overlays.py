"""K-class overlays: one PNG per chosen slice, three panels side by side: the prediction's
classes, the truth's classes (ignored voxels black) and the errors (red where the prediction
differs from a counted truth voxel), each blended over the image (grey, or the colour image of
a (c, z, y, x) volume). Colours: the Cityscapes palette for 19 classes, else evenly spaced hues.
"""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np

from ..scoring.benchmarks import CITYSCAPES_COLOURS
from .overlays import default_slices, grey_slice, write_png_atomic

CLASS_ALPHA = 0.5
ERROR_COLOUR = (255, 0, 0)


def class_palette(num_classes: int) -> np.ndarray:
    """(K, 3) float RGB colours of the classes."""
    if num_classes == len(CITYSCAPES_COLOURS):
        return np.asarray(CITYSCAPES_COLOURS, np.float64)
    return np.asarray([[255 * v for v in colorsys.hsv_to_rgb(k / num_classes, 0.85, 0.95)]
                       for k in range(num_classes)])


def background(image: np.ndarray) -> np.ndarray:
    """(y, x) or (c, y, x) image -> (y, x, 3) float RGB in [0, 255]."""
    if image.ndim == 3 and image.shape[0] >= 3:
        return np.stack([grey_slice(image[c]) for c in range(3)], axis=-1)
    return np.repeat(grey_slice(image if image.ndim == 2 else image[0])[..., None], 3, axis=2)


def class_panels(image: np.ndarray, predicted: np.ndarray, truth: np.ndarray, num_classes: int,
                 ignore: int | None) -> np.ndarray:
    """(y, 3x, 3) uint8: prediction | truth | errors over ``image`` (see the module notes)."""
    base, palette = background(image), class_palette(num_classes)
    counted = (truth != ignore) if ignore is not None else np.ones(truth.shape, bool)
    counted &= (truth >= 0) & (truth < num_classes)

    def blended(classes: np.ndarray, where: np.ndarray) -> np.ndarray:
        out = base.copy()
        colours = palette[np.clip(classes, 0, num_classes - 1)]
        out[where] = (1 - CLASS_ALPHA) * out[where] + CLASS_ALPHA * colours[where]
        return out

    valid_prediction = (predicted >= 0) & (predicted < num_classes)
    truth_panel = blended(truth.astype(np.int64), counted)
    truth_panel[~counted] = 0.0
    errors = base.copy()
    wrong = counted & (predicted != truth)
    errors[wrong] = (1 - CLASS_ALPHA) * errors[wrong] + CLASS_ALPHA * np.asarray(ERROR_COLOUR, float)
    panels = np.concatenate([blended(predicted.astype(np.int64), valid_prediction), truth_panel,
                             errors], axis=1)
    return np.clip(np.rint(panels), 0, 255).astype(np.uint8)


def write_class_overlays(image, prediction, truth, out_dir: Path, num_classes: int,
                         ignore: int | None, max_slices: int = 8) -> list[Path]:
    """Write ``overlay_z{index:04d}.png`` for up to ``max_slices`` evenly spaced slices.

    ``image``: (z, y, x) or (c, z, y, x); ``prediction``: a class map (z, y, x) or class
    probabilities (K, z, y, x) (argmax per slice); ``truth``: (z, y, x) class ids. Each is read
    one slice at a time (numpy arrays or volumes)."""
    depth = truth.shape[0]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for z in default_slices(depth, max_slices):
        slice_image = np.asarray(image[:, z] if len(image.shape) == 4 else image[z])
        predicted = np.asarray(prediction[:, z]).argmax(axis=0) if len(prediction.shape) == 4 \
            else np.asarray(prediction[z])
        rgb = class_panels(slice_image, predicted, np.asarray(truth[z]), num_classes, ignore)
        path = out_dir / f"overlay_z{z:04d}.png"
        write_png_atomic(rgb, path)
        paths.append(path)
    return paths
