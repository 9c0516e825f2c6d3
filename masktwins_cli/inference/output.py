"""Where ``infer`` writes: a zarr array filled inside a staging folder next to the output
container (see :mod:`masktwins_cli.inference.records`) and moved into place only when every block
is written, so an interrupted run leaves no output that looks complete.

Layout: a segmentation model writes its foreground probability with the input's axes ((z, y, x)
or (y, x)); a synapse model writes both sigmoid channels channel-first, (2, z, y, x) = (pre,
post), chunked (1, cz, cy, cx), with the input's voxel size and offset."""

from __future__ import annotations

import glob
import itertools
import os
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MaskTwinsError
from ..io.atomic import fsync_path
from ..io.backends import (
    ParsedUri,
    open_zarr_array,
    parse_uri,
    zarr_node_type,
)
from ..io.layout import spatial_shape
from ..io.ome import update_ome_multiscales
from .records import ARRAY, STAGING_SUFFIX, claim_path

DEFAULT_DATASET = "probabilities"
# zarr's LocalStore writes a chunk to "<chunk>.<uuid4 hex>.partial" and renames it; a process
# killed in between leaves that file behind.
_ZARR_TEMPORARY = re.compile(r".*\.[0-9a-f]{32}\.partial")


@dataclass(frozen=True)
class OutputTarget:
    """Final location (container + dataset) and the staging folder used while writing."""

    container: Path
    dataset: str
    staging_root: Path
    channels: int = 0
    """0: one value per voxel with the input's axes; C > 0: C channels first (synapse: 2, or the
    K class probabilities)."""
    dtype: str = "float32"
    """float32 probabilities, or uint8 for a class map."""

    @property
    def uri(self) -> str:
        return f"{self.container}/{self.dataset}"

    @property
    def exists(self) -> bool:
        """Whether the final array is already there."""
        return (self.container / self.dataset).exists()

    @property
    def location(self) -> ParsedUri:
        """The final array as a parsed zarr URI."""
        return ParsedUri("zarr", self.container, self.dataset)

    @classmethod
    def prepare(cls, output: ParsedUri, source: ParsedUri, channels: int = 0,
                dtype: str = "float32") -> OutputTarget:
        """Check the (parsed) output URI before any work: zarr, and not the ``source`` input.
        ``channels``, ``dtype``: see the fields.

        The staging folder is a fixed sibling of the container, named after container and
        dataset (``.pred.zarr.probabilities.partial``), so a rerun of the same command finds it.
        """
        if output.kind != "zarr":
            raise MaskTwinsError(f"output {output}: infer writes zarr; name a .zarr container, "
                                 "e.g. pred.zarr/probabilities")
        dataset = output.dataset or DEFAULT_DATASET
        name = f".{output.container.name}.{dataset.replace('/', '.')}{STAGING_SUFFIX}"
        target = cls(output.container, dataset, output.container.parent / name, int(channels),
                     str(dtype))
        if source.container.resolve() == target.container.resolve() and source.dataset == dataset:
            raise MaskTwinsError(f"output {output} is the input volume; inputs are never modified")
        final = target.container / dataset
        for folder in (final, *final.parents):
            if folder.exists() and not folder.is_dir():
                raise MaskTwinsError(f"output {output}: {folder} is a file, not a folder (nothing "
                                     "was written)")
        return target

    def refuse_existing(self) -> None:
        """MaskTwinsError: the output exists and may not be replaced."""
        raise MaskTwinsError(f"output {self.uri} already exists: pass --overwrite to replace it "
                             "(nothing was written)")

    def made_from(self, fingerprint: str) -> bool:
        """Whether the existing output was committed from work with this manifest fingerprint."""
        try:
            attrs = open_zarr_array(self.location).attrs.asdict()
        except (MaskTwinsError, OSError, ValueError):
            return False
        provenance = attrs.get("masktwins")
        return isinstance(provenance, dict) and provenance.get("fingerprint") == fingerprint

    @staticmethod
    def chunks_for(shape_zyx: Sequence[int]) -> tuple[int, int, int]:
        """Output chunks: up to 8 x 256 x 256 voxels."""
        return tuple(min(n, c) for n, c in zip(shape_zyx, (8, 256, 256)))

    def layout(self, volume, chunks_zyx: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(shape, chunks) of the output array for an input ``volume``: its stored spatial shape
        (a channel-first input's channels dropped), with ``channels`` leading channels (chunk 1
        along them) when ``channels`` > 0."""
        shape, chunks = spatial_shape(volume.shape), self.stored_chunks(volume, chunks_zyx)
        if self.channels:
            return (self.channels, *shape), (1, *chunks)
        return shape, chunks

    def create(self, folder: Path, volume, chunks_zyx: Sequence[int], provenance: dict) -> None:
        """The empty output array in the zarr container ``folder``: ``dtype`` values, the
        input's shape (see :meth:`layout`), voxel size and offset.

        ``provenance`` (checkpoint, input, resolved recipe, fingerprint) is stored in the array's
        attributes under ``masktwins``, so every prediction carries the recipe that made it.
        """
        from ..io.volumes import create_volume

        staged = ParsedUri("zarr", folder, self.dataset)
        shape, chunks = self.layout(volume, chunks_zyx)
        create_volume(staged, shape, np.dtype(self.dtype), chunks, volume.voxel_size, volume.offset)
        open_zarr_array(staged, writable=True).attrs.update({"masktwins": provenance})

    @staticmethod
    def stored_chunks(volume, chunks_zyx: Sequence[int]) -> tuple[int, ...]:
        """Chunks along the stored axes: (z, y, x), or (y, x) for a 2-D image."""
        return tuple(chunks_zyx) if len(spatial_shape(volume.shape)) == 3 else tuple(chunks_zyx[1:])

    def commit(self, claimed: Path) -> None:
        """Move the finished array of a claimed staging folder into place (replacing an old one
        only now), then tidy up (see :meth:`complete_commit`).

        Order: old array aside (``.<name>.old-<pid>``), new array in (one rename), then OME
        metadata, old array and claim folder deleted. A process killed before the new array is
        in leaves the claim holding it (the next run commits it again); after, a claim without
        an array (the next run only tidies up, see :meth:`settle`).
        """
        staged = claimed / ARRAY
        sweep_temporary_chunks(staged / self.dataset)
        final = self.container / self.dataset
        if not self.container.exists():
            os.replace(staged, self.container)
        else:
            if final.exists():
                os.replace(final, final.with_name(f".{final.name}.old-{os.getpid()}"))
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged / self.dataset, final)
        fsync_path(final.parent)
        self.complete_commit(claimed)

    def complete_commit(self, claimed: Path) -> None:
        """The steps of a commit after the new array is in place (safe to repeat): its OME
        metadata, old arrays set aside by (killed) commits and the claim folder deleted."""
        final = self.container / self.dataset
        if final.is_dir():
            from ..io.layout import axis_names
            from ..io.volumes import open_volume

            written = open_volume(self.location)
            update_ome_multiscales(self.location, axis_names(written.ndim), written.voxel_size,
                                   written.offset)
        for old in final.parent.glob(f".{glob.escape(final.name)}.old-*"):
            shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(claimed, ignore_errors=True)
        fsync_path(claimed.parent)

    def settle(self, staging_root: Path) -> str:
        """Finish what a process killed while committing this output left, before a new run
        looks at the output (call only while no other process can be committing it).

        A claim folder that still holds its array goes back to the staging name, so the run
        commits it again ('recommit'); one whose array is already in place is tidied up
        ('completed'); '' when there is nothing to do.
        """
        claimed = claim_path(staging_root)
        if not claimed.is_dir():
            return ""
        if zarr_node_type(claimed / ARRAY / self.dataset) == "array":
            if staging_root.exists():
                raise MaskTwinsError(f"{claimed} and {staging_root} both exist; an interrupted "
                                     "commit cannot be told apart: pass --restart to discard both")
            os.rename(claimed, staging_root)
            return "recommit"
        self.complete_commit(claimed)
        return "completed"


def chunk_flusher(uri: str) -> Callable[[tuple[slice, ...]], None]:
    """A function that fsyncs the chunk files (and their folders) a box of the zarr array at
    ``uri`` covers; boxes are in the array's stored axes, in voxels."""
    parsed = parse_uri(uri)
    array = open_zarr_array(parsed)
    folder = parsed.container / parsed.dataset
    chunks, encode = array.chunks, array.metadata.encode_chunk_key

    def flush(box: tuple[slice, ...]) -> None:
        ranges = [range(s.start // c, -(-s.stop // c)) for s, c in zip(box, chunks)]
        paths = [folder / encode(coords) for coords in itertools.product(*ranges)]
        for path in [*paths, *{path.parent for path in paths}]:
            fsync_path(path)

    return flush


def sweep_temporary_chunks(folder: Path) -> int:
    """Delete zarr's temporary chunk files left by killed writers below ``folder``; the count."""
    removed = 0
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            if _ZARR_TEMPORARY.fullmatch(name):
                os.unlink(os.path.join(dirpath, name))
                removed += 1
    return removed
