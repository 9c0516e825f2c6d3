"""Reading volumes with numpy-style basic indices: how an index splits into what zarr/h5py take
and what is applied after, and the missing-chunk rule of arrays written whole by masktwins."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from masktwins_cli.errors import MaskTwinsError

# ------------------------------------------------------------------------------ missing chunks
EVERY_CHUNK_ATTR = "masktwins_every_chunk_stored"
"""Attribute of a zarr array written whole by masktwins (``write_volume``: prepare, synthetic
data) with every chunk stored, even chunks equal to the fill value. In such an array a missing
chunk file is damage (a lost file, an interrupted copy) and reading it is an error naming the
chunk. In any other zarr array a missing chunk means "equal to the fill value", as the zarr
format defines it, and reads as that value: zarr writers commonly skip such chunks, so their
absence cannot be told from loss."""


def check_chunks_present(array: Any, key: tuple, uri: str, directory: Path) -> None:
    """MaskTwinsError naming the first chunk of ``key`` (a tuple of ints and step slices) whose
    file is missing from ``directory``."""
    ranges = []
    for item, size, chunk in zip(key, array.shape, array.chunks):
        if isinstance(item, slice):
            start, stop, _ = item.indices(size)
        else:
            start, stop = item, item + 1
        if stop <= start:
            return
        ranges.append(range(start // chunk, (stop - 1) // chunk + 1))
    for coords in itertools.product(*ranges):
        name = array.metadata.encode_chunk_key(coords)
        if not (directory / name).is_file():
            raise MaskTwinsError(f"'{uri}': chunk {name} is missing; this array was written whole, "
                                 "so the file was lost or damaged (copy it again, or prepare the "
                                 "volume again)")


# ------------------------------------------------------------------------------------ indexing
def split_basic_index(key: Any, shape: tuple[int, ...]) -> tuple[tuple, tuple]:
    """Split a numpy basic index into backend_key, one in-bounds int or positive-step slice per
    axis (what zarr/h5py take), and post, applied to the result: reverses steps, adds None axes."""
    items = key if isinstance(key, tuple) else (key,)
    ellipses = sum(item is Ellipsis for item in items)
    n_indexed = sum(item is not None and item is not Ellipsis for item in items)
    if ellipses > 1 or n_indexed > len(shape):
        raise IndexError(f"invalid index {key!r} for a volume of shape {shape}")
    fill = [slice(None)] * (len(shape) - n_indexed)
    expanded = [part for item in items for part in (fill if item is Ellipsis else [item])]
    backend, post, axes = [], [], iter(range(len(shape)))
    for item in expanded + ([] if ellipses else fill):
        if item is None:
            post.append(None)
            continue
        axis = next(axes)
        if isinstance(item, slice):
            picked = range(*item.indices(shape[axis]))
            ordered = picked if picked.step > 0 else picked[::-1]
            backend.append(slice(ordered[0], ordered[-1] + 1, ordered.step) if picked else slice(0))
            post.append(slice(None, None, -1) if picked.step < 0 else slice(None))
        elif isinstance(item, (int, np.integer)) and not isinstance(item, (bool, np.bool_)):
            if not -shape[axis] <= item < shape[axis]:
                raise IndexError(f"index {item} is out of bounds for axis {axis} of {shape}")
            backend.append(int(item) % shape[axis])
        else:
            raise TypeError(f"volumes support basic indexing only, got {type(item).__name__}")
    return tuple(backend), tuple(post)
