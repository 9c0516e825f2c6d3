"""Tests for masktwins_cli.synapse.detection: the cube round trip, the detection rules and blockwise
detection against whole-volume detection."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from scipy import ndimage

from masktwins_cli.errors import MaskTwinsError
from masktwins_cli.synapse.cubes import points_to_cubes
from masktwins_cli.synapse.detection import (
    DetectionSettings,
    detect_synapses,
    detect_synapses_blockwise,
    link_posts,
)
from masktwins_cli.synapse.points import SynapsePoints

SHAPE = (14, 23, 31)  # anisotropic

# Labels that stress the round trip: corners, faces, and points of one channel at Chebyshev
# distance 2, 3 and 4 (3x3x3 cubes at distance 2 and 3 would overlap or touch).
FIXED_PRE = [[0, 0, 0], [13, 22, 30], [0, 11, 30], [6, 0, 15], [7, 5, 5], [7, 5, 8],
             [7, 14, 6], [9, 16, 8], [10, 10, 20], [10, 14, 20]]
FIXED_POST = [[0, 22, 0], [13, 0, 30], [3, 11, 29], [6, 1, 15], [12, 18, 25], [12, 18, 28],
              [2, 6, 4], [2, 8, 4]]


def separated(candidates: np.ndarray, start: list) -> np.ndarray:
    """``start`` plus the candidates at Chebyshev distance >= 2 from every point kept so far."""
    kept = [np.array(p) for p in start]
    for point in candidates:
        if all(np.abs(point - other).max() >= 2 for other in kept):
            kept.append(point)
    return np.array(kept, dtype=np.float64)


def round_trip_labels(seed: int) -> SynapsePoints:
    """Random integer points plus the fixed ones; each post linked to its unique nearest pre."""
    rng = np.random.default_rng(seed)
    pre = separated(rng.integers(0, SHAPE, (14, 3)), FIXED_PRE)
    post = separated(rng.integers(0, SHAPE, (30, 3)), FIXED_POST)
    distance = np.linalg.norm(post[:, None] - pre[None], axis=2)
    ordered = np.sort(distance, axis=1)
    unique = ordered[:, 1] - ordered[:, 0] > 1e-6  # the nearest pre is unambiguous
    assert unique[: len(FIXED_POST)].all()  # true for the seeds used below
    return SynapsePoints(pre, post[unique], np.argmin(distance, axis=1)[unique])


def as_set(coords: np.ndarray) -> set[tuple[float, ...]]:
    return {tuple(map(float, c)) for c in coords}


def links_of(points: SynapsePoints) -> set[tuple[tuple[float, ...], tuple[float, ...]]]:
    return {(tuple(map(float, points.pre[k])), tuple(map(float, p)))
            for p, k in zip(points.post, points.post_pre)}


@pytest.mark.parametrize(("seed", "size"), [(0, 3), (1, 3), (4, 5), (5, 1), (6, 3)])
def test_round_trip_recovers_every_point_and_link(seed, size):
    labels = round_trip_labels(seed)
    target = points_to_cubes(labels, SHAPE, size=size)
    detected = detect_synapses(target.astype(np.float32))
    assert detected.n_pre == labels.n_pre and detected.n_post == labels.n_post
    assert as_set(detected.pre) == as_set(labels.pre)  # exact, border points included
    assert as_set(detected.post) == as_set(labels.post)
    assert links_of(detected) == links_of(labels)
    blockwise = detect_synapses_blockwise(target.astype(np.float32), block_shape=(5, 6, 7))
    np.testing.assert_array_equal(blockwise.pre, detected.pre)


def test_touching_cubes_merge_without_shrink_and_stay_apart_with_it():
    # Pre points at (4, 6, 5) and (7, 9, 8): Chebyshev distance 3, so their full 3x3x3 cubes
    # (z 3..5 / 6..8, y 5..7 / 8..10, x 4..6 / 7..9) touch only at a corner: one 26-connected
    # component of 54 voxels, detected at the centroid of the union (5.5, 7.5, 6.5).
    # The posts at (2, 2, 20) and (2, 2, 23) touch face to face: one point at (2, 2, 21.5).
    labels = SynapsePoints([[4, 6, 5], [7, 9, 8]], [[2, 2, 20], [2, 2, 23]], [0, 1])
    plain = detect_synapses(points_to_cubes(labels, SHAPE, shrink=False))
    np.testing.assert_array_equal(plain.pre, [[5.5, 7.5, 6.5]])
    np.testing.assert_array_equal(plain.post, [[2, 2, 21.5]])
    # shrink=True (the default) makes them single voxels with an empty voxel between them
    shrunk = detect_synapses(points_to_cubes(labels, SHAPE))
    assert as_set(shrunk.pre) == as_set(labels.pre) and as_set(shrunk.post) == as_set(labels.post)


def test_adjacent_points_cannot_be_separated():
    # Chebyshev distance 1: even single voxels touch; one point halfway, (4, 6, 5.5)
    labels = SynapsePoints([[4, 6, 5], [4, 6, 6]], np.zeros((0, 3)), [])
    detected = detect_synapses(points_to_cubes(labels, SHAPE))
    np.testing.assert_array_equal(detected.pre, [[4, 6, 5.5]])


def test_plain_clipped_border_cube_detects_at_its_clipped_centroid():
    # shrink=False: the cube of (0, 5, 30) is z 0..1, y 4..6, x 29..30: centroid (0.5, 5, 29.5);
    # the default symmetric clip gives back (0, 5, 30) exactly.
    labels = SynapsePoints([[0, 5, 30]], np.zeros((0, 3)), [])
    plain = detect_synapses(points_to_cubes(labels, SHAPE, shrink=False))
    np.testing.assert_array_equal(plain.pre, [[0.5, 5, 29.5]])
    np.testing.assert_array_equal(detect_synapses(points_to_cubes(labels, SHAPE)).pre, [[0, 5, 30]])


def probability_maps(values: dict[tuple[int, int, int], float], channel: int = 0) -> np.ndarray:
    probs = np.zeros((2, *SHAPE), np.float32)
    for voxel, value in values.items():
        probs[(channel, *voxel)] = value
    return probs


def test_threshold_is_greater_or_equal():
    pre = {(1, 1, 1): 0.75, (1, 1, 5): np.nextafter(np.float32(0.75), 0), (5, 5, 5): 1.0}
    probs = probability_maps(pre)
    probs[1, 9, 9, 9] = 0.65
    probs[1, 9, 9, 20] = np.nextafter(np.float32(0.65), 0)
    detected = detect_synapses(probs)
    np.testing.assert_array_equal(detected.pre, [[1, 1, 1], [5, 5, 5]])
    np.testing.assert_array_equal(detected.post, [[9, 9, 9]])
    # AdaSyn's uint8 rule prob*255 > int(255*0.75) = 191 is prob >= 192/255
    strict = detect_synapses(probs, DetectionSettings(pre_threshold=192 / 255))
    np.testing.assert_array_equal(strict.pre, [[5, 5, 5]])


def test_centroids_match_scipy_and_components_are_26_connected():
    rng = np.random.default_rng(7)
    probs = (rng.random((2, *SHAPE)) ** 3).astype(np.float32)
    detected = detect_synapses(probs)
    for channel, coords, threshold in ((0, detected.pre, 0.75), (1, detected.post, 0.65)):
        mask = probs[channel] >= threshold
        labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3)))
        expected = np.array(ndimage.center_of_mass(mask, labels, range(1, n + 1)))
        if channel == 0:
            assert len(coords) == n
        order = np.lexsort(expected.T[::-1])
        np.testing.assert_allclose(coords[np.lexsort(coords.T[::-1])], expected[order], atol=1e-9)
        if channel == 1:
            assert len(coords) == n


def test_points_are_ordered_by_their_first_voxel():
    # A: a z-line (1..3, 5, 9), first voxel (1, 5, 9), centroid (2, 5, 9);
    # B: one voxel (1, 6, 0). A comes first although B's centroid sorts lower.
    probs = probability_maps({(1, 5, 9): 1, (2, 5, 9): 1, (3, 5, 9): 1, (1, 6, 0): 1})
    np.testing.assert_array_equal(detect_synapses(probs).pre, [[2, 5, 9], [1, 6, 0]])


def test_minimum_component_size():
    # pre components of 1, 2 and 3 voxels; post components of 1 and 2 voxels
    probs = probability_maps({(1, 1, 1): 1, (5, 5, 5): 1, (5, 5, 6): 1,
                              (9, 9, 9): 1, (10, 10, 10): 1, (11, 11, 11): 1})
    probs[1, 2, 20, 20] = probs[1, 8, 20, 20] = probs[1, 8, 21, 21] = 1
    settings = DetectionSettings(pre_min_size=2, post_min_size=2)
    detected = detect_synapses(probs, settings)
    np.testing.assert_array_equal(detected.pre, [[5, 5, 5.5], [10, 10, 10]])
    np.testing.assert_array_equal(detected.post, [[8, 20.5, 20.5]])


def test_linking_nearest_pre_max_distance_and_ties():
    pre = np.array([[5, 5, 2], [5, 5, 8]])
    # post 0 is equidistant (3) from both pres -> the lower row 0; post 1 is 2 from pre 1;
    # post 2 is 10 from pre 1 (and farther from pre 0).
    post = np.array([[5, 5, 5], [5, 5, 10], [5, 5, 18]])
    table = link_posts(pre, post)
    np.testing.assert_array_equal(table.post_pre, [0, 1, 1])
    near = link_posts(pre, post, max_distance=3)  # a distance equal to the maximum is kept
    np.testing.assert_array_equal(near.post, post[:2])
    np.testing.assert_array_equal(near.post_pre, [0, 1])
    alone = link_posts(np.zeros((0, 3)), post)
    assert alone.n_pre == 0 and alone.n_post == 0
    probs = probability_maps({(5, 5, 2): 1, (5, 5, 8): 1})
    probs[1, 5, 5, 5] = probs[1, 5, 5, 10] = probs[1, 5, 5, 18] = 1
    detected = detect_synapses(probs, DetectionSettings(max_link_distance=3))
    np.testing.assert_array_equal(detected.post, [[5, 5, 5], [5, 5, 10]])


def test_bad_inputs_and_settings():
    good = np.zeros((2, *SHAPE), np.float32)
    with pytest.raises(MaskTwinsError, match=r"pre probabilities must lie in \[0, 1\].*uint8"):
        detect_synapses(np.full((2, *SHAPE), 255, np.uint8))
    nan_post = good.copy()
    nan_post[1, 0, 0, 0] = np.nan
    with pytest.raises(MaskTwinsError, match="post probabilities must lie in"):
        detect_synapses(nan_post)
    with pytest.raises(MaskTwinsError, match=r"shape \(2, z, y, x\)"):
        detect_synapses(good[0])
    with pytest.raises(MaskTwinsError, match="one shape"):
        detect_synapses((good[0], good[1, :-1]))
    with pytest.raises(MaskTwinsError, match="block_shape"):
        detect_synapses_blockwise(good, block_shape=(4, 0, 4))
    for field, value in [("pre_threshold", 1.5), ("post_threshold", "0.6"), ("pre_min_size", 0),
                         ("post_min_size", 2.0), ("max_link_distance", -1.0)]:
        with pytest.raises(MaskTwinsError, match=f"detection {field} = "):
            DetectionSettings(**{field: value})
    assert detect_synapses(good.astype(bool)).n_pre == 0


# ---------------------------------------------------------------------------------- blockwise
BLOCK_SHAPE = (19, 26, 33)


def blockwise_probs(seed: int) -> np.ndarray:
    """Sparse noise plus blobs and lines that cross block borders, edges and corners."""
    rng = np.random.default_rng(seed)
    probs = (rng.random((2, *BLOCK_SHAPE)) ** 6).astype(np.float32)  # ~5% of voxels >= 0.65
    for channel in (0, 1):
        for _ in range(25):  # boxes of 1..6 voxels per axis anywhere
            lo = rng.integers(0, BLOCK_SHAPE)
            hi = lo + rng.integers(1, 7, 3)
            probs[channel, lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = rng.uniform(0.7, 1.0)
    steps = np.arange(19)
    probs[0, steps, steps, steps] = 0.9  # a diagonal line: blocks meet only at corners
    probs[1, steps, 25 - steps, steps + 10] = 0.9  # mixed-sign diagonal across edges
    probs[0, 5, :, 16] = 0.95  # a long line through every y-block
    return probs


def assert_same_table(a: SynapsePoints, b: SynapsePoints) -> None:
    np.testing.assert_array_equal(a.pre, b.pre)
    np.testing.assert_array_equal(a.post, b.post)
    np.testing.assert_array_equal(a.post_pre, b.post_pre)


@pytest.mark.parametrize("block", [(3, 3, 3), (4, 5, 6), (7, 8, 9), (1, 26, 33), (19, 13, 11),
                                   (19, 26, 33), (32, 32, 32)])
def test_blockwise_equals_whole_volume(block):
    probs = blockwise_probs(0)
    whole = detect_synapses(probs)
    assert whole.n_pre > 20 and whole.n_post > 20
    assert_same_table(detect_synapses_blockwise(probs, block_shape=block), whole)


def test_blockwise_with_min_sizes_links_and_lazy_inputs():
    probs = blockwise_probs(1)
    settings = DetectionSettings(pre_min_size=3, post_min_size=2, max_link_distance=8.0)
    whole = detect_synapses(probs, settings)
    stored = zarr.array(probs, chunks=(1, 5, 6, 7))  # read block by block
    calls = []
    blockwise = detect_synapses_blockwise(stored, (5, 6, 7), settings,
                                          progress=lambda done, total: calls.append((done, total)))
    assert_same_table(blockwise, whole)
    assert calls[-1] == (4 * 5 * 5, 4 * 5 * 5) and len(calls) == 100
    pair = detect_synapses_blockwise((probs[0], probs[1]), (6, 6, 6), settings)
    assert_same_table(pair, whole)
