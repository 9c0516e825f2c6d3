"""Point-to-cube targets: a point table becomes a 2-channel (pre, post) uint8 volume.

Each point marks a cube of ``size`` voxels per axis (odd; default 3, the 27 voxels around it)
centred on its voxel ``floor(c + 0.5)`` (:func:`~.points.point_voxels`), in channel 0 (pre) or 1
(post). A voxel is 1 in a channel when any cube of that channel covers it (a union, so the order
of the points does not matter), else 0. Even sizes are rejected: such a cube has no centre voxel.

Two modes, both deterministic:

* ``shrink=True`` (default): each cube is made just small enough that centroid detection
  (:mod:`.detection`) gives back exactly its point (and, through nearest-pre linking, its link):

  - at the volume border the cube is clipped *symmetrically*: along each axis its half-width is
    ``min(r, distance to the nearer border)`` with ``r = (size - 1) / 2``, so it stays centred on
    the point (a point on the first slice gets a one-voxel-thick slab). A plain clip would move a
    border cube's centroid inwards by ``(r - d) / 2`` voxels (``d`` its distance to the border),
    and a network trained on it would learn that bias;
  - near another point of the same channel the half-width is at most ``floor((d - 2) / 2)``, ``d``
    the Chebyshev distance (voxels) between the two points' voxels, so the two cubes keep at least
    one empty voxel between them and stay separate 26-connected components. Points with ``d <= 1``
    (adjacent or identical voxels) cannot be separated: their single voxels touch, and detection
    returns one point between them.

* ``shrink=False``: full cubes clipped plainly at the border (AdaSyn-like targets). Cubes of one
  channel that overlap or touch (``d <= size``) form one component, detected as one point at the
  centroid of their union; a clipped cube is detected at its clipped centroid.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.spatial import cKDTree

from masktwins_cli.errors import MaskTwinsError
from masktwins_cli.synapse.points import SynapsePoints, check_points, point_voxels


def cube_half_width(size: int) -> int:
    """``(size - 1) / 2`` for an odd ``size >= 1``; MaskTwinsError otherwise."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1 or size % 2 == 0:
        raise MaskTwinsError(f"cube size must be an odd integer >= 1 (a cube is centred on its "
                             f"point's voxel), got {size!r}")
    return (int(size) - 1) // 2


def cube_boxes(voxels: np.ndarray, shape: Sequence[int], size: int = 3,
               shrink: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Boxes of the cubes of one channel (module docstring for the two modes).

    voxels: (K, 3) int voxel indices (z, y, x) inside ``shape``; shape: (Z, Y, X) voxels.
    Returns ``(lo, hi)``, each (K, 3) int64: the cube of point k covers ``lo[k] <= v < hi[k]``.
    """
    half_width = cube_half_width(size)
    voxels = np.asarray(voxels, dtype=np.int64).reshape(-1, 3)
    bounds = np.asarray(shape, dtype=np.int64)
    if not shrink:
        return np.maximum(voxels - half_width, 0), np.minimum(voxels + half_width + 1, bounds)
    half = np.minimum(half_width, np.minimum(voxels, bounds - 1 - voxels))
    if len(voxels) > 1:
        # k=2: the nearest other point (the first hit is the point itself, or a duplicate).
        distance = cKDTree(voxels).query(voxels, k=2, p=np.inf)[0][:, 1].astype(np.int64)
        half = np.minimum(half, np.maximum((distance - 2) // 2, 0)[:, None])
    return voxels - half, voxels + half + 1


def points_to_cubes(points: SynapsePoints, shape: Sequence[int], size: int = 3,
                    shrink: bool = True, source: str = "points") -> np.ndarray:
    """uint8 (2, Z, Y, X) cube targets: channel 0 pre, channel 1 post, values 0/1.

    shape: (Z, Y, X) voxels; every point must lie inside it (MaskTwinsError naming ``source`` and
    the row otherwise). size: cube edge in voxels (odd). shrink: see the module docstring.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise MaskTwinsError(f"{source}: cube targets need a 3-D shape (z, y, x), got {shape}")
    cube_half_width(size)
    check_points(points, source, shape)
    target = np.zeros((2, *shape), dtype=np.uint8)
    for channel, coords in enumerate((points.pre, points.post)):
        lo, hi = cube_boxes(point_voxels(coords), shape, size, shrink)
        for (z0, y0, x0), (z1, y1, x1) in zip(lo, hi):
            target[channel, z0:z1, y0:y1, x0:x1] = 1
    return target
