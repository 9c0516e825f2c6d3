"""Volume layout: stored shapes and their axes, channels, chunks, and validated calibration
(voxel size and offset in nm, one value per spatial axis, (z, y, x) order).

Stored axes: (y, x), (z, y, x), or channel-first (c, z, y, x) (the OME-Zarr order).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from masktwins_cli.errors import MaskTwinsError

AXES_TEXT = {2: "2-D (y,x)", 3: "3-D (z,y,x)", 4: "4-D (c,z,y,x)"}


@dataclass(frozen=True)
class VolumeMeta:
    """Layout and calibration: ``shape``/``chunks`` in voxels per stored axis; ``voxel_size``
    (nm) and ``offset`` (nm, world position of voxel 0) per spatial axis, (z, y, x) order."""

    shape: tuple[int, ...]
    dtype: np.dtype
    chunks: tuple[int, ...]
    voxel_size: tuple[float, ...]
    offset: tuple[float, ...]
    ndim = property(lambda self: len(self.shape))
    nbytes = property(lambda self: math.prod(self.shape) * self.dtype.itemsize)


def axis_names(ndim: int) -> list[str]:
    """Axis labels: ['y', 'x'], ['z', 'y', 'x'], ['c', 'z', 'y', 'x'], ['c0', 'c1', 'z', ...]."""
    leading = ["c"] if ndim == 4 else [f"c{i}" for i in range(ndim - 3)]
    return leading + ["z", "y", "x"][3 - min(ndim, 3) :]


def spatial_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The spatial axes of a stored shape: (y, x), (z, y, x), or (z, y, x) of a channel-first
    (c, z, y, x) volume."""
    return tuple(shape[-3:]) if len(shape) == 4 else tuple(shape)


def channel_count(shape: tuple[int, ...]) -> int:
    """Image channels of a stored shape: c of (c, z, y, x), else 1."""
    return int(shape[0]) if len(shape) == 4 else 1


def default_chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Chunks for new arrays: 64 per axis for (z,y,x), 512 for (y,x), 1 along leading axes."""
    spatial = min(len(shape), 3)
    chunks = (1,) * (len(shape) - spatial) + ({1: 4096, 2: 512}.get(spatial, 64),) * spatial
    return tuple(max(1, min(c, s)) for c, s in zip(chunks, shape, strict=True))


def _calibration(values: Any, count: int, what: str, where: Any, exact: bool) -> tuple[float, ...]:
    """``count`` finite floats (voxel sizes > 0): the last ``count`` of longer lists, or exact."""
    try:
        flat = np.asarray(values, dtype=float).ravel()
    except (TypeError, ValueError) as exc:
        raise MaskTwinsError(f"{what} of '{where}' is not a list of numbers: {values!r}") from exc
    if flat.size < count or (exact and flat.size != count):
        axes = ",".join(axis_names(count))
        raise MaskTwinsError(f"{what} of '{where}' has {flat.size} values, not {count} ({axes})")
    flat = flat[flat.size - count :]
    if not np.all(np.isfinite(flat)) or (what == "voxel_size" and np.any(flat <= 0)):
        raise MaskTwinsError(f"{what} of '{where}' must be finite (voxel sizes > 0): {values!r}")
    return tuple(float(v) for v in flat)


def make_meta(shape, dtype, chunks, voxel_size, offset, where: Any, exact: bool) -> VolumeMeta:
    """Validated VolumeMeta; voxel size defaults to 1 nm and offset to 0 nm."""
    spatial = min(len(shape), 3)
    voxel = (1.0,) * spatial if voxel_size is None else voxel_size
    origin = (0.0,) * spatial if offset is None else offset
    return VolumeMeta(
        tuple(int(s) for s in shape), np.dtype(dtype), tuple(int(c) for c in chunks),
        _calibration(voxel, spatial, "voxel_size", where, exact),
        _calibration(origin, spatial, "offset", where, exact),
    )  # fmt: skip


