"""Block geometry of ``infer``: the output's chunk grid cut into blocks, and what each block reads.

All boxes are (z, y, x) voxel slices; a (y, x) image is one slice of z. A block is a whole number
of output chunks, so no two blocks share a chunk (independent processes never write the same
chunk file). A block reads the span of the global window grid's windows that touch it
(:class:`~.windows.WindowGrid`), so its output does not depend on the block size.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..runtime.windows import WindowGrid

DEFAULT_BLOCK_2D = (16, 512, 512)
DEFAULT_BLOCK_3D = (256, 256, 256)


def block_starts(shape: Sequence[int], block: Sequence[int]) -> Iterator[tuple[int, ...]]:
    """Start corner of every block of a regular grid over ``shape``."""
    return itertools.product(*(range(0, n, b) for n, b in zip(shape, block)))


def default_block(shape_zyx: Sequence[int], chunks: Sequence[int],
                  spatial_dims: int = 2) -> tuple[int, int, int]:
    """About 16 x 512 x 512 voxels for a 2-D model, 256^3 for a 3-D one (large, because windows
    straddling a block border are computed for both blocks), a whole multiple of the chunks."""
    wanted = DEFAULT_BLOCK_3D if spatial_dims == 3 else DEFAULT_BLOCK_2D
    return tuple(max(c, (w // c) * c) if c < n else n
                 for w, c, n in zip(wanted, chunks, shape_zyx))


def align_block(block: Sequence[int], chunks: Sequence[int],
                shape: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(block, chunks) with every block a whole number of chunks, all (z, y, x) voxels.

    Per axis the block (clipped to the volume) is split into k = ceil(block / chunk) equal
    chunks of ceil(block / k) voxels, and the block grows to k such chunks (by < k voxels). So
    no two blocks share a chunk: blocks can be written by independent processes, and a chunk
    never holds a mix of finished and unfinished blocks.
    """
    aligned_block, aligned_chunks = [], []
    for b, c, n in zip(block, chunks, shape):
        b = max(1, min(b, n))
        pieces = math.ceil(b / c)
        chunk = math.ceil(b / pieces)
        aligned_block.append(pieces * chunk)
        aligned_chunks.append(chunk)
    return tuple(aligned_block), tuple(aligned_chunks)


@dataclass(frozen=True)
class BlockWork:
    """One block: ``box`` its output voxels; ``read`` the voxels its windows read (inside the
    volume) and ``pad`` the (before, after) reflection padding that completes them; ``starts``
    the window starts per axis and ``inner`` the block's box, both relative to the padded read."""

    index: int
    box: tuple[slice, ...]
    read: tuple[slice, ...]
    pad: tuple[tuple[int, int], ...]
    starts: tuple[tuple[int, ...], ...]
    inner: tuple[slice, ...]

    @property
    def start(self) -> tuple[int, ...]:
        return tuple(b.start for b in self.box)

    def positions(self, window: Sequence[int], keep: np.ndarray | None = None) -> list[tuple[int, ...]]:
        """Window starts (relative to the padded read) of the block's windows; with ``keep``, a
        bool mask of the block's box, only the windows that cover a kept voxel (every window
        covering a kept voxel is among them, so kept voxels get their full blend)."""
        every = list(itertools.product(*self.starts))
        if keep is None:
            return every
        chosen = []
        for position in every:
            box = tuple(slice(max(p - i.start, 0), max(min(p + w - i.start, i.stop - i.start), 0))
                        for p, w, i in zip(position, window, self.inner))
            if keep[box].any():
                chosen.append(position)
        return chosen


@dataclass(frozen=True)
class BlockPlan:
    """Geometry of blockwise prediction, all in (z, y, x) voxels: the volume ``shape``, output
    ``chunks``, ``block`` size and the window grid (``window``, ``stride``; a 2-D model has
    window and stride 1 along z)."""

    shape: tuple[int, int, int]
    chunks: tuple[int, int, int]
    block: tuple[int, int, int]
    window: tuple[int, int, int]
    stride: tuple[int, int, int]

    @classmethod
    def create(cls, shape: Sequence[int], chunks_zyx: Sequence[int], window: Sequence[int],
               overlap: float, spatial_dims: int, block: Sequence[int] = ()) -> BlockPlan:
        """Plan for a (y, x) or (z, y, x) volume. ``window``: the model's (y, x) or (z, y, x);
        ``block``: wanted block size (empty: :func:`default_block`); a 2-D model gets chunks of
        one slice."""
        shape_zyx = (1, *shape) if len(shape) == 2 else tuple(shape)
        chunks = tuple(chunks_zyx)
        if spatial_dims == 2:
            chunks = (1, *chunks[1:])
        block = tuple(block) or default_block(shape_zyx, chunks, spatial_dims)
        block, chunks = align_block(block, chunks, shape_zyx)
        grid = WindowGrid.create(shape_zyx, window, overlap, spatial_dims)
        return cls(tuple(shape_zyx), chunks, block, grid.window, grid.stride)

    @property
    def windows(self) -> WindowGrid:
        return WindowGrid(self.shape, self.window, self.stride)

    @property
    def halo(self) -> tuple[int, ...]:
        """The most context (voxels per side) a block may read beyond its box: window - 1."""
        return tuple(w - 1 for w in self.window)

    @property
    def grid(self) -> tuple[int, ...]:
        """Blocks per axis."""
        return tuple(-(-n // b) for n, b in zip(self.shape, self.block))

    @property
    def count(self) -> int:
        """Number of blocks; they are numbered 0..count-1 in :func:`block_starts` order."""
        return math.prod(self.grid)

    def start(self, index: int) -> tuple[int, ...]:
        """Start corner (voxels) of block ``index``."""
        return tuple(int(i) * b for i, b in zip(np.unravel_index(index, self.grid), self.block))

    def box(self, index: int) -> tuple[slice, ...]:
        """The output voxels of block ``index``."""
        return tuple(slice(s, min(s + b, n)) for s, b, n in zip(self.start(index), self.block, self.shape))

    def work(self, index: int) -> BlockWork:
        """What block ``index`` reads and computes."""
        box = self.box(index)
        return BlockWork(index, box, *self.windows.layout(box))

    def as_dict(self) -> dict:
        """The plan as plain data (for the run manifest)."""
        return {"shape": self.shape, "chunks": self.chunks, "block": self.block,
                "window": self.window, "stride": self.stride, "blocks": self.count}


class ZyxView:
    """Reads and writes a (y, x), (z, y, x) or channel-first (C, z, y, x) volume with (z, y, x)
    boxes (all channels at once)."""

    def __init__(self, volume):
        self.volume = volume
        self.flat = len(volume.shape) == 2
        self.channels = int(volume.shape[0]) if len(volume.shape) == 4 else 0

    def stored(self, box: tuple[slice, ...]) -> tuple[slice, ...]:
        """A (z, y, x) box in the volume's own axes."""
        if self.channels:
            return (slice(0, self.channels), *box)
        return box[1:] if self.flat else box

    def read(self, box: tuple[slice, ...]) -> np.ndarray:
        data = np.asarray(self.volume[self.stored(box)])
        return data[None] if self.flat else data

    def write(self, box: tuple[slice, ...], data: np.ndarray) -> None:
        self.volume.write(self.stored(box), data[0] if self.flat else data)
