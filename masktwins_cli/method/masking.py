"""Block masks for the twin views (paper section 4.2; MIC's block generator, generalised to 3D).

A mask is drawn on a coarse grid of blocks (``block_size`` voxels per axis, square in 2D, cube or
anisotropic box in 3D) and expanded by nearest-neighbour repetition to the patch, so it is
constant within each block. Masks are applied by multiplication to the *normalised* image, so a
hidden voxel becomes 0, the volume's mean intensity (zero fill, as in the authors' code).

All functions are pure: randomness comes only from the ``torch.Generator`` passed in.
Shapes: ``spatial`` is (y, x) or (z, y, x); masks are float tensors (B, 1, *spatial) of 0/1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

MASK_MODES = ("complementary", "random", "single", "none")


def block_grid_shape(spatial: Sequence[int], block_size: Sequence[int]) -> tuple[int, ...]:
    """Number of blocks per axis (a partial block at the far border counts as one)."""
    return tuple(math.ceil(s / b) for s, b in zip(spatial, block_size))


def expand_blocks(coarse: torch.Tensor, block_size: Sequence[int],
                  spatial: Sequence[int]) -> torch.Tensor:
    """(B, 1, *grid) -> (B, 1, *spatial): repeat each block value ``block_size`` times, crop."""
    out = coarse
    for axis, (b, s) in enumerate(zip(block_size, spatial)):
        dim = 2 + axis
        out = out.repeat_interleave(int(b), dim=dim).narrow(dim, 0, int(s))
    return out


def _coarse_uniform(batch: int, spatial, block_size, generator: torch.Generator) -> torch.Tensor:
    grid = block_grid_shape(spatial, block_size)
    return torch.rand((batch, 1, *grid), generator=generator, device=generator.device)


def bernoulli_block_mask(batch: int, spatial: Sequence[int], block_size: Sequence[int],
                         ratio: float, generator: torch.Generator) -> torch.Tensor:
    """One mask per sample; each block is kept (1) with probability 1 - ``ratio`` [r]."""
    coarse = (_coarse_uniform(batch, spatial, block_size, generator) >= ratio).float()
    return expand_blocks(coarse, block_size, spatial)


def complementary_block_masks(batch: int, spatial: Sequence[int], block_size: Sequence[int],
                              ratio: float, num_views: int,
                              generator: torch.Generator) -> list[torch.Tensor]:
    """K masks that partition the blocks: every block is visible in exactly one view.

    K = 2: D keeps each block with probability 1 - r, the second view is 1 - D (the twins).
    K > 2: each block is given to one of the K views uniformly at random (Theorem 7's multi-view
    extension); ``ratio`` is then not used. Returns K tensors (B, 1, *spatial) summing to 1.
    """
    if num_views == 2:
        d = bernoulli_block_mask(batch, spatial, block_size, ratio, generator)
        return [d, 1.0 - d]
    coarse = _coarse_uniform(batch, spatial, block_size, generator)
    owner = torch.clamp((coarse * num_views).long(), max=num_views - 1)
    return [expand_blocks((owner == k).float(), block_size, spatial) for k in range(num_views)]


def view_masks(mode: str, batch: int, spatial: Sequence[int], block_size: Sequence[int],
               ratio: float, num_views: int, generator: torch.Generator) -> list[torch.Tensor]:
    """The masks of one training step for a mask mode.

    - ``complementary``: K complementary masks (MaskTwins).
    - ``random``: two independent masks, each hiding blocks with probability r (RMask ablation).
    - ``single``: one mask (MIC).
    - ``none``: one all-ones mask (self-training on the unmasked patch).
    """
    if mode == "complementary":
        return complementary_block_masks(batch, spatial, block_size, ratio, num_views, generator)
    if mode == "random":
        return [bernoulli_block_mask(batch, spatial, block_size, ratio, generator) for _ in range(2)]
    if mode == "single":
        return [bernoulli_block_mask(batch, spatial, block_size, ratio, generator)]
    if mode == "none":
        return [torch.ones((batch, 1, *spatial), device=generator.device)]
    raise ValueError(f"unknown mask mode {mode!r}; expected one of {MASK_MODES}")


def masked_views(images: torch.Tensor, masks: list[torch.Tensor]) -> list[torch.Tensor]:
    """Apply each mask to the normalised images (B, C, *spatial): hidden voxels become 0."""
    return [images * m.to(device=images.device, dtype=images.dtype) for m in masks]
