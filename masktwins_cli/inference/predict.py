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
    try:
        recipe = recipe_from_dict(apply_overrides(payload["recipe"], list(overrides)))
    except KeyError:
        raise MaskTwinsError(f"checkpoint {path} has no recipe") from None
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
    shape_zyx = (1, *volume.shape) if len(volume.shape) == 2 else tuple(volume.shape)
    chunks = (1, *OutputTarget.chunks_for(shape_zyx)[1:]) if recipe.model.spatial_dims == 2 \
        else OutputTarget.chunks_for(shape_zyx)
    block = tuple(recipe.infer.block_size) or default_block(shape_zyx, chunks)
    window = tuple(recipe.infer.window or recipe.data.patch_size)
    halo = (0, window[0] // 2, window[1] // 2) if recipe.model.spatial_dims == 2 \
        else tuple(w // 2 for w in window)
    provenance = {"checkpoint": str(checkpoint), "input": str(input_uri), "weights": weights,
                  "recipe": recipe_to_dict(recipe)}
    writer = target.create(volume, chunks, provenance)
    count = 0
    try:
        for start in block_starts(shape_zyx, block):
            read, inner = halo_box(start, block, shape_zyx, halo)
            raw = np.asarray(volume[read if len(volume.shape) == 3 else read[1:]])
            image = normalize(raw.reshape([r.stop - r.start for r in read]), stats)
            probs = predict_block(model, image, recipe.model.spatial_dims, window,
                                  recipe.infer.overlap, recipe.infer.batch_size, recipe.infer.blend,
                                  torch_device, recipe.train.amp)
            foreground = probs[1][inner]
            box = tuple(slice(s, s + n) for s, n in zip(start, foreground.shape))
            writer.write(box if len(volume.shape) == 3 else box[1:],
                         foreground if len(volume.shape) == 3 else foreground[0])
            count += 1
    except BaseException:
        shutil.rmtree(target.staging_root, ignore_errors=True)
        raise
    target.commit()
    return InferResult(target.uri, tuple(volume.shape), count, time.perf_counter() - started,
                       str(torch_device))
