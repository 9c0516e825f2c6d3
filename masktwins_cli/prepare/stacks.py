"""Read image and label stacks for ``masktwins prepare`` into numpy arrays of shape (z, y, x).

A stack *spec* is one of:

* a folder of TIFF or PNG slices (one 2-D image per file; hidden files and other suffixes are
  skipped), or a glob such as ``dir/*.png``: slice z = the z-th file in natural sort order
  (``s2.png`` before ``s10.png``, case-insensitive);
* an explicit sequence of slice files (the presets build these; their order is kept);
* a volume URI: a multi-page TIFF ``stack.tif`` (pages = z), HDF5 ``f.h5:/raw`` or zarr
  ``x.zarr/raw`` (2-D volumes are one slice).

PNG slices are read with Pillow: 8-bit and 16-bit greyscale as uint8/uint16, palette images as
their palette *indices* (not the colours), 1-bit as 0/1. TIFF slices are read with tifffile.
Colour images are refused (EM is greyscale) unless every pixel has equal R, G and B, in which case
one channel is taken (an alpha channel is ignored). With ``rgb`` (``prepare stack --rgb``, for
colour data) every slice becomes three channels instead: RGB kept, alpha dropped, palette images
converted to their colours, grey images repeated into R, G and B; the stack is then
channel-first (3, z, y, x), the OME-Zarr axis order.

Label slices hold class indices 0..15 (or 255, the conventional ignore value, see
``data.ignore_label``) unless a decoding is given.

:func:`resolve_stack` checks what can be checked without decoding pixels (the files exist, every
slice has the same (y, x) shape); :func:`read_stack` then reads one slice at a time into the
output array, optionally decoding labels slice by slice (:class:`LabelDecoder`), so at most one
extra slice is held besides the result. Every problem is a one-line :class:`MaskTwinsError`
naming the file.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MaskTwinsError
from ..io.backends import parse_uri, reported_as, zarr_node_type
from ..io.volumes import open_volume

SLICE_SUFFIXES = (".png", ".tif", ".tiff")
MAX_CLASS_INDEX = 15  # undecoded labels must be class indices 0..15
IGNORE_VALUE = 255  # ... or this value, left for data.ignore_label
_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple:
    """Sort key that orders digit runs by value: 'img2' < 'img10'; case-insensitive."""
    parts = _DIGITS.split(name.lower())
    return tuple(int(part) if i % 2 else part for i, part in enumerate(parts))


def shape_text(shape: Sequence[int]) -> str:
    """(1024, 768) -> '1024x768'."""
    return "x".join(str(int(s)) for s in shape)


@dataclass(frozen=True)
class StackSource:
    """A resolved stack: ``files`` (slice z = files[z]) or a volume ``uri``; ``depth`` slices of
    ``slice_shape`` (y, x) voxels; ``voxel_size`` (z, y, x nm) when the source metadata gives one."""

    spec: str
    files: tuple[Path, ...]
    uri: str | None
    depth: int
    slice_shape: tuple[int, int]
    voxel_size: tuple[float, float, float] | None = None

    def slice_name(self, z: int) -> str:
        """The file (or 'uri[z]') slice z comes from, for messages."""
        return str(self.files[z]) if self.files else f"{self.uri}[{z}]"


# ------------------------------------------------------------------------------------- finding
def _slice_files(spec: str) -> list[Path] | None:
    """The slice files a glob or folder spec names, natural-sorted; None for other specs."""
    path = Path(os.path.expanduser(spec))
    if any(char in spec for char in "*?["):
        files = [Path(p) for p in glob.glob(os.path.expanduser(spec)) if Path(p).is_file()]
        if not files:
            raise MaskTwinsError(f"no files match {spec}")
        odd = [p for p in files if p.suffix.lower() not in SLICE_SUFFIXES]
        if odd:
            raise MaskTwinsError(f"{odd[0]} (matched by {spec}) is not a TIFF or PNG slice")
    elif path.is_dir() and path.suffix.lower() != ".zarr" and zarr_node_type(path) is None:
        files = [p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
                 and p.suffix.lower() in SLICE_SUFFIXES]  # fmt: skip
        if not files:
            raise MaskTwinsError(f"{path}: no TIFF or PNG slices in this folder")
    elif path.suffix.lower() == ".png":
        if not path.is_file():
            raise MaskTwinsError(f"PNG file not found: {path}")
        files = [path]
    else:
        return None
    return sorted(files, key=lambda p: natural_key(str(p)))


def probe_slice(path: Path) -> tuple[int, int]:
    """(y, x) shape of a slice file from its header (pixels are not decoded)."""
    with reported_as(f"cannot read image file {path}"):
        if path.suffix.lower() == ".png":
            from PIL import Image

            with Image.open(path) as img:
                width, height = img.size
                return height, width
        import tifffile

        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape = [s for s, axis in zip(series.shape, series.axes) if axis != "S" and s != 1]
    if len(shape) != 2:
        raise MaskTwinsError(f"TIFF file {path} holds shape {tuple(series.shape)} ({series.axes}); "
                             "expected one 2-D slice per file (give a multi-page TIFF as the "
                             "file itself, not in a folder of slices)")
    return shape[0], shape[1]


def resolve_stack(spec: str | Path | Sequence[Path]) -> StackSource:
    """Find the slices of a spec and check that they all have the same (y, x) shape."""
    if isinstance(spec, (list, tuple)):
        files, text = [Path(p) for p in spec], str(Path(spec[0]).parent) if spec else "(none)"
        if not files:
            raise MaskTwinsError("no slice files given")
    else:
        text = str(spec)
        files = _slice_files(text)
    if files is None:
        return _resolve_volume(text)
    first = probe_slice(files[0])
    for path in files[1:]:
        shape = probe_slice(path)
        if shape != first:
            raise MaskTwinsError(f"slice {path} is {shape_text(shape)} but {files[0]} is "
                                 f"{shape_text(first)} (y x); all slices of a stack must match")
    return StackSource(text, tuple(files), None, len(files), first)


def _resolve_volume(text: str) -> StackSource:
    """A StackSource for a multi-page TIFF, HDF5 or zarr volume URI (2-D or 3-D)."""
    try:
        parse_uri(text)
    except MaskTwinsError:
        if not Path(os.path.expanduser(text)).exists():
            raise MaskTwinsError(f"{text}: no such file or folder") from None
        raise
    volume = open_volume(text, ndim=(2, 3))
    try:
        shape = volume.shape if volume.ndim == 3 else (1, *volume.shape)
        voxel = volume.voxel_size if volume.ndim == 3 else None
        known = voxel is not None and any(abs(v - 1.0) > 1e-9 for v in voxel)
        return StackSource(text, (), volume.uri, shape[0], (shape[1], shape[2]),
                           tuple(voxel) if known else None)  # fmt: skip
    finally:
        volume.close()


# ------------------------------------------------------------------------------------- reading
def _grey(channels: np.ndarray, path: Path) -> np.ndarray:
    """(y, x, c) colour pixels -> (y, x) when R == G == B everywhere; error otherwise."""
    colour = channels[..., : min(channels.shape[-1], 3)]
    if colour.shape[-1] > 1 and not all(np.array_equal(colour[..., 0], colour[..., i])
                                        for i in range(1, colour.shape[-1])):
        raise MaskTwinsError(f"{path} is a colour (RGB) image; EM images must be greyscale "
                             "(convert it, or export one channel)")
    return np.ascontiguousarray(colour[..., 0])


def _three_channels(data: np.ndarray) -> np.ndarray:
    """(y, x) grey or (y, x, c) pixels -> channel-first (3, y, x) RGB: grey repeated into three
    channels, a fourth (alpha) channel dropped."""
    if data.ndim == 2:
        return np.repeat(data[None], 3, axis=0)
    if data.shape[-1] < 3:  # grey + alpha
        return np.repeat(data[None, ..., 0], 3, axis=0)
    return np.ascontiguousarray(np.moveaxis(data[..., :3], -1, 0))


def _read_png(path: Path, rgb: bool = False) -> np.ndarray:
    """A PNG slice as (y, x): uint8/uint16 grey, palette indices, 1-bit as 0/1; with ``rgb``
    as (3, y, x) colours (see :func:`_three_channels`)."""
    from PIL import Image

    with Image.open(path) as img:
        if rgb and img.mode not in ("RGB", "RGBA", "L", "LA", "I", "I;16", "I;16B", "1"):
            img = img.convert("RGB")  # palette, CMYK, YCbCr, ... -> their colours
        img.load()
        mode = img.mode
        data = np.asarray(img)
    if rgb and data.ndim == 3:  # RGB, RGBA: colours; LA: grey + alpha
        return _three_channels(data)
    plane = _png_plane(data, mode, path)
    return _three_channels(plane) if rgb else plane


def _png_plane(data: np.ndarray, mode: str, path: Path) -> np.ndarray:
    """The (y, x) values of a decoded PNG of Pillow ``mode`` (see :func:`_read_png`)."""
    if mode == "1":
        return data.astype(np.uint8)
    if mode.startswith("I;16"):
        return data.astype(np.uint16)
    if mode == "I" and data.size and data.min() >= 0 and data.max() <= 65535:
        return data.astype(np.uint16)
    if data.ndim == 3:  # LA, PA (value + alpha), RGB, RGBA
        return data[..., 0].copy() if mode in ("LA", "PA") else _grey(data, path)
    return data


def _read_tiff(path: Path, rgb: bool = False) -> np.ndarray:
    """A TIFF slice as (y, x); a samples axis must be grey (R == G == B). With ``rgb`` as
    (3, y, x) colours (see :func:`_three_channels`)."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        data, axes = series.asarray(), series.axes
    if rgb:
        if "S" in axes:
            data = np.moveaxis(data, axes.index("S"), -1)
            data = data.reshape([n for n in data.shape[:-1] if n != 1] + [data.shape[-1]])
        else:
            data = data.reshape([n for n in data.shape if n != 1] or [1])
        if data.ndim not in (2, 3) or (data.ndim == 3 and "S" not in axes):
            raise MaskTwinsError(f"TIFF file {path} holds shape {series.shape} ({axes}); "
                                 "expected one 2-D colour or grey slice")
        return _three_channels(data)
    if "S" in axes:
        data = _grey(np.moveaxis(data, axes.index("S"), -1), path)
    data = data.reshape([s for s in data.shape if s != 1] or [1])
    if data.ndim != 2:
        raise MaskTwinsError(f"TIFF file {path} holds shape {data.shape}; expected one 2-D slice")
    return data


def read_slice(path: Path, rgb: bool = False) -> np.ndarray:
    """One slice file (PNG or TIFF) as a (y, x) array, or (3, y, x) colours with ``rgb``;
    unreadable files are MaskTwinsErrors."""
    with reported_as(f"cannot read image file {path}"):
        return _read_png(path, rgb) if path.suffix.lower() == ".png" else _read_tiff(path, rgb)


def read_stack(source: StackSource, decoder: LabelDecoder | None = None,
               rgb: bool = False) -> np.ndarray:
    """All slices of ``source`` as one (z, y, x) array (dtype as read, or uint8 labels when a
    ``decoder`` is given), read and decoded one slice at a time; with ``rgb`` colour slices as
    one channel-first (3, z, y, x) array."""
    if rgb and source.uri:
        raise MaskTwinsError(f"--rgb reads colour PNG or TIFF slices (a folder or a glob); "
                             f"{source.uri} is a volume")
    volume = open_volume(source.uri, ndim=(2, 3)) if source.uri else None
    out: np.ndarray | None = None
    try:
        for z in range(source.depth):
            where = source.slice_name(z)
            if volume is None:
                plane = read_slice(source.files[z], rgb)
            else:
                plane = volume[z] if volume.ndim == 3 else volume[...]
            if decoder is not None:
                plane = decoder(plane, where)
            elif plane.dtype.kind not in "biuf":
                raise MaskTwinsError(f"slice {where} has dtype {plane.dtype}; images must be "
                                     "integers or floats")
            elif plane.dtype.kind == "f" and not np.isfinite(plane).all():
                raise MaskTwinsError(f"slice {where} holds NaN or infinite values")
            if tuple(plane.shape[-2:]) != source.slice_shape:
                raise MaskTwinsError(f"slice {where} is {shape_text(plane.shape[-2:])} but the "
                                     f"stack's slices are {shape_text(source.slice_shape)} (y x)")
            if out is None:
                out = np.empty((*plane.shape[:-2], source.depth, *source.slice_shape), plane.dtype)
            elif plane.dtype != out.dtype:
                raise MaskTwinsError(f"slice {where} has dtype {plane.dtype} but "
                                     f"{source.slice_name(0)} has {out.dtype}; mixed bit depths")
            out[..., z, :, :] = plane
    finally:
        if volume is not None:
            volume.close()
    assert out is not None  # depth >= 1 by construction
    return out


# -------------------------------------------------------------------------------------- labels
@dataclass(frozen=True)
class LabelDecoder:
    """How stored label values become uint8 class indices, applied to each (y, x) slice.

    ``value``: pixels == value -> 1, others 0. ``mapping``: listed values -> their class, others 0.
    ``nonzero``: instance ids > 0 -> 1. None of them: values must already be classes 0..15.
    """

    value: int | None = None
    mapping: tuple[tuple[int, int], ...] | None = None
    nonzero: bool = False

    def describe(self) -> str:
        """One phrase for reports, e.g. 'labels == 191 -> 1'."""
        if self.value is not None:
            return f"labels == {self.value} -> 1, others 0"
        if self.mapping:
            pairs = ", ".join(f"{v}->{c}" for v, c in self.mapping)
            return f"{pairs}, others 0"
        return "instance ids > 0 -> 1" if self.nonzero else "stored class indices"

    def __call__(self, plane: np.ndarray, where: str) -> np.ndarray:
        """Decode one slice; undecoded values outside 0..15 are an error naming ``where``."""
        if plane.dtype.kind not in "biu":
            raise MaskTwinsError(f"labels {where} have dtype {plane.dtype}; expected integers")
        if self.value is not None:
            return (plane == self.value).astype(np.uint8)
        if self.mapping:
            out = np.zeros(plane.shape, np.uint8)
            for value, cls in self.mapping:
                out[plane == value] = cls
            return out
        if self.nonzero:
            return (plane > 0).astype(np.uint8)
        outside = (plane < 0) | ((plane > MAX_CLASS_INDEX) & (plane != IGNORE_VALUE))
        if outside.any():
            found = np.unique(plane[outside])
            shown = ", ".join(str(v) for v in found[:16]) + (", ..." if found.size > 16 else "")
            raise MaskTwinsError(
                f"labels {where} hold values {shown}, not class indices 0..{MAX_CLASS_INDEX} "
                f"(or {IGNORE_VALUE}, ignored); "
                "decode them with --label-value V (V -> 1) or --label-map 'V:C,...'")
        return plane.astype(np.uint8)


# ---------------------------------------------------------------------------------- resampling
def resampled_shape(shape: Sequence[int], source: Sequence[float],
                    target: Sequence[float]) -> tuple[int, ...]:  # fmt: skip
    """Voxels per axis after resampling from ``source`` to ``target`` voxel size (nm):
    floor(n * source / target + 0.5), at least 1."""
    return tuple(max(1, int(n * s / t + 0.5)) for n, s, t in zip(shape, source, target))


def _fit(block: np.ndarray, shape: tuple[int, ...], order: int) -> np.ndarray:
    """Resize one block (skimage, pixel-area aligned) and cast back to the block's dtype."""
    from skimage.transform import resize

    out = resize(block, shape, order=order, mode="edge", anti_aliasing=order > 0,
                 preserve_range=True)  # fmt: skip
    if block.dtype.kind in "biu":
        info = np.iinfo(block.dtype) if block.dtype.kind != "b" else np.iinfo(np.uint8)
        out = np.clip(np.rint(out), info.min, info.max)
    return out.astype(block.dtype)


def resample(volume: np.ndarray, shape: tuple[int, int, int], order: int) -> np.ndarray:
    """A (z, y, x) volume resized to ``shape``, same dtype. ``order`` 1: linear interpolation
    with Gaussian anti-aliasing along shrinking axes (raw); 0: nearest neighbour, so only
    existing values appear (labels). In-plane slice by slice, then along z in row blocks."""
    depth, rows, cols = shape
    planes = volume
    if (rows, cols) != volume.shape[1:]:
        planes = np.empty((volume.shape[0], rows, cols), volume.dtype)
        for z in range(volume.shape[0]):
            planes[z] = _fit(volume[z], (rows, cols), order)
    if depth == volume.shape[0]:
        return planes
    out = np.empty(shape, volume.dtype)
    for start in range(0, rows, 64):
        block = planes[:, start : start + 64]
        out[:, start : start + 64] = _fit(block, (depth, *block.shape[1:]), order)
    return out
