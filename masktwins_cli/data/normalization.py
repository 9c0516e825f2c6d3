"""Per-volume intensity normalisation, per channel.

Each volume is normalised with statistics of the whole volume (estimated from a strided
sub-sample, so large volumes are never read whole), so that 0 is the volume's mean intensity:
masked voxels (zero fill) then look like average tissue (a colour volume: the mean colour, each
channel normalised by its own statistics). ``fixed`` normalisation takes the per-channel mean
and standard deviation from the recipe instead (e.g. ImageNet's, for pretrained encoders). The
same rule is applied at training and at inference time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import MaskTwinsError

SAMPLE_VOXELS = 4_000_000


@dataclass(frozen=True)
class IntensityStats:
    """Shift and scale: normalised = (raw - shift) / scale. Floats for a one-channel volume;
    tuples of one float per channel for a channel-first (c, z, y, x) volume."""

    shift: float | tuple[float, ...]
    scale: float | tuple[float, ...]

    @property
    def channels(self) -> int:
        """1, or the number of per-channel values."""
        return len(self.shift) if isinstance(self.shift, tuple) else 1

    def broadcast(self, ndim: int) -> tuple[np.ndarray, np.ndarray]:
        """float32 shift and scale shaped to broadcast against a channel-first array of
        ``ndim`` axes (scalars for one channel)."""
        shape = (-1,) + (1,) * (ndim - 1) if isinstance(self.shift, tuple) else ()
        return (np.asarray(self.shift, np.float32).reshape(shape),
                np.asarray(self.scale, np.float32).reshape(shape))


def sample_step(shape, max_voxels: int = SAMPLE_VOXELS) -> int:
    """The grid step (voxels, same on every axis) that keeps a strided sample of ``shape`` at
    <= ~max_voxels."""
    total = int(np.prod(shape))
    return max(1, int(np.ceil((total / max_voxels) ** (1.0 / len(shape)))))


def strided_sample(volume, max_voxels: int = SAMPLE_VOXELS, channels: bool = False) -> np.ndarray:
    """A regular sub-sample of a volume (numpy array or masktwins Volume) of <= ~max_voxels
    (per channel when ``channels``: axis 0 is then kept whole)."""
    leading = (slice(None),) if channels else ()
    spatial = volume.shape[len(leading):]
    step = sample_step(spatial, max_voxels)
    return np.asarray(volume[leading + tuple(slice(None, None, step) for _ in spatial)])


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


def image_stats(volume, method: str, name: str = "volume",
                fixed: tuple[Sequence[float], Sequence[float]] = ((), ())) -> IntensityStats:
    """Normalisation statistics of an image volume: (y, x) and (z, y, x) volumes get floats, a
    channel-first (c, z, y, x) volume one value per channel (c = 1 gives floats too).
    ``method``: zscore, percentile (see :func:`intensity_stats`) or fixed (``fixed`` = (mean,
    std) per channel, raw units, from the recipe; the volume is not read)."""
    channels = len(volume.shape) == 4
    count = int(volume.shape[0]) if channels else 1
    if method == "fixed":
        mean, std = (tuple(float(v) for v in values) for values in fixed)
        if len(mean) != count or len(std) != count:
            raise MaskTwinsError(f"{name}: {count} channel(s), but data.mean / data.std give "
                                 f"{len(mean)} / {len(std)} values")
        return IntensityStats(mean[0], std[0]) if count == 1 else IntensityStats(mean, std)
    sample = strided_sample(volume, channels=channels)
    if count == 1:
        return intensity_stats(sample, method, name)
    per_channel = [intensity_stats(sample[c], method, f"{name} channel {c}") for c in range(count)]
    return IntensityStats(tuple(s.shift for s in per_channel), tuple(s.scale for s in per_channel))


def normalize(array: np.ndarray, stats: IntensityStats) -> np.ndarray:
    """float32 (raw - shift) / scale; a multi-channel ``stats`` needs ``array`` channel-first."""
    shift, scale = stats.broadcast(array.ndim)
    return (array.astype(np.float32) - shift) / scale
