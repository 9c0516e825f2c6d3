"""``masktwins prepare cityscapes|synthia|gta5``: driving-scene datasets in their published layouts ->
one canonical zarr per split, image by image (a dataset is never held in memory).

Layouts read (the first missing folder is named in the error):

* Cityscapes: ``DIR/leftImg8bit/<split>/<city>/<name>_leftImg8bit.png`` with
  ``DIR/gtFine/<split>/<city>/<name>_gtFine_labelIds.png`` (8-bit label ids 0..33).
* SYNTHIA RAND_CITYSCAPES: ``DIR/RGB/<name>.png`` with ``DIR/GT/LABELS/<name>.png``: 16-bit RGB
  PNGs with the class id (0..22) in the first (R) channel. Pillow reads 16-bit RGB as 8-bit and
  so destroys the ids; they are read with pypng, which keeps the 16 bits.
* GTA5: ``DIR/images/<name>.png`` with ``DIR/labels/<name>.png`` (palette PNGs whose indices
  are the Cityscapes label ids). Its images do not all have one size: give ``size`` (DAFormer
  resizes GTA5 to 1280 x 720).

Label ids become the 19 Cityscapes train ids (:data:`TRAIN_CLASSES`), every other id the ignore
value 255; an id outside the dataset's table is an error naming the file. The output zarr holds
``raw`` (3, N, y, x) uint8 RGB, the train ids as the OME-Zarr label image ``labels/classes/0``
(N, y, x) uint8 with the Cityscapes colours, and, in the group's ``masktwins_prepare``
attribute, the sources, the class names and ``class_pixels``: per image, the pixel count of
each train id (for rare-class sampling). ``scale`` resizes every image (bilinear) and label
(nearest) first, e.g. 0.5 for DAFormer's 1024 x 512 Cityscapes; ``size`` (y, x) resizes every
image to that size instead. Images are in natural sort order (Cityscapes: city, then name);
without ``size`` every image of a split must have one size.
"""

from __future__ import annotations

import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MaskTwinsError
from ..io.atomic import swap_in
from ..io.backends import reported_as
from ..io.labels import describe_label_image, label_image_uri
from ..io.volumes import create_volume
from ..scoring.benchmarks import CITYSCAPES_CLASSES, CITYSCAPES_COLOURS
from .real import check_output
from .stacks import natural_key

IGNORE = 255
TRAIN_CLASSES = CITYSCAPES_CLASSES
CITYSCAPES_TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
                        24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
SYNTHIA_TRAIN_IDS = {3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 16: 9, 1: 10, 10: 11,
                     17: 12, 8: 13, 18: 14, 19: 15, 20: 16, 12: 17, 11: 18}


@dataclass(frozen=True)
class SceneLayout:
    """One dataset's published layout and label table: label ids 0..``max_id``, those in
    ``train_ids`` mapped to train ids, the rest to 255."""

    name: str
    train_ids: dict[int, int]
    max_id: int
    sixteen_bit: bool  # labels are 16-bit RGB PNGs, the id in R


CITYSCAPES = SceneLayout("cityscapes", CITYSCAPES_TRAIN_IDS, 33, False)
SYNTHIA = SceneLayout("synthia", SYNTHIA_TRAIN_IDS, 22, True)
GTA5 = SceneLayout("gta5", CITYSCAPES_TRAIN_IDS, 33, False)
SPLITS = ("train", "val", "test")


def _need_folder(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise MaskTwinsError(f"{path}: missing; expected {what}")
    return path


def cityscapes_pairs(root: Path, split: str) -> list[tuple[Path, Path]]:
    """(image, labelIds) files of a Cityscapes split, by city then name."""
    if split not in SPLITS:
        raise MaskTwinsError(f"--split {split!r}: expected one of {', '.join(SPLITS)}")
    layout = "the Cityscapes layout leftImg8bit/<split>/<city>/*_leftImg8bit.png"
    images_root = _need_folder(_need_folder(_need_folder(root, layout) / "leftImg8bit", layout)
                               / split, layout)
    labels_root = _need_folder(_need_folder(root / "gtFine", "gtFine/<split>/<city>/"
                                            "*_gtFine_labelIds.png") / split,
                               "gtFine/<split>/<city>/*_gtFine_labelIds.png")
    pairs = []
    for image in sorted(images_root.glob("*/*_leftImg8bit.png"),
                        key=lambda p: natural_key(f"{p.parent.name}/{p.name}")):
        stem = image.name[: -len("_leftImg8bit.png")]
        label = labels_root / image.parent.name / f"{stem}_gtFine_labelIds.png"
        if not label.is_file():
            raise MaskTwinsError(f"image {image} has no label: {label} is missing")
        pairs.append((image, label))
    if not pairs:
        raise MaskTwinsError(f"{images_root}: no <city>/*_leftImg8bit.png images")
    return pairs


def same_name_pairs(images_root: Path, labels_root: Path) -> list[tuple[Path, Path]]:
    """(image, label) pairs of ``images_root/*.png`` and the label of the same name, by
    name; MaskTwinsError for an image without its label or no image at all."""
    pairs = []
    for image in sorted(images_root.glob("*.png"), key=lambda p: natural_key(p.name)):
        label = labels_root / image.name
        if not label.is_file():
            raise MaskTwinsError(f"image {image} has no label: {label} is missing")
        pairs.append((image, label))
    if not pairs:
        raise MaskTwinsError(f"{images_root}: no *.png images")
    return pairs


def synthia_pairs(root: Path) -> list[tuple[Path, Path]]:
    """(RGB, GT/LABELS) files of SYNTHIA RAND_CITYSCAPES, by name."""
    layout = "the SYNTHIA RAND_CITYSCAPES layout RGB/*.png with GT/LABELS/*.png"
    images_root = _need_folder(_need_folder(root, layout) / "RGB", layout)
    return same_name_pairs(images_root, _need_folder(_need_folder(root / "GT", layout) / "LABELS",
                                                     layout))


def gta5_pairs(root: Path) -> list[tuple[Path, Path]]:
    """(image, label) files of GTA5, by name."""
    layout = "the GTA5 layout images/*.png with labels/*.png"
    images_root = _need_folder(_need_folder(root, layout) / "images", layout)
    return same_name_pairs(images_root, _need_folder(root / "labels", layout))


def read_label_ids(path: Path, layout: SceneLayout) -> np.ndarray:
    """The label ids of one label file as (y, x) integers: 8-bit grey (Cityscapes), or the R
    channel of a 16-bit RGB PNG read at full depth with pypng (SYNTHIA)."""
    with reported_as(f"cannot read label file {path}"):
        if not layout.sixteen_bit:
            from PIL import Image

            with Image.open(path) as img:
                return np.asarray(img)
        import png

        width, height, rows, info = png.Reader(filename=str(path)).asDirect()
        planes = info["planes"]
        data = np.vstack([np.asarray(row, np.uint16) for row in rows]).reshape(height, width, planes)
        return data[..., 0]


def to_train_ids(ids: np.ndarray, layout: SceneLayout, where: Path) -> np.ndarray:
    """Label ids -> uint8 train ids (255 for ids outside the 19 classes); an id outside the
    dataset's table (above ``max_id``, negative, not an integer) is a MaskTwinsError."""
    if ids.ndim != 2 or ids.dtype.kind not in "iu":
        raise MaskTwinsError(f"label file {where}: expected one channel of integer ids, got "
                             f"shape {ids.shape} dtype {ids.dtype}")
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) > layout.max_id):
        found = np.unique(ids[(ids < 0) | (ids > layout.max_id)])
        raise MaskTwinsError(f"label file {where}: ids {', '.join(map(str, found[:8]))} are "
                             f"outside the {layout.name} label table (0..{layout.max_id})")
    table = np.full(layout.max_id + 1, IGNORE, np.uint8)
    for label_id, train_id in layout.train_ids.items():
        table[label_id] = train_id
    return table[ids]


def read_image(path: Path) -> np.ndarray:
    """An RGB image as (3, y, x) uint8 (alpha dropped, palette and grey converted)."""
    from PIL import Image

    with reported_as(f"cannot read image file {path}"), Image.open(path) as img:
        data = np.asarray(img.convert("RGB"))
    return np.ascontiguousarray(np.moveaxis(data, -1, 0))


def scaled(image: np.ndarray, labels: np.ndarray, size: tuple[int, int]):
    """Image (3, y, x) bilinear and labels (y, x) nearest, resized to ``size`` (y, x)."""
    from PIL import Image

    if tuple(labels.shape) == size:
        return image, labels
    rows, cols = size
    image = np.stack([np.asarray(Image.fromarray(c).resize((cols, rows), Image.BILINEAR))
                      for c in image])
    labels = np.asarray(Image.fromarray(labels).resize((cols, rows), Image.NEAREST))
    return image, labels


@dataclass(frozen=True)
class PreparedScenes:
    """What was written: ``out``, image count, (y, x) size and the share of each class's
    pixels among the labelled ones."""

    out: Path
    images: int
    size: tuple[int, int]
    class_share: tuple[float, ...]

    def lines(self) -> list[str]:
        rows, cols = self.size
        shares = ", ".join(f"{name} {100 * s:.1f}%" for name, s in zip(TRAIN_CLASSES, self.class_share)
                           if s > 0)
        return [f"{self.out}: {self.images} images of {cols}x{rows} (3, {self.images}, {rows}, "
                f"{cols}) uint8, labels as train ids; classes: {shares or 'none labelled'}"]


def prepare_scenes(layout: SceneLayout, root: str | Path, out: str | Path, split: str = "train",
                   scale: float = 1.0, overwrite: bool = False, limit: int | None = None,
                   size: tuple[int, int] | None = None) -> PreparedScenes:
    """Write one split of a driving-scene dataset to ``out`` (see the module notes); ``limit``
    keeps the first N images (a quick look); ``size`` (y, x) resizes every image to it."""
    root, out = Path(root).expanduser(), Path(out)
    check_output(out, overwrite)
    if not 0.05 <= scale <= 4.0:
        raise MaskTwinsError(f"--scale {scale:g}: expected a factor in 0.05..4")
    if size is not None and scale != 1.0:
        raise MaskTwinsError("give --scale or --size, not both")
    finders = {"synthia": synthia_pairs, "gta5": gta5_pairs}
    pairs = finders[layout.name](root) if layout.name in finders else cityscapes_pairs(root, split)
    pairs = pairs[:limit] if limit else pairs
    first = read_image(pairs[0][0])
    fixed = size is not None
    size = tuple(size) if fixed else tuple(max(1, int(round(n * scale))) for n in first.shape[1:])
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".tmp-{secrets.token_hex(4)}-{out.name}")
    try:
        class_pixels = _write_split(layout, pairs, staging, None if fixed else first.shape[1:], size)
        _record(staging, layout, root, split, scale, class_pixels)
        swap_in(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    totals = np.asarray(class_pixels, np.float64).sum(axis=0)
    return PreparedScenes(out, len(pairs), size, tuple(totals / max(totals.sum(), 1.0)))


def _write_split(layout: SceneLayout, pairs, staging: Path, source_size, size) -> list[list[int]]:
    """Every image and label into the staging zarr, one at a time; per-image class counts.
    ``source_size`` (y, x) every image must have (None: any, each resized to ``size``)."""
    count, voxel = len(pairs), (1.0, 1.0, 1.0)
    raw = create_volume(f"{staging}/raw", (3, count, *size), np.uint8,
                        (1, 1, min(size[0], 512), min(size[1], 512)), voxel)
    labels = create_volume(label_image_uri(staging), (count, *size), np.uint8,
                           (1, min(size[0], 512), min(size[1], 512)), voxel, fill_value=IGNORE)
    class_pixels = []
    for z, (image_path, label_path) in enumerate(pairs):
        image = read_image(image_path)
        if source_size is not None and tuple(image.shape[1:]) != tuple(source_size):
            raise MaskTwinsError(f"image {image_path} is {image.shape[2]}x{image.shape[1]} but "
                                 f"{pairs[0][0]} is {source_size[1]}x{source_size[0]}; every "
                                 "image of a split must have one size (or give --size WxH)")
        ids = read_label_ids(label_path, layout)
        if tuple(ids.shape) != tuple(image.shape[1:]):
            raise MaskTwinsError(f"label file {label_path} is {ids.shape[-1]}x{ids.shape[0]} but "
                                 f"its image {image_path} is {image.shape[2]}x{image.shape[1]}")
        image, train_ids = scaled(image, to_train_ids(ids, layout, label_path), size)
        raw.write((slice(None), slice(z, z + 1)), image[:, None])
        labels.write((slice(z, z + 1),), train_ids[None])
        counts = np.bincount(train_ids.ravel(), minlength=256)[: len(TRAIN_CLASSES)]
        class_pixels.append([int(c) for c in counts])
    present = [c for c in range(len(TRAIN_CLASSES)) if any(row[c] for row in class_pixels)]
    describe_label_image(staging, present, colours={c: (*CITYSCAPES_COLOURS[c], 255)
                                                    for c in range(len(TRAIN_CLASSES))})
    return class_pixels


def _record(staging: Path, layout: SceneLayout, root: Path, split: str, scale: float,
            class_pixels: list[list[int]]) -> None:
    """Provenance and class statistics on the zarr group."""
    import zarr

    group = zarr.open_group(str(staging), mode="r+", use_consolidated=False)
    group.attrs["masktwins_prepare"] = {
        "dataset": layout.name, "root": str(root.resolve()),
        "split": split if layout is CITYSCAPES else "all", "scale": scale,
        "classes": list(TRAIN_CLASSES), "ignore_label": IGNORE, "class_pixels": class_pixels,
    }
