"""Error overlays: PNG images of the raw EM slice with segmentation errors colour-coded.

Each chosen z-slice becomes one RGB PNG ``overlay_z{index:04d}.png``. The raw slice is drawn in
grey, normalised linearly from its 1st to its 99th percentile (values outside are clipped; a
slice with no contrast, or only non-finite values, is drawn mid-grey 128). The binarised
prediction ``prob >= threshold`` is compared with the truth and blended over the grey as
``out = (1 - alpha) * grey + alpha * colour``:

* false negative (missed foreground): red   ``(255, 0, 0)``, alpha 0.6
* false positive (spurious foreground): green ``(0, 255, 0)``, alpha 0.6
* true positive: blue ``(0, 0, 255)``, alpha 0.3 (a faint tint)
* true negative: grey, unchanged

Files are written durably and atomically (:mod:`masktwins_cli.io.atomic`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from masktwins_cli.errors import MaskTwinsError

from ..io.atomic import atomic_open
from ..scoring.metrics import check_threshold, prob_array, truth_array

FN_COLOUR = (255, 0, 0)
FP_COLOUR = (0, 255, 0)
TP_COLOUR = (0, 0, 255)
FN_ALPHA = 0.6
FP_ALPHA = 0.6
TP_ALPHA = 0.3
FLAT_GREY = 128


def default_slices(n_slices: int, max_slices: int = 8) -> list[int]:
    """Up to ``max_slices`` evenly spaced z indices in ``[0, n_slices)``, first and last included."""
    if max_slices < 1:
        raise MaskTwinsError(f"max_slices must be >= 1; got {max_slices}")
    count = min(n_slices, max_slices)
    if count == 1:
        return [n_slices // 2] if n_slices > 1 else [0]
    return sorted({round(float(v)) for v in np.linspace(0, n_slices - 1, count)})


def grey_slice(raw: np.ndarray) -> np.ndarray:
    """Raw ``(y, x)`` slice -> ``(y, x)`` float64 grey levels in [0, 255] (1st-99th percentile)."""
    arr = np.asarray(raw)
    if arr.dtype.kind not in "biuf":
        raise MaskTwinsError(f"raw image must be numeric; got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    finite = np.isfinite(arr)
    if not finite.any():
        return np.full(arr.shape, float(FLAT_GREY))
    lo, hi = np.percentile(arr[finite], [1.0, 99.0])
    if not hi > lo:
        lo, hi = float(arr[finite].min()), float(arr[finite].max())
    if not hi > lo:
        return np.full(arr.shape, float(FLAT_GREY))
    grey = np.clip((arr - lo) / (hi - lo), 0.0, 1.0) * 255.0
    grey[~finite] = 0.0
    return grey


def overlay_rgb(raw: np.ndarray, pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Compose one overlay: raw ``(y, x)``, boolean pred/truth ``(y, x)`` -> ``(y, x, 3)`` uint8."""
    grey = grey_slice(raw)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    for mask, colour, alpha in (
        (truth & ~pred, FN_COLOUR, FN_ALPHA),
        (pred & ~truth, FP_COLOUR, FP_ALPHA),
        (pred & truth, TP_COLOUR, TP_ALPHA),
    ):
        rgb[mask] = (1.0 - alpha) * rgb[mask] + alpha * np.asarray(colour, dtype=np.float64)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def write_png_atomic(rgb: np.ndarray, path: Path) -> None:
    """Write an ``(y, x, 3)`` uint8 image to ``path`` durably and atomically."""
    with atomic_open(path, "wb") as stream:
        Image.fromarray(rgb).save(stream, format="PNG")


def write_overlays(
    raw: np.ndarray,
    prob: np.ndarray,
    truth: np.ndarray,
    out_dir: Path,
    threshold: float = 0.5,
    slices: Sequence[int] | None = None,
    max_slices: int = 8,
) -> list[Path]:
    """Write one overlay PNG per chosen z-slice and return their paths (in the order written).

    ``raw`` (any numeric dtype), ``prob`` (floats in [0, 1]) and ``truth`` (binary) share one
    shape, ``(z, y, x)`` or ``(y, x)`` (a single slice, index 0). ``slices`` picks z indices
    (negative indices count from the end); by default up to ``max_slices`` evenly spaced ones.
    ``out_dir`` is created if needed. Colours: see the module docstring.
    """
    threshold = check_threshold(threshold)
    arrays: list[Any] = [a if hasattr(a, "shape") else np.asarray(a) for a in (raw, prob, truth)]
    shapes = [tuple(a.shape) for a in arrays]
    if len(set(shapes)) != 1:
        raise MaskTwinsError(
            f"raw shape {shapes[0]}, probability map shape {shapes[1]} and ground truth shape "
            f"{shapes[2]} must be equal"
        )
    shape = shapes[0]
    if len(shape) not in (2, 3) or 0 in shape:
        raise MaskTwinsError(f"expected a non-empty 2-D (y, x) or 3-D (z, y, x) array; got {shape}")
    n_slices = 1 if len(shape) == 2 else shape[0]

    if slices is None:
        chosen = default_slices(n_slices, max_slices)
    else:
        chosen = []
        for z in slices:
            zi = int(z)
            if not -n_slices <= zi < n_slices:
                raise MaskTwinsError(f"overlay slice {zi} is out of range for {n_slices} slice(s)")
            zi %= n_slices
            if zi not in chosen:
                chosen.append(zi)

    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MaskTwinsError(f"cannot create overlay folder {out_dir}: {exc}") from exc

    paths: list[Path] = []
    for z in chosen:
        if len(shape) == 2:
            raw_z, prob_z, truth_z = (np.asarray(a) for a in arrays)
        else:
            raw_z, prob_z, truth_z = (np.asarray(a[z]) for a in arrays)
        pred = prob_array(prob_z, z) >= threshold
        rgb = overlay_rgb(raw_z, pred, truth_array(truth_z, z))
        path = out_dir / f"overlay_z{z:04d}.png"
        write_png_atomic(rgb, path)
        paths.append(path)
    return paths
