"""Synapse detection: two probability maps (pre, post) -> a point table (AdaSyn's post-processing).

Per channel:

1. **Threshold**: foreground is ``prob >= threshold`` (pre 0.75, post 0.65). AdaSyn compares
   uint8-quantised maps, ``prob * 255 > int(255 * thr)``, i.e. ``prob >= (int(255 thr) + 1) / 255``
   (0.7529 / 0.6510) on its 1/255 grid; pass those thresholds to reproduce it. Maps must hold
   values in [0, 1] (bool allowed); NaN or values outside it are an error, so that a uint8 0..255
   map is not silently read as "everything above 0.75".
2. **Components**: 26-connected (cc3d); components with fewer than ``min_size`` voxels are dropped
   (AdaSyn uses 2 for pre and 1 for post; the default 1 keeps every component).
3. **Points**: one per component, its centroid: the float64 mean of its voxel indices (z, y, x),
   not rounded (AdaSyn truncates to integers; point tables keep floats, scoring uses them as they
   are). Centroids are exact integer coordinate sums divided once by the voxel count, so the same
   component gives the same bits however it was cut into blocks.
4. **Links**: each post links to its nearest pre (Euclidean; ties go to the lowest pre row). With
   ``max_link_distance`` a post farther than it from every pre is dropped; with no pre at all every
   post is dropped (a post needs a pre).

Points of a channel are ordered by the raster position (z, y, x) of their component's first voxel,
so the table does not depend on how the volume was cut into blocks.

**Blockwise** (:func:`detect_synapses_blockwise`): blocks are read without halo and labelled on
their own; per block component we keep the voxel count, the coordinate sums and the first voxel,
and the foreground voxels of block faces that lie on a block border, with their component ids.
Two 26-adjacent foreground voxels in different blocks differ by one voxel along an axis where
their block indices differ, so they sit on the two layers of one border plane of that axis, at an
in-plane offset in {-1, 0, 1}^2; comparing the layers of every border plane under those 9 offsets
finds every such pair, and a graph connected-components over the pairs merges block components
into exactly the whole-volume components. No assumption on component size; memory is one block
of each channel plus per-component statistics plus the (sparse) foreground of border layers.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cc3d
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from masktwins_cli.errors import MaskTwinsError
from masktwins_cli.synapse.points import SynapsePoints


@dataclass(frozen=True)
class DetectionSettings:
    """Detection options; probabilities in [0, 1], sizes in voxels, distances in voxels."""

    pre_threshold: float = 0.75  # foreground: prob >= threshold
    post_threshold: float = 0.65
    pre_min_size: int = 1  # smaller components are dropped
    post_min_size: int = 1
    max_link_distance: float | None = None  # posts farther from every pre are dropped

    def __post_init__(self) -> None:
        for name in ("pre_threshold", "post_threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
                raise MaskTwinsError(f"detection {name} = {value!r}; expected a number in [0, 1]")
        for name in ("pre_min_size", "post_min_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise MaskTwinsError(f"detection {name} = {value!r}; expected an integer >= 1")
        value = self.max_link_distance
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)
                                  or not 0 < value < math.inf):
            raise MaskTwinsError(f"detection max_link_distance = {value!r}; expected a positive "
                                 "finite number of voxels, or none")


# ---------------------------------------------------------------------------------- linking
def link_posts(pre: np.ndarray, post: np.ndarray,
               max_distance: float | None = None) -> SynapsePoints:
    """Point table with every post linked to its nearest pre (ties: lowest pre row).

    pre: (N, 3), post: (M, 3) voxel coordinates (z, y, x). Posts farther than ``max_distance``
    voxels from every pre, and all posts when N = 0, are dropped; kept posts keep their order.
    """
    pre = np.asarray(pre, dtype=np.float64).reshape(-1, 3)
    post = np.asarray(post, dtype=np.float64).reshape(-1, 3)
    if len(pre) == 0:
        return SynapsePoints(pre, np.zeros((0, 3)), np.zeros(0, np.int64))
    nearest = np.zeros(len(post), dtype=np.int64)
    distance = np.zeros(len(post))
    rows = max(1, 2**20 // len(pre))  # bounds the (rows, N) distance matrix to ~8 MB
    for start in range(0, len(post), rows):
        chunk = post[start : start + rows]
        squared = sum((chunk[:, axis, None] - pre[None, :, axis]) ** 2 for axis in range(3))
        best = np.argmin(squared, axis=1)  # the first minimum: ties go to the lowest row
        nearest[start : start + len(chunk)] = best
        distance[start : start + len(chunk)] = np.sqrt(squared[np.arange(len(chunk)), best])
    keep = np.ones(len(post), bool) if max_distance is None else distance <= max_distance
    return SynapsePoints(pre, post[keep], nearest[keep])


# ------------------------------------------------------------------------------- components
def _foreground(values: Any, threshold: float, what: str) -> np.ndarray:
    """bool ``values >= threshold``; MaskTwinsError for values outside [0, 1] or NaN."""
    values = np.asarray(values)
    if values.dtype != bool and values.size:
        low, high = values.min(), values.max()
        if not (low >= 0 and high <= 1):
            raise MaskTwinsError(f"{what} probabilities must lie in [0, 1], found values in "
                                 f"[{low}, {high}]; scale quantised maps (e.g. uint8 0-255) to "
                                 "[0, 1] first")
    return np.ascontiguousarray(values >= threshold)


def _component_stats(mask: np.ndarray, origin: Sequence[int], shape: Sequence[int]):
    """26-connected components of ``mask`` (a block at ``origin`` of a volume of ``shape``).

    Returns (labels: (block) int, 0 = background, 1..K), count (K,) int64 voxels, sums (K, 3)
    int64 global coordinate sums, first (K,) int64 raster index (in ``shape``) of the first voxel.
    """
    labels, n = cc3d.connected_components(mask, connectivity=26, return_N=True)
    index = np.nonzero(labels)  # C order: the first hit of a label is its first voxel
    label = labels[index].astype(np.int64) - 1
    count = np.bincount(label, minlength=n).astype(np.int64)
    origin = np.asarray(origin, dtype=np.int64)
    # float64 bincount sums of integers are exact below 2**53; add the origin exactly in int64.
    sums = np.stack([np.bincount(label, weights=index[a], minlength=n) for a in range(3)], axis=1)
    sums = sums.astype(np.int64).reshape(n, 3) + count[:, None] * origin
    first_hit = np.unique(label, return_index=True)[1]
    first = np.stack([index[a][first_hit] for a in range(3)], axis=1).reshape(n, 3) + origin
    return labels, count, sums, np.ravel_multi_index(tuple(first.T), tuple(shape))


def _centroids(count: np.ndarray, sums: np.ndarray, first: np.ndarray, min_size: int) -> np.ndarray:
    """(K, 3) float64 centroids of components with >= ``min_size`` voxels, by first voxel."""
    keep = np.flatnonzero(count >= min_size)
    keep = keep[np.argsort(first[keep], kind="stable")]
    return sums[keep] / count[keep, None]


def _channel_readers(probs: Any) -> tuple[list[Callable[[tuple], np.ndarray]], tuple[int, ...]]:
    """Block readers for (pre, post) and the (Z, Y, X) shape from a (2, Z, Y, X) array or a pair."""
    if isinstance(probs, (tuple, list)):
        if len(probs) != 2:
            raise MaskTwinsError(f"detection needs two probability maps (pre, post), got {len(probs)}")
        shapes = [tuple(int(s) for s in p.shape) for p in probs]
        if len(shapes[0]) != 3 or shapes[0] != shapes[1] or min(shapes[0]) < 1:
            raise MaskTwinsError(f"pre and post probability maps must be non-empty 3-D (z, y, x) "
                                 f"maps of one shape, got {shapes[0]} and {shapes[1]}")
        return [lambda box, p=p: np.asarray(p[box]) for p in probs], shapes[0]
    shape = tuple(int(s) for s in probs.shape)
    if len(shape) != 4 or shape[0] != 2 or min(shape) < 1:
        raise MaskTwinsError(f"probability maps must have shape (2, z, y, x) (pre, post), got {shape}")
    return [lambda box, c=c: np.asarray(probs[(c, *box)]) for c in (0, 1)], shape[1:]


def _channel_settings(settings: DetectionSettings) -> list[tuple[str, float, int]]:
    return [("pre", settings.pre_threshold, settings.pre_min_size),
            ("post", settings.post_threshold, settings.post_min_size)]


def detect_synapses(probs: Any, settings: DetectionSettings | None = None) -> SynapsePoints:
    """Detect synapses in one piece (module docstring).

    probs: (2, Z, Y, X) array (channel 0 pre, 1 post) or a pair ``(pre, post)`` of (Z, Y, X)
    arrays; probabilities in [0, 1]. Returns the point table in voxel coordinates of ``probs``.
    """
    settings = settings or DetectionSettings()
    readers, shape = _channel_readers(probs)
    whole = tuple(slice(0, s) for s in shape)
    centroids = []
    for read, (what, threshold, min_size) in zip(readers, _channel_settings(settings)):
        _, count, sums, first = _component_stats(_foreground(read(whole), threshold, what),
                                                 (0, 0, 0), shape)
        centroids.append(_centroids(count, sums, first, min_size))
    return link_posts(centroids[0], centroids[1], settings.max_link_distance)


def detect_synapses_blockwise(probs: Any, block_shape: Sequence[int] = (64, 64, 64),
                              settings: DetectionSettings | None = None,
                              progress: Callable[[int, int], None] | None = None) -> SynapsePoints:
    """Detect synapses block by block; the same table, bit for bit, as :func:`detect_synapses`.

    probs: as in :func:`detect_synapses`, any array sliced with ``[c, z0:z1, y0:y1, x0:x1]`` (or
    ``[z0:z1, ...]`` per map): numpy, zarr, h5py, a :class:`~masktwins_cli.io.volumes.Volume`.
    block_shape: (bz, by, bx) voxels read at a time per channel (align it with the chunks).
    progress: called as ``progress(blocks_done, blocks_total)`` after each block.
    """
    settings = settings or DetectionSettings()
    readers, shape = _channel_readers(probs)
    block = tuple(int(b) for b in block_shape)
    if len(block) != 3 or min(block) < 1:
        raise MaskTwinsError(f"block_shape must be 3 positive integers (z, y, x), got {block_shape!r}")
    mergers = [_BlockMerger(shape), _BlockMerger(shape)]
    starts = list(itertools.product(*(range(0, s, b) for s, b in zip(shape, block))))
    for done, lo in enumerate(starts, start=1):
        box = tuple(slice(a, min(a + b, s)) for a, b, s in zip(lo, block, shape))
        for read, merger, (what, threshold, _) in zip(readers, mergers, _channel_settings(settings)):
            merger.add(_foreground(read(box), threshold, what), lo)
        if progress is not None:
            progress(done, len(starts))
    centroids = [_centroids(*merger.merged(), min_size)
                 for merger, (_, _, min_size) in zip(mergers, _channel_settings(settings))]
    return link_posts(centroids[0], centroids[1], settings.max_link_distance)


class _BlockMerger:
    """Component statistics of the blocks of one channel, and the border layers that join them."""

    def __init__(self, shape: tuple[int, ...]):
        self.shape = shape
        self.stats: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.n = 0  # components so far; block components get global ids n .. n + K - 1
        # layers[axis][side]: (4, V) int64 arrays (border plane, u, v, component id); side 0 is
        # the layer just below a border plane, side 1 the layer on it; u, v the other two axes.
        self.layers: list[list[list[np.ndarray]]] = [[[], []] for _ in range(3)]

    def add(self, mask: np.ndarray, lo: Sequence[int]) -> None:
        """Label one block (``mask`` bool, first voxel at ``lo``) and keep its statistics."""
        labels, count, sums, first = _component_stats(mask, lo, self.shape)
        self.stats.append((count, sums, first))
        for axis in range(3):
            others = [a for a in range(3) if a != axis]
            for side, local, border in ((1, 0, lo[axis]),
                                        (0, mask.shape[axis] - 1, lo[axis] + mask.shape[axis])):
                if border in (0, self.shape[axis]):
                    continue  # a face on the volume border joins nothing
                layer = np.take(labels, local, axis=axis)
                u, v = np.nonzero(layer)
                ids = layer[u, v].astype(np.int64) - 1 + self.n
                self.layers[axis][side].append(np.stack(
                    [np.full(len(u), border), u + lo[others[0]], v + lo[others[1]], ids]))
        self.n += len(count)

    def _pairs(self, axis: int) -> np.ndarray:
        """(E, 2) ids of components holding 26-adjacent voxels across border planes of ``axis``."""
        none = np.zeros((0, 2), np.int64)
        if not self.layers[axis][0] or not self.layers[axis][1]:
            return none
        (b0, u0, v0, id0), (b1, u1, v1, id1) = (np.concatenate(s, axis=1) for s in self.layers[axis])
        if len(b0) == 0 or len(b1) == 0:
            return none
        size_u, size_v = (self.shape[a] + 2 for a in range(3) if a != axis)  # +2: room for -1..+1
        key1 = (b1 * size_u + u1 + 1) * size_v + v1 + 1
        order = np.argsort(key1)
        key1, id1 = key1[order], id1[order]
        pairs = []
        for du, dv in itertools.product((-1, 0, 1), repeat=2):
            key0 = (b0 * size_u + u0 + du + 1) * size_v + v0 + dv + 1
            at = np.minimum(np.searchsorted(key1, key0), len(key1) - 1)
            hit = key1[at] == key0
            pairs.append(np.stack([id0[hit], id1[at[hit]]], axis=1))
        return np.concatenate(pairs)

    def merged(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(count, sums, first) of the whole-volume components, as :func:`_component_stats`."""
        count, sums, first = (np.concatenate(parts) for parts in zip(*self.stats))
        if self.n == 0:
            return count, sums, first
        pairs = np.concatenate([self._pairs(axis) for axis in range(3)])
        graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(self.n, self.n))
        n_groups, group = connected_components(graph, directed=False)
        merged_count = np.zeros(n_groups, np.int64)
        merged_sums = np.zeros((n_groups, 3), np.int64)
        merged_first = np.full(n_groups, np.iinfo(np.int64).max)
        np.add.at(merged_count, group, count)
        np.add.at(merged_sums, group, sums)
        np.minimum.at(merged_first, group, first)
        return merged_count, merged_sums, merged_first
