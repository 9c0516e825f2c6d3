"""``masktwins prepare stack|vnc3|cdeep3m|lucchi|mitoem``: real EM stacks -> canonical zarr.

Every output is a zarr group ``NAME.zarr`` with

* ``raw``: the images, (z, y, x), dtype as read (uint8 or uint16 for EM), chunks (1, 256, 256);
  with ``--rgb`` colour images as channel-first (3, z, y, x), chunks (1, 1, 256, 256);
* ``labels`` (when labels are given): uint8 class indices of the same shape and chunks;
* OME-Zarr 0.5 multiscales metadata and ``voxel_size`` attributes (z, y, x nm) for both, and a
  ``masktwins_prepare`` attribute on the group recording the sources and the label decoding.

Voxel size: ``--voxel-size``, else the preset's, else the source metadata (multi-page TIFF,
HDF5, zarr), else 1.0 nm with a note. ``--resample-to Z,Y,X`` (nm) resamples raw linearly (with
anti-aliasing when shrinking) and labels by nearest neighbour to
floor(n * source / target + 0.5) voxels per axis; the written voxel size is exactly the target.

All inputs of all outputs are checked (files found, slice counts, shapes) before pixels are
read; each output is written into a hidden temporary zarr beside it and moved into place only
when every output is complete, so an error leaves nothing behind (and, without ``--overwrite``,
an existing output is never touched).
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MaskTwinsError
from ..io.atomic import swap_in
from ..io.backends import zarr_node_type
from ..io.labels import write_label_image
from ..io.volumes import write_volume
from .presets import StackJob, preset_jobs
from .stacks import (
    IGNORE_VALUE,
    LabelDecoder,
    StackSource,
    read_stack,
    resample,
    resampled_shape,
    resolve_stack,
    shape_text,
)

CHUNK_YX = 256


@dataclass(frozen=True)
class PreparedStack:
    """One written zarr: ``shape`` (z, y, x voxels) and ``voxel_size`` (z, y, x nm) as written,
    ``source_shape`` as read, ``foreground`` = fraction of label voxels > 0 and not the ignore
    value 255 (None: no labels), ``channels`` of the images (3 with --rgb)."""

    out: Path
    shape: tuple[int, int, int]
    dtype: str
    voxel_size: tuple[float, float, float]
    voxel_from: str
    source_shape: tuple[int, int, int]
    images: str
    labels: str | None
    decoding: str | None
    foreground: float | None
    notes: tuple[str, ...] = ()
    channels: int = 1

    def summary(self) -> str:
        """One line: where, shape, dtype, voxel size and its origin, labels."""
        voxel = "x".join(f"{v:g}" for v in self.voxel_size)
        resampled = f" (from {shape_text(self.source_shape)})" if self.shape != self.source_shape else ""
        colour = f" x {self.channels} channels" if self.channels > 1 else ""
        text = (f"{self.out}: raw {shape_text(self.shape)}{resampled}{colour} {self.dtype}, "
                f"voxel {voxel} nm ({self.voxel_from})")
        if self.foreground is not None:
            text += f", labels {100 * self.foreground:.1f}% foreground ({self.decoding})"
        return text + ("" if self.labels else ", no labels")


@dataclass(frozen=True)
class PreparedReal:
    """What ``prepare stack`` or a preset wrote: one :class:`PreparedStack` per zarr."""

    name: str
    stacks: tuple[PreparedStack, ...]

    def lines(self) -> list[str]:
        """Report lines for the CLI: one summary per zarr, then its notes."""
        lines = []
        for stack in self.stacks:
            lines += [stack.summary()] + [f"  note: {note}" for note in stack.notes]
        return lines


Triple = tuple[float, float, float]


def check_triple(values: Sequence[float] | None, option: str) -> Triple | None:
    """Three positive finite nm (z, y, x) as floats; MaskTwinsError naming ``option`` otherwise."""
    if values is None:
        return None
    triple = tuple(float(v) for v in values)
    if len(triple) != 3 or not all(0 < v < float("inf") for v in triple):
        raise MaskTwinsError(f"{option} {tuple(values)}: expected three positive numbers "
                             "(z, y, x) in nm")
    return triple  # type: ignore[return-value]


def make_decoder(label_value: int | None,
                 label_map: Sequence[tuple[int, int]] | None) -> LabelDecoder:  # fmt: skip
    """The decoder of ``--label-value`` / ``--label-map`` (at most one of them); ``label_map``:
    (stored value, class) pairs."""
    if label_value is not None and label_map is not None:
        raise MaskTwinsError("give either --label-value or --label-map, not both")
    if label_map is not None:
        return LabelDecoder(mapping=tuple((int(v), int(c)) for v, c in label_map))
    return LabelDecoder(value=label_value) if label_value is not None else LabelDecoder()


# ----------------------------------------------------------------------------------- checking
def check_output(out: Path, overwrite: bool) -> None:
    """The output must be named *.zarr and be new, or (with overwrite) a zarr group."""
    if out.suffix.lower() != ".zarr":
        raise MaskTwinsError(f"output {out}: the name must end in .zarr")
    if not (out.exists() or out.is_symlink()):
        return
    if not overwrite:
        raise MaskTwinsError(f"{out} already exists: choose another name or pass --overwrite "
                             "(nothing was written)")
    if not out.is_dir() or zarr_node_type(out) != "group":
        raise MaskTwinsError(f"{out} exists and is not a zarr group; refusing to replace it")


def _spec_paths(spec) -> list[Path]:
    """The files or folders a stack spec reads: each path of a tuple, or the part of a URI or
    glob before its HDF5 dataset or first wildcard."""
    if isinstance(spec, tuple):
        return [Path(p) for p in spec]
    text = str(spec)
    head, sep, _ = text.partition(":")
    if sep and head.lower().endswith((".h5", ".hdf5", ".hdf")):
        text = head
    parts = []
    for part in Path(text).parts:
        if any(c in part for c in "*?["):
            break
        parts.append(part)
    return [Path(*parts)] if parts else []


def _check_not_reading_output(job: StackJob) -> None:
    """Writing the output must never delete an input: refuse a job that reads from inside (or
    from) its own output (``prepare stack X.zarr --images X.zarr/raw --overwrite``)."""
    out = job.out.resolve()
    for option, spec in (("--images", job.images), ("--labels", job.labels)):
        for path in _spec_paths(spec) if spec is not None else []:
            resolved = path.resolve()
            if resolved == out or out in resolved.parents:
                raise MaskTwinsError(f"{option} {spec} lies inside the output {job.out}: writing it "
                                     "would replace its own input; choose another output name "
                                     "(nothing was written)")


def _resolve_job(job: StackJob) -> tuple[StackSource, StackSource | None]:
    """Resolve the image and label slices of a job and check that they pair up."""
    images = resolve_stack(job.images)
    if job.labels is None:
        return images, None
    labels = resolve_stack(job.labels)
    if labels.depth != images.depth:
        raise MaskTwinsError(f"image and label slice counts differ: {images.depth} images in "
                             f"{images.spec}, {labels.depth} labels in {labels.spec}")
    if labels.slice_shape != images.slice_shape:
        raise MaskTwinsError(f"image slices are {shape_text(images.slice_shape)} ({images.spec}) "
                             f"but label slices are {shape_text(labels.slice_shape)} ({labels.spec})")
    return images, labels


def _voxel_size(job: StackJob, images: StackSource) -> tuple[tuple[float, float, float], str, str]:
    """(voxel size nm, where it comes from, note or '')."""
    if job.voxel_size is not None:
        return job.voxel_size, job.voxel_from or "--voxel-size", ""
    if images.voxel_size is not None:
        return images.voxel_size, "source metadata", ""
    if job.resample_to is not None:
        raise MaskTwinsError(f"--resample-to needs the voxel size of {images.spec}, which its "
                             "files do not record; pass --voxel-size Z,Y,X")
    return (1.0, 1.0, 1.0), "unknown", (f"the voxel size of {images.spec} is unknown: wrote "
                                        "1.0 nm; pass --voxel-size Z,Y,X (nm) to record it")


# ------------------------------------------------------------------------------------ writing
def _stage(job: StackJob, images: StackSource, labels: StackSource | None,
           staging: Path) -> PreparedStack:  # fmt: skip
    """Read, decode, resample and write one job into the zarr ``staging``."""
    voxel, voxel_from, note = _voxel_size(job, images)
    raw = read_stack(images, rgb=job.rgb)  # (z, y, x), or (3, z, y, x) with rgb
    source_shape = tuple(raw.shape[-3:])
    label_array = None if labels is None else read_stack(labels, job.decoder)
    if job.resample_to is not None:
        shape = resampled_shape(source_shape, voxel, job.resample_to)
        raw = np.stack([resample(c, shape, order=1) for c in raw]) if job.rgb else \
            resample(raw, shape, order=1)
        label_array = None if label_array is None else resample(label_array, shape, order=0)
        source = "x".join(f"{v:g}" for v in voxel)
        voxel, voxel_from = job.resample_to, f"--resample-to; source {source} nm from {voxel_from}"
    spatial = tuple(raw.shape[-3:])
    chunks = (1, min(spatial[1], CHUNK_YX), min(spatial[2], CHUNK_YX))
    write_volume(f"{staging}/raw", raw, voxel, chunks=(1, *chunks) if job.rgb else chunks)
    foreground = None
    if label_array is not None:
        write_label_image(staging, label_array, voxel, chunks=chunks)
        counted = np.count_nonzero(label_array != IGNORE_VALUE)
        labelled = np.count_nonzero((label_array > 0) & (label_array != IGNORE_VALUE))
        foreground = float(labelled) / max(counted, 1)
    decoding = None if labels is None else job.decoder.describe()
    _record(staging, job, images, labels, decoding)
    return PreparedStack(job.out, spatial, str(raw.dtype), tuple(voxel), voxel_from,
                         source_shape, images.spec, None if labels is None else labels.spec,
                         decoding, foreground, (note,) if note else (),
                         3 if job.rgb else 1)  # fmt: skip


def _record(staging: Path, job: StackJob, images: StackSource, labels: StackSource | None,
            decoding: str | None) -> None:  # fmt: skip
    """Provenance on the zarr group: sources, slice counts and label decoding."""
    import zarr

    group = zarr.open_group(str(staging), mode="r+", use_consolidated=False)
    group.attrs["masktwins_prepare"] = {
        "images": images.spec, "labels": None if labels is None else labels.spec,
        "slices": images.depth, "label_decoding": decoding,
    }  # fmt: skip


def run_jobs(name: str, jobs: Sequence[StackJob], overwrite: bool = False) -> PreparedReal:
    """Check every job, stage every output, then move them all into place."""
    outs = [job.out for job in jobs]
    if len(set(outs)) != len(outs):
        raise MaskTwinsError(f"two outputs share a name: {outs}")
    for job in jobs:
        _check_not_reading_output(job)
    for out in outs:
        check_output(out, overwrite)
    resolved = [_resolve_job(job) for job in jobs]
    new_dirs = [out.parent for out in outs if not out.parent.exists()]
    staged: list[tuple[Path, Path]] = []
    try:
        results = []
        for job, (images, labels) in zip(jobs, resolved):
            job.out.parent.mkdir(parents=True, exist_ok=True)
            staging = job.out.with_name(f".tmp-{secrets.token_hex(4)}-{job.out.name}")
            staged.append((staging, job.out))
            results.append(_stage(job, images, labels, staging))
        for staging, out in staged:
            swap_in(staging, out)
        return PreparedReal(name, tuple(results))
    finally:
        for staging, _ in staged:
            shutil.rmtree(staging, ignore_errors=True)
        for folder in new_dirs:
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()


def prepare_stack(out: str | Path, images: str | Path, labels: str | Path | None = None,
                  label_value: int | None = None,
                  label_map: Sequence[tuple[int, int]] | None = None,
                  voxel_size: Triple | None = None, resample_to: Triple | None = None,
                  overwrite: bool = False, rgb: bool = False) -> PreparedReal:  # fmt: skip
    """``masktwins prepare stack``: one image stack (and labels) -> ``out`` (a .zarr group).

    ``voxel_size``/``resample_to`` are (z, y, x) in nm; ``label_value`` (value -> 1) or
    ``label_map`` ((value, class) pairs) decode labels (default: they must already be class
    indices 0..15, or 255 for ignored pixels); ``rgb`` keeps colour slices as (3, z, y, x).
    """
    decoder = make_decoder(label_value, label_map)
    if labels is None and (label_value is not None or label_map is not None):
        raise MaskTwinsError("--label-value/--label-map need --labels")
    voxel, target = check_triple(voxel_size, "--voxel-size"), check_triple(resample_to, "--resample-to")
    job = StackJob(Path(out), str(images), None if labels is None else str(labels), decoder,
                   voxel, "--voxel-size" if voxel else "", target, rgb)  # fmt: skip
    return run_jobs("stack", [job], overwrite)


def prepare_preset(name: str, root: str | Path, out: str | Path, voxel_size: Triple | None = None,
                   resample_to: Triple | None = None, overwrite: bool = False,
                   **options: str) -> PreparedReal:  # fmt: skip
    """``masktwins prepare <preset> DIR OUT``: a published layout (see :mod:`.presets`);
    ``voxel_size``/``resample_to``: (z, y, x) nm."""
    voxel, target = check_triple(voxel_size, "--voxel-size"), check_triple(resample_to, "--resample-to")
    return run_jobs(name, preset_jobs(name, root, out, voxel, target, **options), overwrite)
