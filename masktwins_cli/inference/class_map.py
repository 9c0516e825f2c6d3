"""``infer.classes = 'both'``: the class map beside the class probabilities.

The probabilities (K, z, y, x) are predicted and committed as any output; the class map, their
argmax per voxel (uint8, (z, y, x)), is then derived from them slab by slab into
``<dataset>_map`` of the same container, written atomically (a hidden temporary array renamed
into place). It records the fingerprint of the work that made the probabilities, so a rerun
finds it complete, and a map killed half-way is simply derived again: it is a pure function of
the committed probabilities.
"""

from __future__ import annotations

import numpy as np

from ..errors import MaskTwinsError
from ..io.backends import ParsedUri, open_zarr_array
from ..io.volumes import WritableVolume, open_volume, write_volume_blocks

MAP_SUFFIX = "_map"


def map_location(probabilities: ParsedUri) -> ParsedUri:
    """Where the class map of a probabilities output goes: ``<dataset>_map`` beside it."""
    return ParsedUri("zarr", probabilities.container, f"{probabilities.dataset}{MAP_SUFFIX}")


def map_made_from(location: ParsedUri, fingerprint: str) -> bool:
    """Whether a class map exists at ``location`` derived from work with this fingerprint."""
    try:
        provenance = open_zarr_array(location).attrs.asdict().get("masktwins")
    except (MaskTwinsError, OSError, ValueError):
        return False
    return isinstance(provenance, dict) and provenance.get("fingerprint") == fingerprint


def check_map_target(location: ParsedUri, fingerprint: str, overwrite: bool) -> None:
    """Before any work: a class map already at ``location`` that this work did not make is
    refused unless ``overwrite``."""
    if not overwrite and (location.container / location.dataset).exists() \
            and not map_made_from(location, fingerprint):
        raise MaskTwinsError(f"output {location} (the class map of infer.classes = 'both') "
                             "already exists: pass --overwrite to replace it (nothing was written)")


def derive_class_map(probabilities: ParsedUri, location: ParsedUri, provenance: dict,
                     slab: int | None = None) -> None:
    """Write the argmax over the class axis of ``probabilities`` (K, z, y, x) to ``location``
    (uint8 (z, y, x), the probabilities' spatial chunks, voxel size and offset), ``slab``
    sections of z at a time (default: one chunk); ``provenance`` (with the fingerprint) goes
    into the map's ``masktwins`` attribute. Replaces an existing map."""
    source = open_volume(probabilities, ndim=4)
    spatial, chunks = tuple(source.shape[1:]), tuple(source.chunks[1:])
    step = slab or chunks[0]

    def fill(target: WritableVolume) -> None:
        for start in range(0, spatial[0], step):
            box = (slice(start, min(start + step, spatial[0])),)
            classes = source[(slice(None), *box)].argmax(axis=0).astype(np.uint8)
            target.write(box, classes)

    write_volume_blocks(location, spatial, np.uint8, chunks, source.voxel_size, source.offset,
                        fill, overwrite=True,
                        attributes={"masktwins": {**provenance, "derived": f"argmax of {probabilities}"}})
