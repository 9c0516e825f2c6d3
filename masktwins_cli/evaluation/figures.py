"""Side-by-side comparison figures: for a few slices, the image, the truth and each method's
prediction in one PNG (rows = slices, columns = image, truth, methods).

Prediction panels use the overlay colours of :mod:`.overlays` (false negatives red, false
positives green, true positives a faint blue); the truth panel tints the foreground blue.
Each column carries its name in a header strip.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..errors import MaskTwinsError
from .overlays import TP_COLOUR, grey_slice, overlay_rgb, write_png_atomic

HEADER_PX = 18
GAP_PX = 4


def _truth_panel(raw: np.ndarray, truth: np.ndarray) -> np.ndarray:
    grey = np.repeat(grey_slice(raw)[..., None], 3, axis=2)
    grey[truth] = 0.5 * grey[truth] + 0.5 * np.asarray(TP_COLOUR, dtype=np.float64)
    return np.clip(np.rint(grey), 0, 255).astype(np.uint8)


def comparison_panels(raw: np.ndarray, truth: np.ndarray, predictions: Mapping[str, np.ndarray],
                      threshold: float = 0.5) -> list[tuple[str, np.ndarray]]:
    """The named (y, x, 3) uint8 panels of one slice: image, truth, then each prediction.

    ``raw`` (y, x) any numeric dtype, ``truth`` (y, x) binary, ``predictions`` name -> (y, x)
    foreground probability in [0, 1], binarised at ``threshold``.
    """
    truth = np.asarray(truth).astype(bool)
    panels = [("image", np.repeat(np.rint(grey_slice(raw))[..., None], 3, axis=2).astype(np.uint8)),
              ("truth", _truth_panel(raw, truth))]
    for name, prob in predictions.items():
        prob = np.asarray(prob)
        if prob.shape != truth.shape:
            raise MaskTwinsError(f"prediction {name!r} has shape {prob.shape}; expected {truth.shape}")
        panels.append((name, overlay_rgb(raw, prob >= threshold, truth)))
    return panels


def comparison_figure(rows: Sequence[list[tuple[str, np.ndarray]]], scale: float = 0.5) -> np.ndarray:
    """Rows of named panels (equal count and size) -> one (H, W, 3) uint8 image, panels
    resized by ``scale``, column names in a white header strip on top."""
    if not rows or not rows[0]:
        raise MaskTwinsError("a comparison figure needs at least one slice and one panel")
    names = [name for name, _ in rows[0]]
    height, width = rows[0][0][1].shape[:2]
    ph, pw = max(1, round(height * scale)), max(1, round(width * scale))
    canvas = Image.new("RGB", (len(names) * (pw + GAP_PX) - GAP_PX,
                               HEADER_PX + len(rows) * (ph + GAP_PX) - GAP_PX), "white")
    draw = ImageDraw.Draw(canvas)
    for col, name in enumerate(names):
        draw.text((col * (pw + GAP_PX) + 4, 3), name, fill="black")
    for r, panels in enumerate(rows):
        if [name for name, _ in panels] != names:
            raise MaskTwinsError("every row of a comparison figure needs the same panels")
        for col, (_, panel) in enumerate(panels):
            tile = Image.fromarray(panel).resize((pw, ph), Image.Resampling.BILINEAR)
            canvas.paste(tile, (col * (pw + GAP_PX), HEADER_PX + r * (ph + GAP_PX)))
    return np.asarray(canvas)


def write_comparison_figure(path: Path, raw: np.ndarray, truth: np.ndarray,
                            predictions: Mapping[str, np.ndarray], slices: Sequence[int],
                            threshold: float = 0.5, scale: float = 0.5) -> Path:
    """Write the comparison PNG for z-``slices`` of (z, y, x) ``raw``, ``truth`` and each
    (z, y, x) prediction; written atomically. Returns ``path``."""
    rows = [comparison_panels(raw[z], truth[z], {n: p[z] for n, p in predictions.items()}, threshold)
            for z in slices]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png_atomic(comparison_figure(rows, scale), path)
    return path
