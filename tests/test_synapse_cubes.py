"""Tests for masktwins_cli.synapse.cubes: point-to-cube targets, border and neighbour handling."""

from __future__ import annotations

import numpy as np
import pytest

from masktwins_cli.errors import MaskTwinsError
from masktwins_cli.synapse.cubes import cube_boxes, cube_half_width, points_to_cubes
from masktwins_cli.synapse.points import SynapsePoints

SHAPE = (9, 12, 15)  # anisotropic


def table(pre, post=(), links=()) -> SynapsePoints:
    return SynapsePoints(np.array(pre, float).reshape(-1, 3), np.array(post, float).reshape(-1, 3),
                         np.array(links, np.int64))


def box_mask(lo, hi, shape=SHAPE) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = 1
    return mask


def test_interior_cube_is_centred_on_the_rounded_point():
    # pre (4.4, 5.5, 6.0) lies in voxel (4, 6, 6) (round half up); its 3x3x3 cube is z 3..5,
    # y 5..7, x 5..7. The post (2, 2, 10) gets its own cube in channel 1.
    target = points_to_cubes(table([[4.4, 5.5, 6.0]], [[2, 2, 10]], [0]), SHAPE)
    assert target.dtype == np.uint8 and target.shape == (2, *SHAPE)
    np.testing.assert_array_equal(target[0], box_mask((3, 5, 5), (6, 8, 8)))
    np.testing.assert_array_equal(target[1], box_mask((1, 1, 9), (4, 4, 12)))
    assert target[0].sum() == 27 and target[1].sum() == 27


@pytest.mark.parametrize(("size", "count"), [(1, 1), (5, 125), (7, 343)])
def test_cube_size_is_configurable(size, count):
    target = points_to_cubes(table([[4, 6, 7]]), SHAPE, size=size)
    half = size // 2
    np.testing.assert_array_equal(target[0], box_mask((4 - half, 6 - half, 7 - half),
                                                      (5 + half, 7 + half, 8 + half)))
    assert target[0].sum() == count and target[1].sum() == 0


@pytest.mark.parametrize("size", [0, 2, 4, -3, 3.0, True, "3"])
def test_even_or_non_integer_sizes_are_rejected(size):
    with pytest.raises(MaskTwinsError, match="cube size must be an odd integer >= 1"):
        points_to_cubes(table([[4, 6, 7]]), SHAPE, size=size)


def test_cube_half_width():
    assert [cube_half_width(s) for s in (1, 3, 5, np.int64(7))] == [0, 1, 2, 3]


def test_border_cubes_are_clipped_symmetrically_by_default():
    # (0, 5, 14): z on the first slice (half-width 0), y interior (1), x on the last column (0):
    # a 1x3x1 bar centred on the point. (1, 0, 7): z half-width 1, y 0, x 1 -> 3x1x3.
    # (0, 0, 0): a corner, one voxel.
    points = table([[0, 5, 14], [1, 0, 7], [0, 0, 0]])
    lo, hi = cube_boxes(np.array([[0, 5, 14], [1, 0, 7], [0, 0, 0]]), SHAPE)
    np.testing.assert_array_equal(lo, [[0, 4, 14], [0, 0, 6], [0, 0, 0]])
    np.testing.assert_array_equal(hi, [[1, 7, 15], [3, 1, 9], [1, 1, 1]])
    target = points_to_cubes(points, SHAPE)
    expected = box_mask(lo[0], hi[0]) | box_mask(lo[1], hi[1]) | box_mask(lo[2], hi[2])
    np.testing.assert_array_equal(target[0], expected)
    # size 5 at distance 1 from the border: half-width 1 there, 2 elsewhere
    lo, hi = cube_boxes(np.array([[1, 6, 7]]), SHAPE, size=5)
    np.testing.assert_array_equal(lo, [[0, 4, 5]])
    np.testing.assert_array_equal(hi, [[3, 9, 10]])


def test_plain_clipping_without_shrink():
    # shrink=False: full cubes cut at the border, (0, 5, 14) covers z 0..1, y 4..6, x 13..14
    target = points_to_cubes(table([[0, 5, 14]]), SHAPE, shrink=False)
    np.testing.assert_array_equal(target[0], box_mask((0, 4, 13), (2, 7, 15)))


@pytest.mark.parametrize(
    ("distance", "half"),
    # Chebyshev distance d between two points of one channel -> half-width min(1, (d - 2) // 2)
    [(0, 0), (1, 0), (2, 0), (3, 0), (4, 1), (5, 1), (9, 1)],
)
def test_close_points_of_one_channel_get_smaller_cubes(distance, half):
    voxels = np.array([[4, 3, 3], [4, 3 + min(distance, 2), 3 + distance]])
    lo, hi = cube_boxes(voxels, SHAPE)
    np.testing.assert_array_equal(lo, voxels - half)
    np.testing.assert_array_equal(hi, voxels + half + 1)
    if distance >= 2:  # at least one empty voxel along x between the two cubes
        assert lo[1, 2] - hi[0, 2] >= 1


def test_overlapping_cubes_without_shrink_are_a_union_in_any_order():
    # 3x3x3 cubes at x = 5 and x = 6 overlap in two x-columns: union x 4..7, 4 columns x 9 = 36
    points = [[4, 6, 5], [4, 6, 6]]
    target = points_to_cubes(table(points), SHAPE, shrink=False)
    np.testing.assert_array_equal(target[0], box_mask((3, 5, 4), (6, 8, 8)))
    reversed_target = points_to_cubes(table(points[::-1]), SHAPE, shrink=False)
    np.testing.assert_array_equal(target, reversed_target)
    assert target.max() == 1


def test_channels_are_independent():
    # a pre and a post on the same voxel: each channel gets its full cube, nothing shrinks
    target = points_to_cubes(table([[4, 6, 7]], [[4, 6, 7]], [0]), SHAPE)
    np.testing.assert_array_equal(target[0], target[1])
    assert target[0].sum() == 27


def test_points_outside_the_volume_and_bad_shapes_are_rejected():
    with pytest.raises(MaskTwinsError, match=r"labels: post row 0 at \(z, y, x\) = \(9, 0, 0\) lies "
                       "outside the volume"):
        points_to_cubes(table([[1, 1, 1]], [[9, 0, 0]], [0]), SHAPE, source="labels")
    with pytest.raises(MaskTwinsError, match="3-D shape"):
        points_to_cubes(table([[1, 1, 1]]), (9, 12))
    empty = points_to_cubes(SynapsePoints.empty(), SHAPE)
    assert empty.shape == (2, *SHAPE) and empty.sum() == 0
