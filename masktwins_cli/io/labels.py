"""Class ids written as an OME-Zarr label image of an image container (``labels/<name>/0``),
as viewers (napari) and the spec's validators expect."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .backends import reported_as
from .ome import set_ome_attribute
from .volumes import Volume, write_volume

LABEL_IMAGE = "classes"
"""Name of the label image ``prepare`` writes (``x.zarr/labels/classes/0``; ``x.zarr/labels``
names it too)."""
LABEL_COLOURS = ((0, 0, 0, 0), (255, 64, 64, 255), (64, 160, 255, 255), (80, 220, 80, 255),
                 (255, 200, 40, 255), (200, 80, 255, 255), (40, 220, 220, 255))


def write_label_image(container: str | Path, array: np.ndarray, voxel_size: tuple[float, ...],
                      offset: tuple[float, ...] | None = None, chunks: tuple[int, ...] | None = None,
                      name: str = LABEL_IMAGE, overwrite: bool = False) -> Volume:  # fmt: skip
    """Write class ids as an OME-Zarr label image of the image in ``container``:
    ``labels/<name>/0`` (the array, with its multiscales in ``labels/<name>``), the
    ``image-label`` metadata (colours of the classes, the source image two levels up) and the
    ``labels`` group listing it, as viewers (napari) and validators expect."""
    container = Path(container)
    written = write_volume(label_image_uri(container, name), array, voxel_size, offset, chunks,
                           overwrite)
    describe_label_image(container, np.unique(array), name)
    return written


def label_image_uri(container: str | Path, name: str = LABEL_IMAGE) -> str:
    """The URI of a label image's full-resolution array (for writing it block by block; then
    call :func:`describe_label_image`)."""
    return f"{Path(container)}/labels/{name}/0"


def describe_label_image(container: str | Path, values, name: str = LABEL_IMAGE,
                         colours: dict[int, tuple[int, int, int, int]] | None = None) -> None:
    """The OME-Zarr metadata of the label image ``name`` already written in ``container``: its
    ``image-label`` (a colour per class value found among ``values``, 1..255, from ``colours``
    or a default palette; the source image two levels up) and the ``labels`` group listing it."""
    container = Path(container)
    present = sorted({int(v) for v in values if 0 < int(v) < 256})[:64]
    palette = colours or {}
    rgba = [{"label-value": v, "rgba": list(palette.get(v) or
                                           LABEL_COLOURS[(v - 1) % (len(LABEL_COLOURS) - 1) + 1])}
            for v in present]
    with reported_as(f"cannot write the label metadata of '{container}'"):
        set_ome_attribute(container, f"labels/{name}", "image-label",
                          {"colors": rgba, "source": {"image": "../../"}})
        set_ome_attribute(container, "labels", "labels", [name])
