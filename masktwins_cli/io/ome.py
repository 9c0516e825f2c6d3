"""OME-Zarr metadata of zarr containers: calibration read from an array's attributes or its
group's ``multiscales``, the ``multiscales`` and other OME entries written, and the array an
OME group stands for (so users may name ``x.zarr/labels``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from ..errors import MaskTwinsError
from .backends import NM_PER_UNIT, ParsedUri, attrs_calibration, zarr_node_dir, zarr_node_type


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
