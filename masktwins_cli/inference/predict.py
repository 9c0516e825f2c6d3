"""``masktwins infer``: blockwise sliding-window prediction of a volume into chunked zarr.

The output is cut into blocks aligned to its chunk grid. Each block is read with a halo of half
a window (so windows at the block border see real context), predicted with Gaussian-blended
sliding windows, and only its inner region is written. No step holds the whole volume. The
output is written into a temporary container and moved into place at the end, so an interrupted
run never leaves an output that looks complete.
"""

from __future__ import annotations

import itertools
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config.recipe import apply_overrides, recipe_from_dict, recipe_to_dict
from ..config.schema import Recipe
from ..data.normalization import intensity_stats, normalize, strided_sample
from ..errors import MaskTwinsError
from ..io.checkpoints import load_checkpoint
from ..training.model_setup import build_from_recipe, load_weights, resolve_device
from .output import OutputTarget
from .windows import predict_block


@dataclass(frozen=True)
class InferResult:
    """The written output."""

    output: str
    shape: tuple[int, ...]
    blocks: int
    seconds: float
    device: str


def load_for_inference(checkpoint: str | Path, overrides: Sequence[str] = (),
                       weights: str = "student") -> tuple[torch.nn.Module, Recipe]:
    """The network of a checkpoint (student or EMA teacher weights) and its recipe."""
    path = Path(checkpoint)
    payload = load_checkpoint(path)
    bad = [o for o in overrides if not o.strip().startswith("infer.")]
    if bad:
        raise MaskTwinsError(f"--set {bad[0]!r}: infer takes only [infer] overrides; the network "
                             f"comes from the checkpoint {path}")
    if not isinstance(payload.get("recipe"), dict):
        raise MaskTwinsError(f"checkpoint {path} has no recipe")
    try:
        recipe = recipe_from_dict(apply_overrides(payload["recipe"], list(overrides)))
    except MaskTwinsError as err:
        raise MaskTwinsError(f"checkpoint {path}: its recipe does not validate here: {err}") from None
    if weights not in ("student", "teacher"):
        raise MaskTwinsError(f"--weights {weights!r}: expected student or teacher")
    state = payload.get("model") if weights == "student" else payload.get("teacher")
    if state is None:
        raise MaskTwinsError(f"checkpoint {path} has no {weights} weights (EMA was off)")
    model = build_from_recipe(recipe)
    load_weights(model, state, path)
    return model.eval(), recipe


def block_starts(shape: Sequence[int], block: Sequence[int]) -> Iterator[tuple[int, ...]]:
    """Start corner of every block of a regular grid over ``shape``."""
    return itertools.product(*(range(0, n, b) for n, b in zip(shape, block)))


def halo_box(start, block, shape, halo) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Read box (block grown by the halo, clipped) and the block's inner box within it."""
    read, inner = [], []
    for s, b, n, h in zip(start, block, shape, halo):
        stop = min(s + b, n)
        lo, hi = max(0, s - h), min(n, stop + h)
        read.append(slice(lo, hi))
        inner.append(slice(s - lo, stop - lo))
    return tuple(read), tuple(inner)


def default_block(shape_zyx: Sequence[int], chunks: Sequence[int]) -> tuple[int, int, int]:
    """About 16 x 512 x 512 voxels, a whole multiple of the output chunks."""
    wanted = (16, 512, 512)
    return tuple(max(c, (w // c) * c) if c < n else n
                 for w, c, n in zip(wanted, chunks, shape_zyx))


@dataclass(frozen=True)
class BlockPlan:
    """Geometry of blockwise prediction, all in (z, y, x) voxels."""

    shape: tuple[int, int, int]
    chunks: tuple[int, int, int]
    block: tuple[int, int, int]
    window: tuple[int, ...]
    halo: tuple[int, int, int]

    @classmethod
    def for_volume(cls, recipe: Recipe, shape: Sequence[int]) -> BlockPlan:
        """A 2-D model: output chunks of one slice and no halo along z; a 3-D model: halo on
        every axis. Halo = half a window, so windows at a block border see real context."""
        shape_zyx = (1, *shape) if len(shape) == 2 else tuple(shape)
        chunks = OutputTarget.chunks_for(shape_zyx)
        window = tuple(recipe.infer.window or recipe.data.patch_size)
        if recipe.model.spatial_dims == 2:
            chunks, halo = (1, *chunks[1:]), (0, window[0] // 2, window[1] // 2)
        else:
            halo = tuple(w // 2 for w in window)
        block = tuple(recipe.infer.block_size) or default_block(shape_zyx, chunks)
        return cls(shape_zyx, chunks, block, window, halo)


class ZyxView:
    """Reads and writes a (y, x) or (z, y, x) volume with (z, y, x) boxes."""

    def __init__(self, volume):
        self.volume = volume
        self.flat = len(volume.shape) == 2

    def read(self, box: tuple[slice, ...]) -> np.ndarray:
        data = np.asarray(self.volume[box[1:] if self.flat else box])
        return data[None] if self.flat else data

    def write(self, box: tuple[slice, ...], data: np.ndarray) -> None:
        self.volume.write(box[1:] if self.flat else box, data[0] if self.flat else data)


def predict_blocks(model, recipe: Recipe, plan: BlockPlan, source: ZyxView, sink: ZyxView,
                   stats, device: torch.device, name: str) -> int:
    """Predict every block of the plan from ``source`` into ``sink``; returns the block count."""
    count = 0
    for start in block_starts(plan.shape, plan.block):
        read, inner = halo_box(start, plan.block, plan.shape, plan.halo)
        raw = source.read(read)
        if raw.dtype.kind == "f" and not np.all(np.isfinite(raw)):
            raise MaskTwinsError(f"{name}: NaN or infinite values in the block at voxel {start}")
        probs = predict_block(model, normalize(raw, stats), recipe.model.spatial_dims, plan.window,
                              recipe.infer.overlap, recipe.infer.batch_size, recipe.infer.blend,
                              device, recipe.train.amp)
        foreground = probs[1][inner]
        sink.write(tuple(slice(s, s + n) for s, n in zip(start, foreground.shape)), foreground)
        count += 1
    return count


def infer_volume(checkpoint: str | Path, input_uri: str, output_uri: str,
                 overrides: Sequence[str] = (), weights: str = "student", device: str = "auto",
                 overwrite: bool = False) -> InferResult:
    """Predict the foreground probability of ``input_uri`` into ``output_uri`` (zarr)."""
    from ..io.volumes import open_volume

    started = time.perf_counter()
    model, recipe = load_for_inference(checkpoint, overrides, weights)
    volume = open_volume(input_uri, ndim=(2, 3))
    if recipe.model.spatial_dims == 3 and len(volume.shape) == 2:
        raise MaskTwinsError(f"{input_uri}: a 2-D image, but checkpoint {checkpoint} holds a 3-D "
                             "model; give a (z, y, x) volume")
    target = OutputTarget.prepare(output_uri, input_uri, overwrite)
    torch_device = resolve_device(device)
    model.to(torch_device)
    stats = intensity_stats(strided_sample(volume), recipe.data.normalization, str(input_uri))
    plan = BlockPlan.for_volume(recipe, volume.shape)
    provenance = {"checkpoint": str(checkpoint), "input": str(input_uri), "weights": weights,
                  "recipe": recipe_to_dict(recipe)}
    writer = target.create(volume, plan.chunks, provenance)
    try:
        count = predict_blocks(model, recipe, plan, ZyxView(volume), ZyxView(writer), stats,
                               torch_device, str(input_uri))
    except BaseException:
        shutil.rmtree(target.staging_root, ignore_errors=True)
        raise
    target.commit()
    return InferResult(target.uri, tuple(volume.shape), count, time.perf_counter() - started,
                       str(torch_device))
