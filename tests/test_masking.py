"""Block masks: complementarity, block constancy, ratio, 2D/3D/anisotropic, K-view partition."""

import pytest
import torch

from masktwins_cli.method.masking import (
    block_grid_shape,
    complementary_block_masks,
    expand_blocks,
    masked_views,
    view_masks,
)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def blocks_constant(mask, block):
    """Every block of the mask holds a single value."""
    spatial = mask.shape[2:]
    grid = block_grid_shape(spatial, block)
    for b in range(mask.shape[0]):
        for index in torch.cartesian_prod(*[torch.arange(g) for g in grid]).reshape(-1, len(grid)):
            box = tuple(slice(int(i) * s, (int(i) + 1) * s) for i, s in zip(index, block))
            values = mask[b, 0][box]
            if values.min() != values.max():
                return False
    return True


@pytest.mark.parametrize("spatial,block", [((64, 64), (16, 16)), ((50, 70), (16, 16)),
                                            ((8, 32, 32), (8, 8, 8)), ((12, 40, 36), (2, 8, 8))])
def test_twins_are_complementary_and_blockwise(spatial, block):
    d, complement = complementary_block_masks(3, spatial, block, 0.5, 2, gen())
    assert d.shape == (3, 1, *spatial)
    assert torch.equal(d + complement, torch.ones_like(d))
    assert set(torch.unique(d).tolist()) <= {0.0, 1.0}
    assert blocks_constant(d, block)


def test_mask_ratio_within_tolerance():
    for ratio in (0.3, 0.5, 0.7):
        d, _ = complementary_block_masks(64, (128, 128), (8, 8), ratio, 2, gen(1))
        kept = d.mean().item()
        assert abs(kept - (1 - ratio)) < 0.02, (ratio, kept)


def test_one_mask_per_sample():
    d, _ = complementary_block_masks(4, (64, 64), (8, 8), 0.5, 2, gen(2))
    assert not torch.equal(d[0], d[1])


def test_anisotropic_blocks_follow_per_axis_size():
    d, _ = complementary_block_masks(2, (4, 32, 32), (1, 8, 8), 0.5, 2, gen(3))
    assert blocks_constant(d, (1, 8, 8))
    # single-section blocks along z: neighbouring sections differ somewhere
    assert any(not torch.equal(d[0, 0, z], d[0, 0, z + 1]) for z in range(3))


@pytest.mark.parametrize("k", [3, 4])
def test_k_views_partition_the_blocks(k):
    masks = complementary_block_masks(2, (6, 48, 48), (2, 8, 8), 0.5, k, gen(4))
    assert len(masks) == k
    total = torch.stack(masks).sum(0)
    assert torch.equal(total, torch.ones_like(total))  # every block in exactly one view
    for m in masks:
        assert blocks_constant(m, (2, 8, 8))
        assert 0.1 < m.mean().item() < 0.6


def test_same_seed_same_masks_and_modes():
    a = view_masks("complementary", 2, (32, 32), (8, 8), 0.5, 2, gen(5))
    b = view_masks("complementary", 2, (32, 32), (8, 8), 0.5, 2, gen(5))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    random_twins = view_masks("random", 16, (64, 64), (8, 8), 0.5, 2, gen(6))
    assert len(random_twins) == 2
    overlap = (random_twins[0] * random_twins[1]).mean().item()
    assert 0.15 < overlap < 0.35  # independent: about a quarter visible in both
    assert len(view_masks("single", 2, (32, 32), (8, 8), 0.5, 2, gen())) == 1
    (ones,) = view_masks("none", 2, (32, 32), (8, 8), 0.5, 2, gen())
    assert torch.equal(ones, torch.ones(2, 1, 32, 32))
    with pytest.raises(ValueError):
        view_masks("bogus", 2, (32, 32), (8, 8), 0.5, 2, gen())


def test_masked_views_zero_fill():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4) + 1
    masks = complementary_block_masks(2, (4, 4), (2, 2), 0.5, 2, gen(7))
    v1, v2 = masked_views(x, masks)
    assert torch.equal(v1 + v2, x)
    assert torch.all((v1 == 0) | (v1 == x))


def test_expand_blocks_crops_partial_blocks():
    coarse = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    out = expand_blocks(coarse, (3, 3), (5, 4))
    assert out.shape == (1, 1, 5, 4)
    assert out[0, 0, 0, 0] == 1 and out[0, 0, 0, 3] == 0 and out[0, 0, 4, 3] == 1
