"""``masktwins detect``: a 2-channel probability volume -> a synapse point table on disk.

Input: one (2, Z, Y, X) volume (channel 0 pre, 1 post; the synapse ``infer`` output) or two
(Z, Y, X) volumes, probabilities in [0, 1]. Detection runs block by block
(:func:`~masktwins_cli.synapse.detection.detect_synapses_blockwise`, exact across block borders).
Output: the point table in local voxel coordinates of the volume, CSV (``.csv``) or the WASP-SYN
HDF5 layout (``.h5``, ``pre`` N x 3, ``post`` M x 4) with ``offset`` (voxels) added. Everything is
checked and detected before the table is written (atomically), so an error leaves nothing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import MaskTwinsError
from ..io.volumes import Volume, open_volume
from ..synapse.detection import DetectionSettings, detect_synapses_blockwise
from ..synapse.points import HDF5_SUFFIXES, SynapsePoints, write_points

BLOCK_TARGET = 128  # voxels per axis of a default block (rounded to whole chunks)


@dataclass(frozen=True)
class DetectionRun:
    """What ``detect`` wrote: the table, the (Z, Y, X) shape scanned, blocks and seconds."""

    output: Path
    points: SynapsePoints
    source: str
    shape: tuple[int, ...]
    blocks: int
    seconds: float

    def summary(self) -> str:
        return (f"wrote {self.output}: {self.points.n_pre} pre, {self.points.n_post} post points "
                f"from {self.source} ({'x'.join(map(str, self.shape))}, {self.blocks} blocks, "
                f"{self.seconds:.1f} s)")


def open_probabilities(probabilities: str | None, pre: str | None = None,
                       post: str | None = None) -> tuple[Volume | tuple[Volume, Volume], str]:
    """The maps to detect on and how to name them: a (2, Z, Y, X) volume or a (pre, post) pair."""
    if probabilities is not None and (pre or post):
        raise MaskTwinsError("give either PROBABILITIES (a 2-channel volume) or --pre and --post, "
                             "not both")
    if probabilities is None:
        if not (pre and post):
            raise MaskTwinsError("give PROBABILITIES (a (2, z, y, x) volume) or both --pre and "
                                 "--post (two (z, y, x) volumes)")
        maps = (open_volume(pre, ndim=3), open_volume(post, ndim=3))
        if maps[0].shape != maps[1].shape:
            raise MaskTwinsError(f"{post}: shape {maps[1].shape} differs from the --pre volume "
                                 f"{pre} {maps[0].shape}")
        return maps, f"{pre} + {post}"
    volume = open_volume(probabilities)
    if volume.ndim != 4:
        raise MaskTwinsError(f"{probabilities}: shape {volume.shape}; expected (2, z, y, x) "
                             "(channels pre, post), or pass two (z, y, x) maps with --pre/--post")
    if volume.shape[0] != 2:
        raise MaskTwinsError(f"{probabilities}: {volume.shape[0]} channels (shape {volume.shape}); "
                             "expected 2 (pre, post)")
    return volume, probabilities


def default_block(chunks: Sequence[int]) -> tuple[int, int, int]:
    """Whole chunks per axis, about :data:`BLOCK_TARGET` voxels: (z, y, x)."""
    return tuple(c * max(1, round(BLOCK_TARGET / c)) for c in chunks[-3:])  # type: ignore[return-value]


def _check_output(output: Path, offset: Sequence[float] | None, overwrite: bool) -> None:
    suffix = output.suffix.lower()
    if suffix != ".csv" and suffix not in HDF5_SUFFIXES:
        raise MaskTwinsError(f"{output}: the point table must end in .csv or .h5 (WASP-SYN layout)")
    if offset is not None and suffix == ".csv":
        raise MaskTwinsError(f"{output}: --offset applies to WASP-SYN .h5 output only (CSV tables "
                             "hold local coordinates)")
    if (output.exists() or output.is_symlink()) and not overwrite:
        raise MaskTwinsError(f"{output} already exists: choose another name or pass --overwrite "
                             "(nothing was written)")


def detect_to_file(probabilities: str | None, output: str | Path, settings: DetectionSettings,
                   pre: str | None = None, post: str | None = None,
                   block_shape: Sequence[int] | None = None, offset: Sequence[float] | None = None,
                   overwrite: bool = False) -> DetectionRun:
    """Detect synapses in the maps and write the table to ``output`` (module docstring)."""
    output = Path(output)
    _check_output(output, offset, overwrite)
    maps, source = open_probabilities(probabilities, pre, post)
    first = maps[0] if isinstance(maps, tuple) else maps
    block = tuple(block_shape) if block_shape is not None else default_block(first.chunks)
    shape = tuple(first.shape[-3:])
    started = time.perf_counter()
    count = [0]
    try:
        points = detect_synapses_blockwise(maps, block, settings,
                                           lambda done, total: count.__setitem__(0, total))
    except MaskTwinsError as err:
        message = str(err)
        raise MaskTwinsError(message if source in message else f"{source}: {message}") from None
    output.parent.mkdir(parents=True, exist_ok=True)
    write_points(output, points, offset if offset is not None else (0, 0, 0))
    return DetectionRun(output, points, source, shape, count[0], time.perf_counter() - started)
