"""Region-of-interest masks for ``infer --mask``: predict only where the mask is non-zero.

A mask is a (y, x) or (z, y, x) volume with the input's dimensions, at the input's resolution
or coarser (a tissue mask is often drawn at a fraction of the resolution): voxel (z, y, x) of
the input maps to mask voxel floor(z * mz / nz), ... (nearest neighbour). Blocks with no masked
voxel are not predicted (their output stays 0); inside a block only the windows covering a
masked voxel run, and voxels outside the mask are written as 0. Masked voxels get exactly the
values an unmasked run gives them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import MaskTwinsError
from .blocks import ZyxView


class RoiMask:
    """A mask volume opened for reading (z, y, x) boxes at the input's resolution."""

    def __init__(self, uri: str, view: ZyxView, mask_shape: Sequence[int], input_shape: Sequence[int]):
        self.uri = uri
        self.view = view
        self.mask_shape = tuple(int(n) for n in mask_shape)
        self.input_shape = tuple(int(n) for n in input_shape)

    @classmethod
    def open(cls, uri: str, input_shape: Sequence[int]) -> RoiMask:
        """Open and check a mask for an input of ``input_shape`` ((y, x) or (z, y, x))."""
        from ..io.volumes import open_volume

        volume = open_volume(uri, ndim=(2, 3))
        if len(volume.shape) != len(input_shape):
            raise MaskTwinsError(f"mask {uri}: {len(volume.shape)}-D, but the input is "
                                 f"{len(input_shape)}-D {tuple(input_shape)}")
        if any(m > n or m < 1 for m, n in zip(volume.shape, input_shape)):
            raise MaskTwinsError(f"mask {uri}: shape {tuple(volume.shape)} is larger than the input "
                                 f"{tuple(input_shape)} (expected the input's shape or a coarser one)")
        kind = np.dtype(volume.dtype).kind
        if kind not in "biuf":
            raise MaskTwinsError(f"mask {uri}: dtype {volume.dtype}; expected bool, integer or float")
        view = ZyxView(volume)
        shape = (1, *volume.shape) if len(volume.shape) == 2 else tuple(volume.shape)
        full = (1, *input_shape) if len(input_shape) == 2 else tuple(input_shape)
        return cls(uri, view, shape, full)

    def covering(self, box: Sequence[slice]) -> np.ndarray:
        """bool (box shape): which voxels of the input ``box`` lie in the mask."""
        index = [np.arange(b.start, b.stop) * m // n
                 for b, m, n in zip(box, self.mask_shape, self.input_shape)]
        read = tuple(slice(int(i[0]), int(i[-1]) + 1) for i in index)
        data = self.view.read(read)
        if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
            raise MaskTwinsError(f"mask {self.uri}: NaN or infinite values near voxel "
                                 f"{tuple(b.start for b in box)}")
        local = np.ix_(*(i - r.start for i, r in zip(index, read)))
        return data[local] != 0

    def describe(self) -> dict:
        """For the run manifest: the mask's absolute URI and its (z, y, x) shape."""
        return {"uri": str(self.view.volume.location.absolute()), "shape": self.mask_shape}
