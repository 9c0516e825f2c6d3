"""The volume interface: every image volume (zarr, HDF5, TIFF) is read and written through here.

A :class:`Volume` is a lazily opened, read-only, picklable view of the dataset a URI names (see
:mod:`masktwins_cli.io.backends`). Axes keep the stored order: (z, y, x), (y, x), or (c, z, y, x)
with uncalibrated leading axes. ``voxel_size`` (nm per voxel) and ``offset`` (nm, world position
of voxel 0) have one entry per spatial axis, (z, y, x) order.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import zarr

from masktwins_cli.errors import MaskTwinsError
from masktwins_cli.io.atomic import atomic_path
from masktwins_cli.io.backends import (
    ParsedUri,
    attrs_calibration,
    ensure_zarr_parents,
    open_hdf5_dataset,
    open_hdf5_file,
    open_tiff,
    open_zarr_array,
    parse_uri,
    reported_as,
    tiff_calibration,
    zarr_array_exists,
    zarr_node_dir,
)
from masktwins_cli.io.indexing import EVERY_CHUNK_ATTR, check_chunks_present, split_basic_index
from masktwins_cli.io.layout import AXES_TEXT, VolumeMeta, axis_names, default_chunks, make_meta
from masktwins_cli.io.ome import image_array_of, update_ome_multiscales, zarr_calibration


def _new_meta(parsed: ParsedUri, shape, dtype, chunks, voxel_size, offset) -> VolumeMeta:
    """Layout of a volume about to be written; chunks default and are clipped to the shape."""
    shape = tuple(int(s) for s in shape)
    chunks = default_chunks(shape) if chunks is None else tuple(int(c) for c in chunks)
    if not shape or min(shape) < 0 or len(chunks) != len(shape) or min(chunks) < 1:
        raise MaskTwinsError(f"'{parsed}': cannot write shape {shape} with chunks {chunks}")
    if np.dtype(dtype).kind not in "biuf":
        raise MaskTwinsError(f"'{parsed}': cannot write dtype {np.dtype(dtype)}; volumes hold "
                             "numbers (bool, integer or float)")
    chunks = tuple(min(c, max(s, 1)) for c, s in zip(chunks, shape, strict=True))
    return make_meta(shape, dtype, chunks, voxel_size, offset, parsed, exact=True)


def open_array(parsed: ParsedUri, writable: bool = False) -> tuple[Any, tuple, tuple[Any, Any]]:
    """Open the dataset a URI names: (array, chunks, (voxel_size, offset)), calibration raw or
    None. ``array`` (zarr.Array, h5py.Dataset or TiffStack) has shape/dtype and takes one int or
    positive-step slice per axis; h5py/TIFF arrays hold their open file in ``array.file``.
    Contiguous HDF5 and TIFF get chunks of whole slices (1, y, x); only zarr opens writable."""
    if parsed.kind == "zarr":
        array = open_zarr_array(parsed, writable)
        chunks = getattr(array, "shards", None) or array.chunks
        return array, chunks, zarr_calibration(parsed, array)
    if writable:
        raise MaskTwinsError(f"'{parsed}': only zarr arrays can be written block by block")
    array = open_hdf5_dataset(parsed) if parsed.kind == "hdf5" else open_tiff(parsed)
    slices = (1,) * (len(array.shape) - 2) + array.shape[-2:]
    if parsed.kind == "hdf5":
        return array, array.chunks or slices, attrs_calibration(array.attrs)
    return array, slices, tiff_calibration(array.file, len(array.shape))


def _open(parsed: ParsedUri, writable: bool = False) -> tuple[Any, VolumeMeta]:
    """Open the array a URI names and validate its metadata; failures are MaskTwinsErrors."""
    with reported_as(f"cannot read the metadata of '{parsed}'"):
        array, chunks, (voxel, offset) = open_array(parsed, writable)
        return array, make_meta(array.shape, array.dtype, chunks, voxel, offset, parsed, False)


def _close(array: Any) -> None:
    """Close the file behind an array from :func:`_open` (zarr arrays hold none)."""
    if hasattr(array, "file"):
        array.file.close()


def _check_box(box: Any, shape: tuple[int, ...], uri: str) -> tuple[slice, ...]:
    """A box of step-1 slices inside ``shape`` (missing trailing axes = whole axis)."""
    items = () if box is Ellipsis else box if isinstance(box, tuple) else (box,)
    if len(items) > len(shape) or not all(isinstance(item, slice) for item in items):
        raise IndexError(f"box for '{uri}' must be up to {len(shape)} slices, got {box!r}")
    items += (slice(None),) * (len(shape) - len(items))
    starts = [0 if item.start is None else int(item.start) for item in items]
    stops = [size if item.stop is None else int(item.stop) for item, size in zip(items, shape)]
    for item, start, stop, size in zip(items, starts, stops, shape, strict=True):
        if item.step not in (None, 1) or not 0 <= start <= stop <= size:
            raise IndexError(f"box {items} is not a step-1 box inside '{uri}' of shape {shape}")
    return tuple(map(slice, starts, stops))


# ------------------------------------------------------------------------------------- volumes
class Volume:
    """Read-only, lazily opened, picklable view of a dataset; ``vol[2:5, ::2, 7]`` is numpy basic
    indexing. Pickles hold URI and metadata; the file reopens after unpickling and in forks."""

    _writable = False

    def __init__(self, parsed: ParsedUri, meta: VolumeMeta, handle: Any = None):
        self._parsed, self.meta, self._handle, self._pid = parsed, meta, handle, os.getpid()

    uri = property(lambda self: str(self._parsed), doc="Canonical URI of the dataset.")
    location = property(lambda self: self._parsed, doc="The parsed URI (format, container, dataset).")
    shape = property(lambda self: self.meta.shape, doc="Voxels per axis.")
    dtype = property(lambda self: self.meta.dtype)
    ndim = property(lambda self: self.meta.ndim)
    chunks = property(lambda self: self.meta.chunks, doc="Storage chunk shape in voxels.")
    voxel_size = property(lambda self: self.meta.voxel_size, doc="nm per voxel, (z, y, x).")
    offset = property(lambda self: self.meta.offset, doc="nm, world position of voxel 0.")

    def _array(self) -> Any:
        """The open array, (re)opened in this process when needed."""
        if self._handle is None or self._pid != os.getpid():
            array, meta = _open(self._parsed, self._writable)
            if (meta.shape, meta.dtype) != (self.shape, self.dtype):
                _close(array)
                raise MaskTwinsError(f"'{self.uri}' changed on disk since it was opened")
            self._handle, self._pid = array, os.getpid()
        return self._handle

    def __getitem__(self, key: Any) -> np.ndarray:
        backend_key, post = split_basic_index(key, self.shape)
        array = self._array()
        if self._every_chunk_stored(array):
            check_chunks_present(array, backend_key, self.uri, zarr_node_dir(self._parsed))
        with reported_as(f"cannot read '{self.uri}'"):
            data = np.asarray(array[backend_key])
        return data[post] if post else data  # data[()] would turn a 0-d array into a scalar

    def _every_chunk_stored(self, array: Any) -> bool:
        """True for a zarr array that masktwins wrote whole (read once per open)."""
        if getattr(self, "_every_chunk_pid", None) != self._pid:
            self._every_chunk = isinstance(array, zarr.Array) and bool(
                array.attrs.get(EVERY_CHUNK_ATTR, False))
            self._every_chunk_pid = self._pid
        return self._every_chunk

    def read(self, box: tuple[slice, ...]) -> np.ndarray:
        """Voxels inside ``box`` (step-1 slices within the shape, else IndexError)."""
        return self[_check_box(box, self.shape, self.uri)]

    def read_all(self, max_bytes: int = 2**31) -> np.ndarray:
        """The whole volume; MaskTwinsError if it is larger than ``max_bytes``."""
        if self.meta.nbytes > max_bytes:
            raise MaskTwinsError(f"'{self.uri}' is too large to load whole: {self.meta.nbytes:,} "
                                 f"bytes > limit {max_bytes:,}; process it in blocks")  # fmt: skip
        return self[...]

    def close(self) -> None:
        """Close the file handle (it is reopened by the next read)."""
        if self._handle is not None and self._pid == os.getpid():
            _close(self._handle)
        self._handle = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_handle": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _pid=os.getpid())

    def __repr__(self) -> str:
        return f"{type(self).__name__}('{self.uri}', {self.shape}, {self.dtype})"


class WritableVolume(Volume):
    """A zarr volume that can also be written box by box (see :func:`create_volume`)."""

    _writable = True

    def write(self, box: tuple[slice, ...], data: np.ndarray) -> None:
        """Store ``data`` (shape = box shape) at ``box`` (step-1 slices within the shape)."""
        box = _check_box(box, self.shape, self.uri)
        data = np.asarray(data)
        if data.shape != tuple(item.stop - item.start for item in box):
            raise ValueError(f"data of shape {data.shape} does not fit box {box} of '{self.uri}'")
        integers = {data.dtype.kind, self.dtype.kind} <= set("biu")
        if not integers and not np.can_cast(data.dtype, self.dtype, "same_kind"):
            raise TypeError(f"refusing to cast {data.dtype} data into '{self.uri}' ({self.dtype})")
        with reported_as(f"cannot write to '{self.uri}'"):
            self._array()[box] = data.astype(self.dtype, copy=False)

    __setitem__ = write


def open_volume(uri: str | Path | ParsedUri, ndim: int | tuple[int, ...] | None = None) -> Volume:
    """Open a volume read-only (metadata only); ``ndim`` = allowed number(s) of dimensions. A
    zarr URI may name an OME-Zarr group that stands for one array (``x.zarr/labels``: its one
    label image; an image group: its full resolution, see :func:`image_array_of`)."""
    parsed = image_array_of(parse_uri(uri))
    array, meta = _open(parsed)
    if np.dtype(meta.dtype).kind not in "biuf":
        _close(array)
        raise MaskTwinsError(f"'{parsed}': dtype {meta.dtype}; volumes hold numbers (bool, "
                             "integer or float)")
    allowed = () if ndim is None else (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if allowed and meta.ndim not in allowed:
        _close(array)
        wanted = " or ".join(AXES_TEXT.get(n, f"{n}-D") for n in allowed)
        raise MaskTwinsError(f"'{parsed}': expected a {wanted} volume, got shape {meta.shape}")
    return Volume(parsed, meta, array)


# ------------------------------------------------------------------------------------- writing
def create_volume(uri: str | Path | ParsedUri, shape: tuple[int, ...], dtype: Any,
                  chunks: tuple[int, ...] | None, voxel_size: tuple[float, ...],
                  offset: tuple[float, ...] | None = None, overwrite: bool = False,
                  fill_value: Any = 0) -> WritableVolume:  # fmt: skip
    """Create a zarr array for blockwise writing (voxel_size/offset in nm, (z, y, x)). A matching
    existing array (shape, dtype, chunks, calibration) is reopened so writers can resume; another
    is a MaskTwinsError unless ``overwrite`` (then it is deleted first). Not atomic."""
    parsed = parse_uri(uri)
    if parsed.kind != "zarr":
        raise MaskTwinsError(f"'{parsed}': create_volume writes zarr only (data.zarr/array)")
    meta = _new_meta(parsed, shape, dtype, chunks, voxel_size, offset)
    if zarr_array_exists(parsed) and not overwrite:
        old = _open(parsed, writable=True)[1]
        same_grid = (old.shape, old.dtype, old.chunks) == (meta.shape, meta.dtype, meta.chunks)
        if same_grid and np.allclose(old.voxel_size + old.offset, meta.voxel_size + meta.offset):
            return WritableVolume(parsed, old)
        layout = "shape {0.shape}, dtype {0.dtype}, chunks {0.chunks}, voxel_size {0.voxel_size}"
        raise MaskTwinsError(f"'{parsed}' already exists with {layout.format(old)}, offset "
                             f"{old.offset}, but {layout.format(meta)}, offset {meta.offset} "
                             "was requested; delete it or allow overwriting")  # fmt: skip
    zarr_format = ensure_zarr_parents(parsed)
    _remove(zarr_node_dir(parsed))
    _new_zarr_array(zarr_node_dir(parsed), meta, zarr_format, fill_value)
    update_ome_multiscales(parsed, axis_names(meta.ndim), meta.voxel_size, meta.offset)
    return WritableVolume(parsed, meta)


def write_volume(uri: str | Path | ParsedUri, array: np.ndarray, voxel_size: tuple[float, ...],
                 offset: tuple[float, ...] | None = None, chunks: tuple[int, ...] | None = None,
                 overwrite: bool = False) -> Volume:  # fmt: skip
    """Write a whole array (voxel_size/offset in nm) to a zarr, HDF5 or TIFF URI; return it opened.

    Atomic: data goes to a hidden temporary sibling renamed into place once complete. An existing
    target is an error unless ``overwrite``; then it is replaced after the new data is complete.
    """
    parsed = parse_uri(uri)
    data = np.asarray(array)
    meta = _new_meta(parsed, data.shape, data.dtype, chunks, voxel_size, offset)
    parsed.container.parent.mkdir(parents=True, exist_ok=True)
    writer = {"zarr": _write_zarr, "hdf5": _write_hdf5, "tiff": _write_tiff}[parsed.kind]
    with reported_as(f"cannot write '{parsed}'"):  # disk full, permissions, ...
        writer(parsed, data, meta, overwrite)
    return open_volume(parsed)


def write_volume_blocks(uri: str | Path | ParsedUri, shape: tuple[int, ...], dtype: Any,
                        chunks: tuple[int, ...] | None, voxel_size: tuple[float, ...],
                        offset: tuple[float, ...] | None,
                        fill: Callable[[WritableVolume], None], overwrite: bool = False,
                        attributes: dict | None = None) -> Volume:  # fmt: skip
    """A zarr array written block by block by ``fill`` (given the new, empty array), atomically
    like :func:`write_volume`: into a hidden temporary sibling that replaces ``uri`` only once
    ``fill`` has returned. ``attributes`` go on the array; every chunk must be written."""
    parsed = parse_uri(uri)
    if parsed.kind != "zarr" or not parsed.dataset:
        raise MaskTwinsError(f"'{parsed}': write_volume_blocks writes a zarr array inside a "
                             "container (data.zarr/array)")
    meta = _new_meta(parsed, shape, dtype, chunks, voxel_size, offset)
    _refuse_existing(zarr_array_exists(parsed), parsed, overwrite)
    zarr_format = ensure_zarr_parents(parsed)
    with reported_as(f"cannot write '{parsed}'"), atomic_path(zarr_node_dir(parsed)) as temporary:
        array = _new_zarr_array(temporary, meta, zarr_format)
        array.attrs.update(attributes or {})
        staged = ParsedUri("zarr", parsed.container, temporary.relative_to(parsed.container).as_posix())
        fill(WritableVolume(staged, meta))
        array.attrs[EVERY_CHUNK_ATTR] = True
    update_ome_multiscales(parsed, axis_names(meta.ndim), meta.voxel_size, meta.offset)
    return open_volume(parsed)


def _refuse_existing(exists: bool, parsed: ParsedUri, overwrite: bool) -> None:
    if exists and not overwrite:
        raise MaskTwinsError(f"'{parsed}' already exists; not overwriting it")


def _new_zarr_array(directory: Path, meta: VolumeMeta, zarr_format: int, fill_value: Any = 0):
    """An empty zarr array stored in ``directory``, with voxel_size/offset/axes attributes. Every
    chunk that is written is stored, even one equal to the fill value, so that a complete array
    has every chunk on disk (see :data:`EVERY_CHUNK_ATTR`)."""
    axes = axis_names(meta.ndim)
    attributes = {"voxel_size": list(meta.voxel_size), "offset": list(meta.offset), "axes": axes}
    return zarr.create_array(
        str(directory), shape=meta.shape, chunks=meta.chunks, dtype=meta.dtype,
        fill_value=fill_value, zarr_format=zarr_format, attributes=attributes,
        dimension_names=axes if zarr_format == 3 else None,
        config={"write_empty_chunks": True},
    )  # fmt: skip


def _write_slabs(target: Any, data: np.ndarray, slab: int) -> None:
    """Copy ``data`` into ``target`` in slabs of ``slab`` along axis 0."""
    for start in range(0, data.shape[0], slab):
        target[start : start + slab] = data[start : start + slab]


def _remove(path: Path) -> None:
    """Delete a file or directory tree if it exists."""
    shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


def _write_zarr(parsed: ParsedUri, data: np.ndarray, meta: VolumeMeta, overwrite: bool) -> None:
    _refuse_existing(zarr_array_exists(parsed), parsed, overwrite)
    zarr_format = ensure_zarr_parents(parsed)
    with atomic_path(zarr_node_dir(parsed)) as temporary:
        array = _new_zarr_array(temporary, meta, zarr_format)
        _write_slabs(array, data, meta.chunks[0])
        array.attrs[EVERY_CHUNK_ATTR] = True  # written whole: a missing chunk is damage
    update_ome_multiscales(parsed, axis_names(meta.ndim), meta.voxel_size, meta.offset)


def _write_hdf5(parsed: ParsedUri, data: np.ndarray, meta: VolumeMeta, overwrite: bool) -> None:
    """Write into a copy of the file (other datasets are kept), then replace the file."""
    path, name = parsed.container, parsed.dataset
    if not name:
        raise MaskTwinsError(f"'{path}': name the HDF5 dataset to write, e.g. {path}:/raw")
    if path.exists():
        with open_hdf5_file(path) as h5file:
            _refuse_existing(name in h5file, parsed, overwrite)
            if name in h5file and not hasattr(h5file[name], "shape"):
                raise MaskTwinsError(f"'{parsed}' is an HDF5 group; refusing to replace it")
    with atomic_path(path) as temporary:
        if path.exists():
            shutil.copy2(path, temporary)
        with open_hdf5_file(temporary, "a") as h5file:
            if name in h5file:
                del h5file[name]
            dataset = h5file.create_dataset(
                name, meta.shape, meta.dtype, chunks=meta.chunks if min(meta.shape) else None,
                compression="gzip", compression_opts=1,
            )  # fmt: skip
            dataset.attrs.update(voxel_size=meta.voxel_size, offset=meta.offset,
                                 axes=axis_names(meta.ndim))  # fmt: skip
            _write_slabs(dataset, data, meta.chunks[0])


def _write_tiff(parsed: ParsedUri, data: np.ndarray, meta: VolumeMeta, overwrite: bool) -> None:
    """A (z,y,x) or (y,x) TIFF; calibration in tifffile's shaped metadata + resolution tags."""
    path = parsed.container
    if data.ndim not in (2, 3):
        raise MaskTwinsError(f"'{path}': TIFF holds (y,x) or (z,y,x) volumes, not {data.shape}")
    _refuse_existing(path.exists(), parsed, overwrite)
    voxel_y, voxel_x = meta.voxel_size[-2:]
    calibration = {"voxel_size": list(meta.voxel_size), "offset": list(meta.offset)}
    with atomic_path(path) as temporary:
        tifffile.imwrite(
            temporary, data, photometric="minisblack", resolution=(1 / voxel_x, 1 / voxel_y),
            resolutionunit=1, metadata={"axes": "".join(axis_names(data.ndim)).upper(), **calibration},
        )  # fmt: skip
