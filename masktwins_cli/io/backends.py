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


def zarr_calibration(parsed: ParsedUri, array: zarr.Array) -> tuple[Any, Any]:
    """(voxel_size, offset) from the array's attributes, else its parent's OME-NGFF metadata."""
    voxel, offset = attrs_calibration(array.attrs.asdict())
    parent, _, name = parsed.dataset.rpartition("/")
    if (voxel is None or offset is None) and name and zarr_node_type(parsed.container / parent):
        container = str(parsed.container)
        group = zarr.open_group(container, path=parent, mode="r", use_consolidated=False)
        ome_voxel, ome_offset = ome_calibration(group.attrs.asdict(), name, array.ndim, parsed)
        voxel = ome_voxel if voxel is None else voxel
        offset = ome_offset if offset is None else offset
    return voxel, offset


def attrs_calibration(attrs: Any) -> tuple[Any, Any]:
    """(voxel_size, offset) from zarr/HDF5 attributes: voxel_size or resolution, and offset."""
    voxel = attrs.get("voxel_size", attrs.get("resolution"))
    return voxel, attrs.get("offset")


def ome_calibration(group_attrs: dict, name: str, ndim: int, where: Any) -> tuple[Any, Any]:
    """(voxel_size, offset) in nm of array ``name`` from OME-NGFF 0.4/0.5 multiscales attrs."""
    try:
        images = group_attrs.get("ome", {}).get("multiscales") or group_attrs.get("multiscales")
        matches = [(image, dataset) for image in images or [] for dataset in image["datasets"]
                   if dataset.get("path") == name]  # fmt: skip
        if not matches:
            return None, None
        image, dataset = matches[0]
        transforms = {t["type"]: t for t in dataset.get("coordinateTransformations", [])}
        scale = transforms.get("scale", {}).get("scale", [1.0] * ndim)
        shift = transforms.get("translation", {}).get("translation", [0.0] * ndim)
        axes = image.get("axes") or [{}] * ndim
        units = [axis.get("unit") if isinstance(axis, dict) else "" for axis in axes]
        nm = np.array([NM_PER_UNIT.get(str(unit).lower(), 1.0) for unit in units])
        return np.multiply(scale, nm), np.multiply(shift, nm)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise MaskTwinsError(f"malformed OME-NGFF multiscales metadata for '{where}'") from exc


def update_ome_multiscales(parsed: ParsedUri, axes: list[str], voxel_size, offset) -> None:
    """List a zarr array as a single-scale image in its parent group's OME-NGFF multiscales (0.4
    in zarr v2, 0.5 under attrs['ome'] in v3), keeping other arrays' entries. ``axes`` are names
    like ['c', 'z', 'y', 'x']; voxel_size/offset are nm for the spatial axes."""
    parent, _, name = parsed.dataset.rpartition("/")
    if not name or len(axes) > 4:
        return
    group = zarr.open_group(str(parsed.container), path=parent, mode="r+", use_consolidated=False)
    leading = len(axes) - len(voxel_size)
    image = {
        "name": name,
        "axes": [{"name": "c", "type": "channel"}] * leading
        + [{"name": axis, "type": "space", "unit": "nanometer"} for axis in axes[leading:]],
        "datasets": [{"path": name, "coordinateTransformations": [
            {"type": "scale", "scale": [1.0] * leading + list(voxel_size)},
            {"type": "translation", "translation": [0.0] * leading + list(offset)},
        ]}],
    }  # fmt: skip
    is_v3 = group.metadata.zarr_format == 3
    attrs = group.attrs.asdict()
    holder = dict(attrs.get("ome", {"version": "0.5"})) if is_v3 else {}
    images = []
    for other in (holder if is_v3 else attrs).get("multiscales", []):
        datasets = [d for d in other.get("datasets", []) if d.get("path") != name]
        images += [{**other, "datasets": datasets}] if datasets else []
    images.append(image if is_v3 else {"version": "0.4", **image})
    holder["multiscales"] = images
    group.attrs.update({"ome": holder} if is_v3 else holder)


def set_ome_attribute(container: Path, group_path: str, key: str, value: Any) -> None:
    """Set ``key`` in the OME metadata of the zarr group ``group_path`` of ``container``
    (under ``ome`` in zarr v3 / OME-Zarr 0.5, at the top in v2 / 0.4)."""
    group = zarr.open_group(str(container), path=group_path, mode="r+", use_consolidated=False)
    if group.metadata.zarr_format == 3:
        holder = dict(group.attrs.asdict().get("ome", {"version": "0.5"}))
        holder[key] = value
        group.attrs.update({"ome": holder})
    else:
        group.attrs.update({key: value})


def _group_ome(node_dir: Path) -> dict:
    """The OME metadata of a zarr group folder (v3 ``attributes.ome`` or v2 ``.zattrs``)."""
    try:
        if (node_dir / "zarr.json").is_file():
            attrs = json.loads((node_dir / "zarr.json").read_text()).get("attributes", {})
            return attrs.get("ome", {}) if isinstance(attrs, dict) else {}
        if (node_dir / ".zattrs").is_file():
            attrs = json.loads((node_dir / ".zattrs").read_text())
            return attrs if isinstance(attrs, dict) else {}
    except (OSError, ValueError):
        return {}
    return {}


def image_array_of(parsed: ParsedUri) -> ParsedUri:
    """The array an OME-Zarr group stands for, so users may name the group: a ``labels`` group
    holding one label image -> that image; an image group with one multiscales -> its first
    (full-resolution) dataset. Any other URI is returned unchanged."""
    for _ in range(4):  # labels -> label image -> its level 0
        node_dir = zarr_node_dir(parsed)
        if parsed.kind != "zarr" or zarr_node_type(node_dir) != "group":
            return parsed
        ome = _group_ome(node_dir)
        labels, multiscales = ome.get("labels"), ome.get("multiscales")
        if isinstance(labels, list) and len(labels) == 1 and isinstance(labels[0], str):
            child = labels[0]
        elif isinstance(multiscales, list) and len(multiscales) == 1 and \
                isinstance(multiscales[0], dict) and multiscales[0].get("datasets"):
            child = str(multiscales[0]["datasets"][0].get("path", ""))
        else:
            return parsed
        if not child or child in (".", "..") or "/" in child.strip("/"):
            return parsed
        parsed = ParsedUri("zarr", parsed.container, f"{parsed.dataset}/{child}".strip("/"))
    return parsed


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
