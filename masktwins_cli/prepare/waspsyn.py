"""``masktwins prepare waspsyn``: the WASP-SYN challenge layout -> chunked zarr + point tables.

Input layout (the challenge's, ``Yicong-Li/WASPSYN23``)::

    DIR/train_sample3_vol0/img_zyx_3680-4096_2944-3360_4448-4864.h5    image, dataset 'main' (z, y, x)
    DIR/train_sample3_vol0/syns_zyx_3680-4096_2944-3360_4448-4864.h5   labels 'pre' (N, 3), 'post' (M, 4)
    DIR/test_sample1_vol0/img_zyx_...h5                                   (unlabeled: --unlabeled)

Image files are the ``.h5``/``.hdf5``/``.hdf`` files whose name starts with ``img``, label files
those starting with ``syns``; other files are ignored. Files are looked for in DIR itself and in
its direct subfolders. Within one folder an image and a label file belong together when the crop
offset parsed from their names (:func:`~masktwins_cli.synapse.points.offset_from_name`: the
starts of the ``<z0>-<z1>_<y0>-<y1>_<x0>-<x1>`` ranges) is the same. Label coordinates are global;
the offset is subtracted so the written tables hold local voxel coordinates.

A volume is named after its folder when the folder holds one image (``train_sample3_vol0``),
else after the image file's stem. Per volume OUT_DIR gets

* ``<name>.zarr/raw``: the image as stored (usually uint8), chunks 64^3, voxel size 8 nm
  (``voxel_size``), offset = crop offset x voxel size (nm);
* ``<name>_points.csv``: the point table (:mod:`masktwins_cli.synapse.points` CSV), when labeled.

``as_name`` (``--as source``) writes the one selected volume as ``<as_name>.zarr`` and
``<as_name>_points.csv`` instead, the names the WASP-SYN recipe reads.

Everything is checked first (pairing, dataset ``main`` present and 3-D, every point inside its
image, every post linked to an existing pre, outputs new unless ``overwrite``); outputs are
written to hidden temporary names in OUT_DIR and moved into place only when all are complete.
"""

from __future__ import annotations

import re
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import MaskTwinsError
from ..io.atomic import swap_in
from ..io.volumes import Volume, create_volume, open_volume
from ..synapse.points import (
    HDF5_SUFFIXES,
    SynapsePoints,
    offset_from_name,
    read_waspsyn_points,
    write_points_csv,
)

IMAGE_PREFIX = "img"
LABEL_PREFIX = "syns"
IMAGE_DATASET = "main"
VOXEL_SIZE_NM = (8.0, 8.0, 8.0)
CHUNK = 64


@dataclass(frozen=True)
class WaspVolume:
    """One image (and its label file, or None) found in the layout; ``offset`` in voxels."""

    name: str
    image: Path
    labels: Path | None
    offset: tuple[int, int, int]


@dataclass(frozen=True)
class PreparedWaspVolume:
    """What was written for one volume: ``shape`` (z, y, x voxels), ``offset`` (voxels)."""

    name: str
    raw: str
    points: Path | None
    shape: tuple[int, ...]
    dtype: str
    offset: tuple[int, int, int]
    n_pre: int | None
    n_post: int | None
    image: Path
    labels: Path | None

    def summary(self) -> str:
        """One line: output, shape, offset, point counts."""
        text = (f"{self.raw}: {'x'.join(map(str, self.shape))} {self.dtype}, offset (z, y, x) "
                f"{self.offset} voxels, from {self.image.name}")
        if self.points is None:
            return text + ", no labels"
        return text + f"; {self.points}: {self.n_pre} pre, {self.n_post} post points"


@dataclass(frozen=True)
class PreparedWasp:
    """Every volume written by one ``prepare waspsyn``."""

    out_dir: Path
    volumes: tuple[PreparedWaspVolume, ...]

    def lines(self) -> list[str]:
        return [volume.summary() for volume in self.volumes]


# ------------------------------------------------------------------------------------ finding
def _kind(path: Path) -> str | None:
    """'image', 'labels' or None (ignored) from the file name."""
    if not path.is_file() or path.suffix.lower() not in HDF5_SUFFIXES:
        return None
    name = path.name.lower()
    return "image" if name.startswith(IMAGE_PREFIX) else "labels" if name.startswith(LABEL_PREFIX) else None


def _pair_folder(folder: Path, files: list[Path]) -> list[WaspVolume]:
    """Pair the image and label files of one folder by the crop offset in their names."""
    images: dict[tuple[int, int, int], Path] = {}
    labels: dict[tuple[int, int, int], Path] = {}
    for path in files:
        table = images if _kind(path) == "image" else labels
        try:
            offset = offset_from_name(path)
        except MaskTwinsError:
            raise MaskTwinsError(f"{path}: no crop offset in the file name; expected "
                                 f"{path.name.split('_')[0]}_zyx_<z0>-<z1>_<y0>-<y1>_<x0>-<x1>"
                                 f"{path.suffix}") from None
        if offset in table:
            raise MaskTwinsError(f"{path}: {table[offset].name} in the same folder has the same "
                                 f"crop offset (z, y, x) = {offset}; keep one of them")
        table[offset] = path
    for offset, path in labels.items():
        if offset not in images:
            raise MaskTwinsError(f"{path}: no image file {IMAGE_PREFIX}*.h5 in {folder} has the "
                                 f"crop offset (z, y, x) = {offset} of this label file")
    volumes = []
    for offset, path in sorted(images.items(), key=lambda item: item[1].name):
        name = folder.name if len(images) == 1 else path.stem
        volumes.append(WaspVolume(name, path, labels.get(offset), offset))
    return volumes


def find_volumes(root: str | Path) -> list[WaspVolume]:
    """Every image volume of the layout under ``root`` (module docstring), sorted by name.

    A label file without an image of its offset in its folder is an error; an image without
    labels has ``labels`` None (see :func:`select_volumes`).
    """
    root = Path(root)
    if not root.is_dir():
        raise MaskTwinsError(f"WASP-SYN folder not found: {root}")
    volumes: list[WaspVolume] = []
    for folder in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
        files = sorted(p for p in folder.iterdir() if _kind(p))
        if files:
            volumes += _pair_folder(folder, files)
    if not volumes:
        raise MaskTwinsError(f"{root}: no image files {IMAGE_PREFIX}*.h5 in the folder or its "
                             "subfolders (expected the WASP-SYN layout, see --help)")
    names = [v.name for v in volumes]
    for name in names:
        if names.count(name) > 1:
            clash = [str(v.image) for v in volumes if v.name == name]
            raise MaskTwinsError(f"two volumes would both be named '{name}': {', '.join(clash)}")
    return sorted(volumes, key=lambda v: v.name)


def select_volumes(volumes: list[WaspVolume], names: Sequence[str] | None,
                   as_name: str | None, unlabeled: bool = False) -> list[tuple[WaspVolume, str]]:
    """(volume, output name) for the volumes named in ``names`` (all when empty); a chosen image
    without labels is an error unless ``unlabeled``."""
    known = {v.name: v for v in volumes}
    for name in names or ():
        if name not in known:
            raise MaskTwinsError(f"--volume {name!r}: no such volume; found {', '.join(known)}")
    chosen = [known[n] for n in dict.fromkeys(names)] if names else volumes
    for volume in chosen:
        if volume.labels is None and not unlabeled:
            raise MaskTwinsError(f"{volume.image}: no label file {LABEL_PREFIX}*.h5 in "
                                 f"{volume.image.parent} has the crop offset (z, y, x) = "
                                 f"{volume.offset}; pass --unlabeled to prepare images without "
                                 "labels (raw only)")
    if as_name is None:
        return [(v, v.name) for v in chosen]
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", as_name):
        raise MaskTwinsError(f"--as {as_name!r}: expected a plain name such as source or target")
    if len(chosen) != 1:
        raise MaskTwinsError(f"--as {as_name} writes one volume, but {len(chosen)} were found "
                             f"({', '.join(v.name for v in chosen)}); pick one with --volume NAME")
    return [(chosen[0], as_name)]


# ------------------------------------------------------------------------------------ checking
def _check_volume(volume: WaspVolume) -> tuple[Volume, SynapsePoints | None]:
    """Open the image (dataset 'main', 3-D, numeric) and read its points checked against it."""
    image = open_volume(f"{volume.image}:/{IMAGE_DATASET}", ndim=3)
    if image.dtype.kind not in "biuf" or min(image.shape) < 1:
        raise MaskTwinsError(f"{volume.image}: dataset '{IMAGE_DATASET}' must be a non-empty "
                             f"numeric volume, got dtype {image.dtype}, shape {image.shape}")
    if volume.labels is None:
        return image, None
    return image, read_waspsyn_points(volume.labels, volume.offset, image.shape)


def _outputs(out_dir: Path, name: str) -> tuple[Path, Path]:
    return out_dir / f"{name}.zarr", out_dir / f"{name}_points.csv"


def _check_outputs(out_dir: Path, names: list[str], overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise MaskTwinsError(f"{out_dir} exists and is not a folder")
    for name in names:
        for path in _outputs(out_dir, name):
            if (path.exists() or path.is_symlink()) and not overwrite:
                raise MaskTwinsError(f"{path} already exists: choose another OUT_DIR or pass "
                                     "--overwrite (nothing was written)")


# ------------------------------------------------------------------------------------ writing
def _stage_raw(image: Volume, staging: Path, voxel: tuple[float, float, float],
               offset: tuple[int, int, int]) -> None:
    """Copy the image into ``staging``/raw slab by slab (one chunk row of z at a time)."""
    chunks = tuple(min(CHUNK, s) for s in image.shape)
    offset_nm = tuple(float(o * v) for o, v in zip(offset, voxel))
    raw = create_volume(f"{staging}/raw", image.shape, image.dtype, chunks, voxel, offset_nm)
    for z0 in range(0, image.shape[0], chunks[0]):
        z1 = min(z0 + chunks[0], image.shape[0])
        raw[(slice(z0, z1), slice(0, image.shape[1]), slice(0, image.shape[2]))] = image[z0:z1]
    import zarr

    group = zarr.open_group(str(staging), mode="r+", use_consolidated=False)
    group.attrs["masktwins_prepare"] = {"format": "waspsyn", "offset_voxels": list(offset)}


def prepare_waspsyn(root: str | Path, out_dir: str | Path, volumes: Sequence[str] | None = None,
                    as_name: str | None = None, unlabeled: bool = False,
                    voxel_size: tuple[float, float, float] | None = None,
                    overwrite: bool = False) -> PreparedWasp:
    """``masktwins prepare waspsyn``: check every selected volume, stage, then move into place."""
    out = Path(out_dir)
    voxel = tuple(voxel_size or VOXEL_SIZE_NM)
    jobs = select_volumes(find_volumes(root), volumes, as_name, unlabeled)
    _check_outputs(out, [name for _, name in jobs], overwrite)
    checked = [_check_volume(volume) for volume, _ in jobs]
    created = not out.exists()
    staged: list[tuple[Path, Path]] = []
    results = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        for (volume, name), (image, points) in zip(jobs, checked):
            zarr_out, csv_out = _outputs(out, name)
            tag = secrets.token_hex(4)
            staging = out / f".tmp-{tag}-{zarr_out.name}"
            staged.append((staging, zarr_out))
            _stage_raw(image, staging, voxel, volume.offset)
            if points is not None:
                staged.append((out / f".tmp-{tag}-{csv_out.name}", csv_out))
                write_points_csv(staged[-1][0], points)
            results.append(PreparedWaspVolume(
                name, f"{zarr_out}/raw", None if points is None else csv_out, image.shape,
                str(image.dtype), volume.offset, None if points is None else points.n_pre,
                None if points is None else points.n_post, volume.image, volume.labels))
        for (_, name), (_, points) in zip(jobs, checked):
            if points is None:  # a stale table of an earlier (labeled) run would not match
                _outputs(out, name)[1].unlink(missing_ok=True)
        for staging, target in staged:
            swap_in(staging, target)
        return PreparedWasp(out, tuple(results))
    finally:
        for staging, _ in staged:
            shutil.rmtree(staging, ignore_errors=True) if staging.is_dir() else staging.unlink(
                missing_ok=True)
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
