"""``masktwins infer``: blockwise sliding-window prediction of a volume into chunked zarr.

The output is cut into blocks aligned to its chunk grid. Each block is read with a halo of half
a window (so windows at the block border see real context), predicted with Gaussian-blended
sliding windows, and only its inner region is written. No step holds the whole volume, and blocks
are independent, so they can be predicted in any order, by several processes (``--shard i/N``,
or daisy workers: :mod:`.distributed`), and across reruns. The output is filled in a staging
folder with one durable record per finished block (:mod:`.records`); a rerun skips the recorded
blocks, and the array is moved into place only when every block is written, so an interrupted
run never leaves an output that looks complete.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..config.recipe import apply_overrides, recipe_from_dict, recipe_to_dict
from ..config.schema import Recipe
from ..data.normalization import intensity_stats, normalize, strided_sample
from ..errors import MaskTwinsError
from ..io.checkpoints import load_checkpoint
from ..training.model_setup import build_from_recipe, load_weights, resolve_device
from .output import OutputTarget, chunk_flusher
from .records import Staging, file_sha256, fingerprint, make_manifest, open_staging, shard_indices
from .windows import predict_block

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InferResult:
    """What one ``infer`` process did.

    ``state``: ``written`` (this process moved the finished output into place), ``pending``
    (blocks remain for other shards or a rerun), ``handed-over`` (every block is done and
    another process commits the output) or ``up-to-date`` (the output was already complete,
    made from the same input, checkpoint and settings). Counts are in blocks: ``blocks`` in the
    whole plan, ``predicted`` by this process, ``skipped`` (of this process's share) because
    they were already recorded as done, ``remaining`` in the plan when this process ended.
    ``shape`` is the input's; ``channels`` > 0 means the output has that many leading channels
    (synapse: 2, pre and post), 0 the input's shape (foreground probability).
    """

    output: str
    shape: tuple[int, ...]
    blocks: int
    seconds: float
    device: str
    predicted: int = 0
    skipped: int = 0
    remaining: int = 0
    state: str = "written"
    shard: tuple[int, int] | None = None
    channels: int = 0

    @property
    def total(self) -> int:
        """Blocks in the whole plan (same as ``blocks``)."""
        return self.blocks


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


def align_block(block: Sequence[int], chunks: Sequence[int],
                shape: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(block, chunks) with every block a whole number of chunks, all (z, y, x) voxels.

    Per axis the block (clipped to the volume) is split into k = ceil(block / chunk) equal
    chunks of ceil(block / k) voxels, and the block grows to k such chunks (by < k voxels). So
    no two blocks share a chunk: blocks can be written by independent processes, and a chunk
    never holds a mix of finished and unfinished blocks.
    """
    aligned_block, aligned_chunks = [], []
    for b, c, n in zip(block, chunks, shape):
        b = max(1, min(b, n))
        pieces = math.ceil(b / c)
        chunk = math.ceil(b / pieces)
        aligned_block.append(pieces * chunk)
        aligned_chunks.append(chunk)
    return tuple(aligned_block), tuple(aligned_chunks)


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
        every axis. Halo = half a window, so windows at a block border see real context. Blocks
        are whole multiples of the output chunks (see :func:`align_block`)."""
        shape_zyx = (1, *shape) if len(shape) == 2 else tuple(shape)
        chunks = OutputTarget.chunks_for(shape_zyx)
        window = tuple(recipe.infer.window or recipe.data.patch_size)
        if recipe.model.spatial_dims == 2:
            chunks, halo = (1, *chunks[1:]), (0, window[0] // 2, window[1] // 2)
        else:
            halo = tuple(w // 2 for w in window)
        block = tuple(recipe.infer.block_size) or default_block(shape_zyx, chunks)
        block, chunks = align_block(block, chunks, shape_zyx)
        return cls(shape_zyx, chunks, block, window, halo)

    @property
    def grid(self) -> tuple[int, ...]:
        """Blocks per axis."""
        return tuple(-(-n // b) for n, b in zip(self.shape, self.block))

    @property
    def count(self) -> int:
        """Number of blocks; they are numbered 0..count-1 in :func:`block_starts` order."""
        return math.prod(self.grid)

    def start(self, index: int) -> tuple[int, ...]:
        """Start corner (voxels) of block ``index``."""
        return tuple(int(i) * b for i, b in zip(np.unravel_index(index, self.grid), self.block))

    def as_dict(self) -> dict:
        """The plan as plain data (for the run manifest)."""
        return {"shape": self.shape, "chunks": self.chunks, "block": self.block,
                "window": self.window, "halo": self.halo, "blocks": self.count}


class ZyxView:
    """Reads and writes a (y, x), (z, y, x) or channel-first (C, z, y, x) volume with (z, y, x)
    boxes (all channels at once)."""

    def __init__(self, volume):
        self.volume = volume
        self.flat = len(volume.shape) == 2
        self.channels = int(volume.shape[0]) if len(volume.shape) == 4 else 0

    def stored(self, box: tuple[slice, ...]) -> tuple[slice, ...]:
        """A (z, y, x) box in the volume's own axes."""
        if self.channels:
            return (slice(0, self.channels), *box)
        return box[1:] if self.flat else box

    def read(self, box: tuple[slice, ...]) -> np.ndarray:
        data = np.asarray(self.volume[self.stored(box)])
        return data[None] if self.flat else data

    def write(self, box: tuple[slice, ...], data: np.ndarray) -> None:
        self.volume.write(self.stored(box), data[0] if self.flat else data)


def output_channels(recipe: Recipe) -> int:
    """Channels ``infer`` writes: 0 = the foreground probability alone (segmentation), 2 = both
    sigmoid channels (pre, post) of a synapse model."""
    return recipe.model.num_classes if recipe.model.task == "synapse" else 0


def block_predictor(model, recipe: Recipe, plan: BlockPlan, stats,
                    device: torch.device) -> Callable[[np.ndarray], np.ndarray]:
    """raw (z, y, x) block -> float32 output block, with the recipe's window, overlap, batch
    size, blending and autocast: the foreground probability (z, y, x) (softmax class 1) of a
    segmentation model, or (C, z, y, x) sigmoid probabilities of a synapse model."""
    synapse = recipe.model.task == "synapse"

    def predict(raw: np.ndarray) -> np.ndarray:
        probs = predict_block(model, normalize(raw, stats), recipe.model.spatial_dims, plan.window,
                              recipe.infer.overlap, recipe.infer.batch_size, recipe.infer.blend,
                              device, recipe.train.amp, "sigmoid" if synapse else "softmax")
        return probs if synapse else probs[1]

    return predict


def predict_blocks(predict: Callable[[np.ndarray], np.ndarray], plan: BlockPlan, source: ZyxView,
                   sink: ZyxView, name: str, indices: Iterable[int] | None = None,
                   is_done: Callable[[int], bool] = lambda index: False,
                   on_written: Callable[[int, tuple[slice, ...]], None] = lambda index, box: None,
                   ) -> tuple[int, int]:
    """Predict blocks ``indices`` (default: all) of the plan from ``source`` into ``sink``.

    ``predict`` maps a raw (z, y, x) block to its output block, (z, y, x) or (C, z, y, x)
    (:func:`block_predictor`).

    A block for which ``is_done(index)`` holds when its turn comes is skipped;
    ``on_written(index, box)`` runs after a block's inner region ``box`` ((z, y, x) voxels) is
    written. Each block reads its own halo from ``source``, so the result of a block does not
    depend on which other blocks are predicted. Returns (predicted, skipped).
    """
    predicted = skipped = 0
    for index in range(plan.count) if indices is None else indices:
        if is_done(index):
            skipped += 1
            continue
        start = plan.start(index)
        read, inner = halo_box(start, plan.block, plan.shape, plan.halo)
        raw = source.read(read)
        if raw.dtype.kind == "f" and not np.all(np.isfinite(raw)):
            raise MaskTwinsError(f"{name}: NaN or infinite values in the block at voxel {start}")
        output = predict(raw)
        output = output[(slice(None),) * (output.ndim - 3) + inner]
        box = tuple(slice(s, s + n) for s, n in zip(start, output.shape[-3:]))
        sink.write(box, output)
        on_written(index, box)
        predicted += 1
        log.debug("block %d at %s predicted", index, start)
    return predicted, skipped


def run_manifest(checkpoint: str | Path, weights: str, recipe: Recipe, volume, output_uri: str,
                 stats, plan: BlockPlan) -> dict:
    """What a run computes, compared between reruns and shards (see :mod:`.records`): the input
    (absolute URI, shape, dtype, calibration, intensity statistics), the checkpoint's content,
    the weights, the [infer] settings and autocast, the output and the block plan."""
    work = {
        "input": {"uri": _absolute_uri(volume.uri), "shape": volume.shape, "dtype": str(volume.dtype),
                  "voxel_size": volume.voxel_size, "offset": volume.offset,
                  "normalization": {"shift": stats.shift, "scale": stats.scale}},
        "checkpoint": {"sha256": file_sha256(checkpoint)},
        "weights": weights,
        "infer": recipe_to_dict(recipe)["infer"],
        "amp": recipe.train.amp,
        "output": {"uri": _absolute_uri(output_uri), "dtype": "float32",
                   **({"channels": output_channels(recipe)} if output_channels(recipe) else {})},
        "plan": plan.as_dict(),
    }
    return make_manifest(work, {"checkpoint": str(Path(checkpoint).resolve()), "created": time.time()})


def _absolute_uri(uri: str) -> str:
    """A volume URI with an absolute container path."""
    from ..io.uri import ParsedUri, parse_uri

    parsed = parse_uri(uri)
    return str(ParsedUri(parsed.kind, parsed.container.resolve(), parsed.dataset))


@dataclass(frozen=True)
class InferSetup:
    """What every process of one run derives before predicting (a single run, each shard, the
    daisy coordinator and each daisy worker), so all of them agree on the work: the network
    (on the CPU) and its recipe, the input volume, the output target, the intensity statistics,
    the block plan and the manifest (see :func:`run_manifest`)."""

    checkpoint: str
    input_uri: str
    weights: str
    model: torch.nn.Module
    recipe: Recipe
    volume: object
    target: OutputTarget
    stats: object
    plan: BlockPlan
    manifest: dict

    @classmethod
    def prepare(cls, checkpoint: str | Path, input_uri: str, output_uri: str,
                overrides: Sequence[str] = (), weights: str = "student") -> InferSetup:
        """Load and check everything; MaskTwinsError for a bad checkpoint, input or output."""
        from ..io.volumes import open_volume

        model, recipe = load_for_inference(checkpoint, overrides, weights)
        volume = open_volume(input_uri, ndim=(2, 3))
        if recipe.model.spatial_dims == 3 and len(volume.shape) == 2:
            raise MaskTwinsError(f"{input_uri}: a 2-D image, but checkpoint {checkpoint} holds a "
                                 "3-D model; give a (z, y, x) volume")
        target = OutputTarget.prepare(output_uri, input_uri, output_channels(recipe))
        stats = intensity_stats(strided_sample(volume), recipe.data.normalization, str(input_uri))
        plan = BlockPlan.for_volume(recipe, volume.shape)
        manifest = run_manifest(checkpoint, weights, recipe, volume, target.uri, stats, plan)
        return cls(str(checkpoint), str(input_uri), weights, model, recipe, volume, target, stats,
                   plan, manifest)

    def up_to_date(self, overwrite: bool) -> bool:
        """True when the output exists and was committed from this very work; MaskTwinsError
        when it exists otherwise and ``overwrite`` is off."""
        if not self.target.exists or overwrite:
            return False
        if self.target.made_from(fingerprint(self.manifest)):
            return True
        self.target.refuse_existing()
        return False

    def open_staging(self, restart: bool = False) -> tuple[Staging, bool]:
        """The run's staging folder (see :func:`~.records.open_staging`), created if missing."""
        provenance = {"checkpoint": self.checkpoint, "input": self.input_uri,
                      "weights": self.weights, "recipe": recipe_to_dict(self.recipe),
                      "fingerprint": fingerprint(self.manifest)}
        return open_staging(self.target.staging_root, self.manifest, restart=restart,
                            build=lambda folder: self.target.create(folder, self.volume,
                                                                    self.plan.chunks, provenance))

    def predictor(self, device: torch.device) -> Callable[[np.ndarray], np.ndarray]:
        """The network moved to ``device``, as a :func:`block_predictor`."""
        self.model.to(device)
        return block_predictor(self.model, self.recipe, self.plan, self.stats, device)


def infer_volume(checkpoint: str | Path, input_uri: str, output_uri: str,
                 overrides: Sequence[str] = (), weights: str = "student", device: str = "auto",
                 overwrite: bool = False, shard: tuple[int, int] | None = None,
                 restart: bool = False) -> InferResult:
    """Predict the foreground probability of ``input_uri`` into ``output_uri`` (zarr); a synapse
    checkpoint writes both sigmoid channels, (2, z, y, x) = (pre, post) (see :mod:`.output`).

    Resumes from the blocks a killed or failed run with the same manifest recorded (``restart``
    discards them); ``shard`` = (i, N), 1-based, predicts only every N-th block from the
    (i-1)-th. Whichever process finds every block done moves the output into place.
    """
    started = time.perf_counter()
    setup = InferSetup.prepare(checkpoint, input_uri, output_uri, overrides, weights)
    if restart and shard is not None:
        raise MaskTwinsError(f"--restart with --shard {shard[0]}/{shard[1]} would discard the "
                             f"blocks of the other shards; delete {setup.target.staging_root} "
                             "once before starting the shards instead")
    plan, target = setup.plan, setup.target
    share = shard_indices(plan.count, shard)
    result = InferResult(target.uri, tuple(setup.volume.shape), plan.count, 0.0, device,
                         shard=shard, channels=target.channels)
    if setup.up_to_date(overwrite):
        return replace(result, skipped=len(share), state="up-to-date",
                       seconds=time.perf_counter() - started)
    torch_device = resolve_device(device)
    predict = setup.predictor(torch_device)
    staging, created = setup.open_staging(restart)
    try:
        predicted, skipped = predict_share(predict, plan, setup.volume, staging, target, share)
    except BaseException:
        if created:
            discard_if_empty(staging)
        raise
    result = replace(result, predicted=predicted, skipped=skipped, device=str(torch_device))
    return replace(finish(staging, target, plan, result), seconds=time.perf_counter() - started)


def staging_sink(plan: BlockPlan, volume, staging: Staging, target: OutputTarget,
                 ) -> tuple[ZyxView, Callable[[int, tuple[slice, ...]], None]]:
    """The staging array as a sink, and the record step for :func:`predict_blocks`: fsync the
    chunks of a written block, then mark it done."""
    from ..io.volumes import create_volume

    uri = staging.array_uri(target.dataset)
    shape, chunks = target.layout(volume, plan.chunks)
    writer = create_volume(uri, shape, np.float32, chunks, volume.voxel_size,
                           volume.offset)  # reopens the staging array
    sink, flush = ZyxView(writer), chunk_flusher(uri)

    def record(index: int, box: tuple[slice, ...]) -> None:
        flush(sink.stored(box))
        staging.mark_done(index)

    return sink, record


def predict_share(predict, plan: BlockPlan, volume, staging: Staging, target: OutputTarget,
                  share: Iterable[int]) -> tuple[int, int]:
    """Predict this process's blocks into the staging array, recording each one durably after
    its data is written and fsynced. Returns (predicted, skipped)."""
    sink, record = staging_sink(plan, volume, staging, target)
    return predict_blocks(predict, plan, ZyxView(volume), sink, str(volume.uri), share,
                          staging.is_done, record)


def finish(staging: Staging, target: OutputTarget, plan: BlockPlan,
           result: InferResult) -> InferResult:
    """Commit the output when every block is done and this process wins the claim."""
    remaining = plan.count - len(staging.done())
    if remaining:
        log.info("%d of %d blocks remain for other processes", remaining, plan.count)
        return replace(result, remaining=remaining, state="pending")
    claimed = staging.claim()
    if claimed is None:
        return replace(result, state="handed-over")
    target.commit(claimed)
    return replace(result, state="written")


def discard_if_empty(staging: Staging) -> None:
    """Delete a staging folder this process created if it holds no finished block."""
    try:
        if not staging.done():
            staging.discard()
    except OSError:
        pass
