"""Per-volume intensity normalisation.

Each volume is normalised with statistics of the whole volume (estimated from a strided
sub-sample, so large volumes are never read whole), so that 0 is the volume's mean intensity:
masked voxels (zero fill) then look like average tissue. The same rule is applied at training
and at inference time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import MaskTwinsError

SAMPLE_VOXELS = 4_000_000


@dataclass(frozen=True)
class IntensityStats:
    """Shift and scale: normalised = (raw - shift) / scale."""

    shift: float
    scale: float


def sample_step(shape, max_voxels: int = SAMPLE_VOXELS) -> int:
    """The grid step (voxels, same on every axis) that keeps a strided sample of ``shape`` at
    <= ~max_voxels."""
    total = int(np.prod(shape))
    return max(1, int(np.ceil((total / max_voxels) ** (1.0 / len(shape)))))


def strided_sample(volume, max_voxels: int = SAMPLE_VOXELS) -> np.ndarray:
    """A regular sub-sample of a volume (numpy array or masktwins Volume) of <= ~max_voxels."""
    step = sample_step(volume.shape, max_voxels)
    return np.asarray(volume[tuple(slice(None, None, step) for _ in volume.shape)])


def intensity_stats(sample: np.ndarray, method: str, name: str = "volume") -> IntensityStats:
    """Statistics for ``zscore`` (mean/std) or ``percentile`` (1st-99th percentile to [-1, 1])."""
    values = sample.astype(np.float64, copy=False)
    if not np.all(np.isfinite(values)):
        raise MaskTwinsError(f"{name}: contains NaN or infinite values; expected finite intensities")
    if method == "zscore":
        shift, scale = float(values.mean()), float(values.std())
    elif method == "percentile":
        low, high = np.percentile(values, [1.0, 99.0])
        shift, scale = float((low + high) / 2.0), float((high - low) / 2.0)
    else:
        raise ValueError(f"unknown normalisation {method!r}")
    if scale <= 1e-8:
        raise MaskTwinsError(f"{name}: has constant intensity {shift:g}; expected an image with contrast")
    return IntensityStats(shift, scale)


def normalize(array: np.ndarray, stats: IntensityStats) -> np.ndarray:
    """float32 (raw - shift) / scale."""
    return ((array.astype(np.float32) - np.float32(stats.shift)) / np.float32(stats.scale))
