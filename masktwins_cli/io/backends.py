"""Volume URIs and each format's on-disk conventions (used by :mod:`masktwins_cli.io.volumes`).

A URI names one dataset inside a container (see :func:`parse_uri`):

* zarr: ``path/to/data.zarr/raw`` -- up to and including the first path component ending in
  ``.zarr`` is the container, the rest the array path in it; ``data.zarr`` = a root array.
* HDF5: ``file.h5:/raw`` or ``file.hdf5:/group/raw``; also ``file.h5/raw``.
* TIFF: ``stack.tif`` / ``stack.tiff`` (multi-page = (z, y, x), single page = (y, x)).

Every failure to open (missing file or dataset, a group, corrupt metadata, truncated TIFF) is a
one-line :class:`MaskTwinsError` naming the file. Calibration is in nm, (z, y, x) order.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np
import tifffile
import zarr

from masktwins_cli.errors import MaskTwinsError

SUPPORTED_SPELLINGS = (
    "supported are zarr (data.zarr/array), HDF5 (file.h5:/dataset; .h5, .hdf5, .hdf) "
    "and TIFF (stack.tif, .tiff)"
)
_HDF5_COLON = re.compile(r"(.+?\.(?:h5|hdf5|hdf)):(.*)", re.IGNORECASE)
NM_PER_UNIT = {
    "angstrom": 0.1, "nanometer": 1.0, "nm": 1.0, "micrometer": 1e3, "micron": 1e3, "um": 1e3,
    "\u00b5m": 1e3, "\\u00b5m": 1e3, "millimeter": 1e6, "mm": 1e6, "centimeter": 1e7, "meter": 1e9,
}  # fmt: skip


@dataclass(frozen=True)
class ParsedUri:
    """Format, container path and dataset path ('' for TIFF and zarr root arrays; no '/' ends)."""

    kind: Literal["zarr", "hdf5", "tiff"]
    container: Path
    dataset: str

    def __str__(self) -> str:
        """Canonical spelling: ``data.zarr/raw``, ``file.h5:/raw`` or ``stack.tif``."""
        if self.kind == "hdf5":
            return f"{self.container}:/{self.dataset}"
        return f"{self.container}/{self.dataset}" if self.dataset else str(self.container)

    def absolute(self) -> ParsedUri:
        """The same dataset with an absolute, symlink-free container path."""
        return ParsedUri(self.kind, self.container.resolve(), self.dataset)


def one_line(exc: BaseException) -> str:
    """The exception's message squeezed onto one line (its type name when it has none)."""
    return " ".join(str(exc).split()) or type(exc).__name__


@contextlib.contextmanager
def reported_as(message: str) -> Iterator[None]:
    """Turn unexpected exceptions (I/O, corrupt data) into MaskTwinsError('<message>: <why>')."""
    try:
        yield
    except MaskTwinsError:
        raise
    except Exception as exc:
        raise MaskTwinsError(f"{message}: {one_line(exc)}") from exc


def format_names(names: list[str], limit: int = 20) -> str:
    """Comma-separated dataset names for error messages, shortened beyond ``limit``."""
    shown = ", ".join(name or "(root)" for name in names[:limit]) or "none"
    return shown if len(names) <= limit else f"{shown}, ... ({len(names)} in all)"


def parse_uri(uri: str | Path | ParsedUri) -> ParsedUri:
    """Split a volume URI into (kind, container, dataset); MaskTwinsError if malformed."""
    if isinstance(uri, ParsedUri):
        return uri
    text = os.path.expanduser(str(uri).strip())
    colon = _HDF5_COLON.fullmatch(text)
    if colon:
        return ParsedUri("hdf5", Path(colon.group(1)), _clean_dataset(colon.group(2), text))
    parts = text.split("/")
    for index, part in enumerate(parts):
        prefix, rest = "/".join(parts[: index + 1]), "/".join(parts[index + 1 :])
        suffix = os.path.splitext(part)[1].lower()
        if suffix == ".zarr":
            return ParsedUri("zarr", Path(prefix), _clean_dataset(rest, text))
        if suffix in (".h5", ".hdf5", ".hdf") and not Path(prefix).is_dir():
            return ParsedUri("hdf5", Path(prefix), _clean_dataset(rest, text))
        if suffix in (".tif", ".tiff") and not Path(prefix).is_dir():
            if _clean_dataset(rest, text):
                raise MaskTwinsError(f"'{text}': a TIFF holds one image; nothing may follow it")
            return ParsedUri("tiff", Path(prefix), "")
    raise MaskTwinsError(f"cannot tell the volume format of '{text}'; {SUPPORTED_SPELLINGS}")


def _clean_dataset(dataset: str, uri: str) -> str:
    """Dataset path without empty components; '.' and '..' are refused."""
    parts = [part for part in dataset.split("/") if part]
    if any(part in (".", "..") for part in parts):
        raise MaskTwinsError(f"'{uri}': the dataset path may not contain '.' or '..'")
    return "/".join(parts)


# ---------------------------------------------------------------------------------------- zarr
def zarr_node_dir(parsed: ParsedUri) -> Path:
    """Directory of the zarr node a URI names (the container itself for a root array)."""
    return parsed.container / parsed.dataset if parsed.dataset else parsed.container


def zarr_node_type(node_dir: Path) -> Literal["array", "group"] | None:
    """'array'/'group' from zarr v3 or v2 metadata in ``node_dir``; None without metadata.

    MaskTwinsError when a zarr.json exists but cannot be parsed.
    """
    v3_meta = node_dir / "zarr.json"
    if v3_meta.is_file():
        try:
            node_type = json.loads(v3_meta.read_text())["node_type"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise MaskTwinsError(f"broken zarr metadata {v3_meta}: {one_line(exc)}") from exc
        if node_type not in ("array", "group"):
            raise MaskTwinsError(f"broken zarr metadata {v3_meta}: node_type {node_type!r}")
        return node_type
    if (node_dir / ".zarray").is_file():
        return "array"
    return "group" if (node_dir / ".zgroup").is_file() else None


def list_zarr_arrays(group_dir: Path) -> list[str]:
    """Paths (relative to ``group_dir``) of the zarr arrays below it; hidden names skipped."""
    found = []
    for dirpath, dirnames, _ in os.walk(group_dir):
        here = Path(dirpath)
        dirnames[:] = sorted(name for name in dirnames if not name.startswith("."))
        try:
            is_array = zarr_node_type(here) == "array"
        except MaskTwinsError:
            is_array = False
        if is_array:
            found.append("" if here == group_dir else here.relative_to(group_dir).as_posix())
            dirnames[:] = []
    return found


def open_zarr_array(parsed: ParsedUri, writable: bool = False) -> zarr.Array:
    """Open the zarr array a URI names (read-only unless ``writable``)."""
    container, node_dir = parsed.container, zarr_node_dir(parsed)
    if not container.exists():
        raise MaskTwinsError(f"zarr container not found: {container} (from '{parsed}')")
    node_type = zarr_node_type(node_dir)
    if node_type != "array":
        inside = list_zarr_arrays(node_dir) if node_dir.is_dir() else []
        if node_type == "group" or inside:
            raise MaskTwinsError(
                f"'{parsed}' names a zarr group, not an array; arrays in it: {format_names(inside)}"
            )
        raise MaskTwinsError(
            f"no zarr array '{parsed.dataset}' in {container}; "
            f"available arrays: {format_names(list_zarr_arrays(container))}"
        )
    with reported_as(f"cannot open zarr array '{parsed}'"):  # broken metadata, permissions
        return zarr.open_array(str(container), path=parsed.dataset, mode="r+" if writable else "r")


def zarr_array_exists(parsed: ParsedUri) -> bool:
    """Whether a zarr array is at the URI; MaskTwinsError if something else is in the way."""
    target = zarr_node_dir(parsed)
    node_type = zarr_node_type(target)
    in_the_way = target.exists() and (target.is_file() or any(target.iterdir()))
    if node_type == "group" or (node_type is None and in_the_way):
        raise MaskTwinsError(f"'{target}' exists and is not a zarr array; refusing to replace it")
    return node_type == "array"


def ensure_zarr_parents(parsed: ParsedUri) -> int:
    """Create the container and the groups above the array; return the zarr format (2 or 3)."""
    container = parsed.container
    if not parsed.dataset:  # a root array: its format is kept when it is replaced
        container.parent.mkdir(parents=True, exist_ok=True)
        return 2 if (container / ".zarray").is_file() else 3
    if zarr_node_type(container) == "array" or container.is_file():
        raise MaskTwinsError(f"'{container}' is not a zarr group; cannot add '{parsed.dataset}'")
    with reported_as(f"cannot create zarr groups for '{parsed}'"):  # an array in the way, ...
        group = zarr.open_group(str(container), mode="a", use_consolidated=False)
        for name in parsed.dataset.split("/")[:-1]:
            group = group.require_group(name)
        return group.metadata.zarr_format


def attrs_calibration(attrs: Any) -> tuple[Any, Any]:
    """(voxel_size, offset) from zarr/HDF5 attributes: voxel_size or resolution, and offset."""
    voxel = attrs.get("voxel_size", attrs.get("resolution"))
    return voxel, attrs.get("offset")


# ---------------------------------------------------------------------------------------- HDF5
def list_hdf5_datasets(group: h5py.Group) -> list[str]:
    """Paths of all datasets below an HDF5 group, relative to it."""
    names: list[str] = []
    group.visititems(lambda name, node: names.append(name) if hasattr(node, "shape") else None)
    return names


def open_hdf5_file(path: Path, mode: str = "r") -> h5py.File:
    """Open an HDF5 file (file locking off for reading); MaskTwinsError if missing or corrupt."""
    if mode == "r" and not path.is_file():
        raise MaskTwinsError(f"HDF5 file not found: {path}")
    with reported_as(f"cannot open HDF5 file {path}"):
        return h5py.File(path, mode, **({"locking": False} if mode == "r" else {}))


def open_hdf5_dataset(parsed: ParsedUri) -> h5py.Dataset:
    """Open the dataset a URI names read-only (``dataset.file`` is the open file)."""
    h5file = open_hdf5_file(parsed.container)
    try:
        node = h5file.get(parsed.dataset) if parsed.dataset else h5file
        if isinstance(node, h5py.Dataset):
            return node
        if isinstance(node, h5py.Group):
            raise MaskTwinsError(
                f"'{parsed}' names an HDF5 group, not a dataset; datasets in it: "
                f"{format_names(list_hdf5_datasets(node))}"
            )
        raise MaskTwinsError(
            f"no dataset '/{parsed.dataset}' in HDF5 file {parsed.container}; "
            f"available datasets: {format_names(list_hdf5_datasets(h5file))}"
        )
    except Exception as exc:  # also broken links and corrupt object headers
        h5file.close()
        if isinstance(exc, MaskTwinsError):
            raise
        raise MaskTwinsError(f"cannot open HDF5 dataset '{parsed}': {one_line(exc)}") from exc


# ---------------------------------------------------------------------------------------- TIFF
class TiffStack:
    """Array-like view of a TIFF read page by page: pages are z-slices; ``file`` is the TiffFile."""

    def __init__(self, tif: tifffile.TiffFile, shape: tuple[int, ...]):
        self.file, self.shape, self.dtype = tif, shape, tif.series[0].dtype

    def __getitem__(self, key: tuple) -> np.ndarray:
        """Voxels at ``key``: one int or positive-step slice per axis, (z, y, x) or (y, x)."""
        if len(self.shape) == 2:
            return self.file.asarray(series=0).reshape(self.shape)[key]
        pages = range(*key[0].indices(self.shape[0])) if isinstance(key[0], slice) else [key[0]]
        stack = np.empty((0, *self.shape[1:]), self.dtype)
        if len(pages):
            stack = self.file.asarray(key=list(pages), series=0).reshape(-1, *self.shape[1:])
        return stack[(slice(None) if isinstance(key[0], slice) else 0, *key[1:])]


def open_tiff(parsed: ParsedUri) -> TiffStack:
    """Open a TIFF as a (z, y, x) stack or (y, x) image, dropping leading axes of size 1;
    colour images, more than one non-spatial axis and truncated files are refused."""
    path = parsed.container
    if not path.is_file():
        raise MaskTwinsError(f"TIFF file not found: {path}")
    with reported_as(f"cannot read TIFF file {path}"):  # TiffFileError, struct.error, ...
        tif = tifffile.TiffFile(path)
    try:
        series = tif.series[0]
        leading = [size for size in series.shape[:-2] if size != 1]
        if "S" in series.axes or len(leading) > 1:
            raise MaskTwinsError(
                f"TIFF file {path} has axes {series.axes}, shape {series.shape}; "
                "expected a grey (z, y, x) stack or (y, x) image"
            )
        if series.dataoffset is not None:  # contiguous data (tifffile and ImageJ files)
            end = series.dataoffset + series.nbytes
        else:
            if len(series.pages) < math.prod(leading):
                raise MaskTwinsError(f"TIFF file {path} is truncated: pages are missing")
            last = series.pages[-1]
            end = max(o + n for o, n in zip(last.dataoffsets, last.databytecounts, strict=True))
        if end > path.stat().st_size:
            raise MaskTwinsError(f"TIFF file {path} is truncated (image data ends at byte {end})")
        return TiffStack(tif, (*leading, *series.shape[-2:]))
    except Exception as exc:
        tif.close()
        if isinstance(exc, MaskTwinsError):
            raise
        raise MaskTwinsError(f"cannot read TIFF file {path}: {one_line(exc)}") from exc


def tiff_calibration(tif: tifffile.TiffFile, ndim: int) -> tuple[Any, Any]:
    """(voxel_size, offset) in nm: tifffile shaped metadata, else ImageJ spacing + resolution
    tags (in ImageJ's unit, or ResolutionUnit NONE/CM; inch-based DPI is print metadata)."""
    shaped = (tif.shaped_metadata or [{}])[0] if tif.is_shaped else {}
    if "voxel_size" in shaped:
        return shaped["voxel_size"], shaped.get("offset")
    imagej, tags = tif.imagej_metadata or {}, tif.pages[0].tags
    unit = imagej.get("unit")
    res_unit = int(tags["ResolutionUnit"].value) if "ResolutionUnit" in tags else 2
    nm = NM_PER_UNIT.get(str(unit).lower(), 1.0) if unit else {1: 1.0, 3: 1e7}.get(res_unit)
    pixel = [1.0, 1.0]
    for i, name in enumerate(("YResolution", "XResolution")):
        numerator, denominator = tags[name].value if nm and name in tags else (0, 0)
        if numerator > 0 and denominator > 0:
            pixel[i] = denominator / numerator * nm
    spacing = float(imagej.get("spacing", 1.0)) * (nm if unit else 1.0)
    return [spacing, *pixel][3 - min(ndim, 3) :], shaped.get("offset")
