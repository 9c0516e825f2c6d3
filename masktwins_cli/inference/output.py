"""Where ``infer`` writes: a zarr array staged in a hidden sibling container, moved into place
only when every block is written, so an interrupted run leaves no output that looks complete."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MaskTwinsError
from ..io.uri import open_zarr_array, parse_uri, update_ome_multiscales

DEFAULT_DATASET = "probabilities"


@dataclass(frozen=True)
class OutputTarget:
    """Final location (container + dataset) and the staging container used while writing."""

    container: Path
    dataset: str
    staging_root: Path

    @property
    def uri(self) -> str:
        return f"{self.container}/{self.dataset}"

    @classmethod
    def prepare(cls, output_uri: str, input_uri: str, overwrite: bool) -> OutputTarget:
        """Check the output URI before any work: zarr, not the input, not already there."""
        parsed = parse_uri(output_uri)
        if parsed.kind != "zarr":
            raise MaskTwinsError(f"output {output_uri}: infer writes zarr; name a .zarr container, "
                                 "e.g. pred.zarr/probabilities")
        dataset = parsed.dataset or DEFAULT_DATASET
        target = cls(parsed.container, dataset,
                     parsed.container.parent / f".{parsed.container.stem}.partial-{os.getpid()}.zarr")
        source = parse_uri(input_uri)
        if source.container.resolve() == target.container.resolve() and source.dataset == dataset:
            raise MaskTwinsError(f"output {output_uri} is the input volume; inputs are never modified")
        if (target.container / dataset).exists() and not overwrite:
            raise MaskTwinsError(f"output {target.uri} already exists: pass --overwrite to replace it "
                                 "(nothing was written)")
        return target

    @staticmethod
    def chunks_for(shape_zyx: Sequence[int]) -> tuple[int, int, int]:
        """Output chunks: up to 8 x 256 x 256 voxels."""
        return tuple(min(n, c) for n, c in zip(shape_zyx, (8, 256, 256)))

    def create(self, volume, chunks_zyx: Sequence[int], provenance: dict):
        """The staging array: float32 probabilities, the input's shape, voxel size and offset.

        ``provenance`` (checkpoint, input, resolved recipe) is stored in the array's attributes
        under ``masktwins``, so every prediction carries the recipe that made it.
        """
        from ..io.volumes import create_volume

        shutil.rmtree(self.staging_root, ignore_errors=True)
        chunks = tuple(chunks_zyx) if len(volume.shape) == 3 else tuple(chunks_zyx[1:])
        uri = f"{self.staging_root}/{self.dataset}"
        writer = create_volume(uri, tuple(volume.shape), np.float32, chunks, volume.voxel_size,
                               volume.offset)
        open_zarr_array(parse_uri(uri), writable=True).attrs.update({"masktwins": provenance})
        return writer

    def commit(self) -> None:
        """Move the finished array into place (replacing an old one only now)."""
        if not self.container.exists():
            os.replace(self.staging_root, self.container)
            return
        final = self.container / self.dataset
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        if final.exists():
            os.replace(final, old)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.staging_root / self.dataset, final)
        shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(self.staging_root, ignore_errors=True)
        from ..io.volumes import axis_names, open_volume

        written = open_volume(self.uri)
        update_ome_multiscales(parse_uri(self.uri), axis_names(written.ndim), written.voxel_size,
                               written.offset)
