"""``masktwins infer``: blockwise sliding-window prediction of a volume into chunked zarr.

The output is cut into blocks aligned to its chunk grid (:mod:`.blocks`). Each block reads the
span of the global window grid's windows that touch it and is predicted from exactly those
windows (:mod:`.windows`), so its output equals whole-volume prediction whatever the block size.
No step holds the whole volume; reading, computing and writing overlap (:mod:`.pipeline`).
Blocks are independent, so they can be predicted in any order, by several processes
(``--shard i/N``, or daisy workers: :mod:`.distributed`), and across reruns. The output is
filled in a staging folder with one durable record per finished block (:mod:`.records`); a
rerun skips the recorded blocks, and the array is moved into place only when every block is
written, so an interrupted run never leaves an output that looks complete. An ROI mask
(:mod:`.roi`) restricts the work to a region.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..config.recipe import recipe_to_dict
from ..config.schema import Recipe
from ..data.images import check_channels
from ..data.normalization import image_stats
from ..errors import MaskTwinsError
from ..io.backends import ParsedUri, parse_uri, zarr_node_type
from ..io.layout import spatial_shape
from ..io.locks import OutputLock
from ..runtime.device import resolve_device
from ..runtime.windows import importance_map, predict_box, recipe_window_settings
from .blocks import BlockPlan, BlockWork, ZyxView
from .checkpoint import infer_overrides, load_inference_checkpoint
from .class_map import check_map_target, derive_class_map, map_location, map_made_from
from .manifest import output_layout, run_manifest, writes_class_map_beside
from .output import OutputTarget, chunk_flusher
from .pipeline import BlockCounts, Predictor, predict_blocks
from .records import (
    ARRAY,
    Staging,
    fingerprint,
    lock_path,
    open_staging,
    shard_indices,
)
from .roi import RoiMask

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InferResult:
    """What one ``infer`` process did.

    ``state``: ``written`` (this process moved the finished output into place), ``pending``
    (blocks remain for other shards or a rerun), ``handed-over`` (every block is done and
    another process commits the output) or ``up-to-date`` (the output was already complete,
    made from the same input, checkpoint and settings). Counts are in blocks: ``blocks`` in the
    whole plan, ``predicted`` by this process, ``skipped`` (of this process's share) because
    they were already recorded as done, ``outside`` the ROI mask (finished without prediction,
    output 0), ``remaining`` in the plan when this process ended.
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
    outside: int = 0
    remaining: int = 0
    state: str = "written"
    shard: tuple[int, int] | None = None
    channels: int = 0
    unfinished: str = ""  # the checkpoint's progress when its run had not finished
    class_map: str = ""  # infer.classes = 'both': where the class map went


def block_predictor(model, recipe: Recipe, plan: BlockPlan, stats,
                    device: torch.device) -> Predictor:
    """A :data:`~.pipeline.Predictor` with the recipe's window, overlap, batch size, blending,
    autocast and TTA, giving what :func:`output_layout` says: the foreground probability
    (z, y, x) (softmax class 1) of a two-class model, (C, z, y, x) sigmoid probabilities of a
    synapse model, or a K-class model's class map (uint8 argmax) or class probabilities."""
    channels, dtype = output_layout(recipe)
    foreground_only = (channels, dtype) == (0, "float32")  # a two-class model: class 1 kept
    settings = recipe_window_settings(recipe, plan.window, "task" if foreground_only else None)
    weights = importance_map(plan.window, recipe.infer.blend, device)

    def predict(raw: np.ndarray, work: BlockWork, keep: np.ndarray | None = None) -> np.ndarray:
        probs = predict_box(model, raw, work.pad, work.positions(plan.window, keep), work.inner,
                            settings, device, stats.shift, stats.scale, weights)
        if dtype == "uint8":  # the class map; class 0 outside the mask
            classes = probs.argmax(axis=0).astype(np.uint8)
            return classes if keep is None else classes * keep.astype(np.uint8)
        if keep is not None:
            probs *= keep
        return probs if channels else probs[0]

    return predict


def plan_for(recipe: Recipe, shape: Sequence[int]) -> BlockPlan:
    """The block plan of a (y, x) or (z, y, x) input for a checkpoint's recipe: output chunks
    from :meth:`OutputTarget.chunks_for`, the recipe's window (default: the training patch),
    overlap and block size."""
    shape_zyx = (1, *shape) if len(shape) == 2 else tuple(shape)
    return BlockPlan.create(shape, OutputTarget.chunks_for(shape_zyx),
                            tuple(recipe.infer.window or recipe.data.patch_size), recipe.infer.overlap,
                            recipe.model.spatial_dims, recipe.infer.block_size)


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
    mask: RoiMask | None = None
    step: int | None = None
    class_map: ParsedUri | None = None  # infer.classes = 'both'

    @property
    def unfinished(self) -> str:
        """'' for a finished run's checkpoint, else e.g. 'step 200 of 1500'."""
        total = self.recipe.train.iterations
        return f"step {self.step} of {total}" if self.step is not None and self.step < total else ""

    @classmethod
    def prepare(cls, checkpoint: str | Path, input_uri: str, output_uri: str,
                overrides: Sequence[str] = (), weights: str = "student") -> InferSetup:
        """Load and check everything; MaskTwinsError for a bad checkpoint, input or output."""
        from ..io.volumes import open_volume

        model, recipe, step = load_inference_checkpoint(checkpoint, overrides, weights)
        source, destination = parse_uri(input_uri), parse_uri(output_uri)
        volume = open_volume(source, ndim=(2, 3, 4))
        if recipe.model.spatial_dims == 3 and len(volume.shape) == 2:
            raise MaskTwinsError(f"{input_uri}: a 2-D image, but checkpoint {checkpoint} holds a "
                                 "3-D model; give a (z, y, x) volume")
        check_channels(volume.shape, recipe.model.in_channels, str(input_uri),
                       f"the model of {checkpoint} takes model.in_channels", trained=True)
        target = OutputTarget.prepare(destination, source, *output_layout(recipe))
        d = recipe.data
        stats = image_stats(volume, d.normalization, str(input_uri), (d.mean, d.std))
        shape = spatial_shape(volume.shape)
        plan = plan_for(recipe, shape)
        mask = RoiMask.open(recipe.infer.mask, shape) if recipe.infer.mask else None
        manifest = run_manifest(checkpoint, weights, recipe, volume, target.location, stats, plan,
                                mask)
        class_map = map_location(target.location) if writes_class_map_beside(recipe) else None
        return cls(str(checkpoint), str(input_uri), weights, model, recipe, volume, target, stats,
                   plan, manifest, mask, step, class_map)

    @property
    def provenance(self) -> dict:
        """What an output records of the work that made it (its ``masktwins`` attribute)."""
        return {"checkpoint": self.checkpoint, "input": self.input_uri, "weights": self.weights,
                "recipe": recipe_to_dict(self.recipe), "fingerprint": fingerprint(self.manifest)}

    def up_to_date(self, overwrite: bool) -> bool:
        """True when the output exists and was committed from this very work; MaskTwinsError
        when it (or a class map beside it, see :mod:`.class_map`) exists otherwise and
        ``overwrite`` is off."""
        if self.class_map is not None:
            check_map_target(self.class_map, fingerprint(self.manifest), overwrite)
        if not self.target.exists or overwrite:
            return False
        if self.target.made_from(fingerprint(self.manifest)):
            return True
        self.target.refuse_existing()
        return False

    def lock(self) -> OutputLock:
        """The output's lock, entered: held for setup (exclusive) and work (shared); a commit
        left by a killed process is settled first (see :meth:`OutputTarget.settle`)."""
        lock = OutputLock(lock_path(self.target.staging_root)).enter()
        try:
            self.target.settle(self.target.staging_root)
        except BaseException:
            lock.release()
            raise
        return lock

    def open_staging(self, lock: OutputLock, restart: bool = False) -> tuple[Staging, bool]:
        """The run's staging folder (see :func:`~.records.open_staging`), created if missing;
        ``restart`` (discard it first) only while no other process writes it."""
        if restart and not lock.alone():
            raise MaskTwinsError(f"--restart: another infer process is writing "
                                 f"{self.target.staging_root} now; rerun when it has ended")
        return open_staging(self.target.staging_root, self.manifest, restart=restart,
                            build=lambda folder: self.target.create(folder, self.volume,
                                                                    self.plan.chunks,
                                                                    self.provenance))

    def complete_class_map(self, result: InferResult) -> InferResult:
        """With ``infer.classes = 'both'``, once the probabilities are in place (``result``
        written or up to date): derive the class map beside them unless this work already made
        it. Call while holding the output lock."""
        if self.class_map is None or result.state not in ("written", "up-to-date"):
            return result
        if not map_made_from(self.class_map, fingerprint(self.manifest)):
            derive_class_map(self.target.location, self.class_map, self.provenance)
        return replace(result, class_map=str(self.class_map))

    def predictor(self, device: torch.device) -> Predictor:
        """The network moved to ``device``, as a :func:`block_predictor`."""
        self.model.to(device)
        return block_predictor(self.model, self.recipe, self.plan, self.stats, device)


def infer_volume(checkpoint: str | Path, input_uri: str, output_uri: str,
                 overrides: Sequence[str] = (), weights: str = "student", device: str = "auto",
                 overwrite: bool = False, shard: tuple[int, int] | None = None,
                 restart: bool = False, mask: str | None = None, tta: bool = False) -> InferResult:
    """Predict the foreground probability of ``input_uri`` into ``output_uri`` (zarr); a synapse
    checkpoint writes both sigmoid channels, (2, z, y, x) = (pre, post) (see :mod:`.output`).

    Resumes from the blocks a killed or failed run with the same manifest recorded (``restart``
    discards them); ``shard`` = (i, N), 1-based, predicts only every N-th block from the
    (i-1)-th. Whichever process finds every block done moves the output into place. ``mask``
    and ``tta``: see :func:`infer_overrides`.
    """
    started = time.perf_counter()
    torch_device = resolve_device(device, "--device")
    setup = InferSetup.prepare(checkpoint, input_uri, output_uri,
                               infer_overrides(overrides, mask, tta), weights)
    if restart and shard is not None:
        raise MaskTwinsError(f"--restart with --shard {shard[0]}/{shard[1]} would discard the "
                             f"blocks of the other shards; delete {setup.target.staging_root} "
                             "once before starting the shards instead")
    plan, target = setup.plan, setup.target
    share = shard_indices(plan.count, shard)
    result = InferResult(target.uri, tuple(setup.volume.shape), plan.count, 0.0, device,
                         shard=shard, channels=target.channels, unfinished=setup.unfinished)
    with setup.lock() as lock:
        if setup.up_to_date(overwrite):
            result = setup.complete_class_map(replace(result, skipped=len(share),
                                                      state="up-to-date"))
            return replace(result, seconds=time.perf_counter() - started)
        predict = setup.predictor(torch_device)
        staging, created = setup.open_staging(lock, restart)
        if shard is None and not lock.alone():  # help a running process from the other end
            share = share[::-1]
        lock.end_setup()
        try:
            counts = predict_share(predict, plan, setup.volume, staging, target, share, setup.mask)
        except MaskTwinsError as err:  # e.g. damage in the input, found when its block is read
            raise MaskTwinsError(f"{err}{kept_note(staging, created, lock)}") from None
        except BaseException:
            if created and lock.exclusive():
                discard_if_empty(staging)
            raise
        result = replace(result, predicted=counts.predicted, skipped=counts.skipped,
                         outside=counts.outside, device=str(torch_device))
        result = setup.complete_class_map(finish(staging, target, plan, result, lock))
    return replace(result, seconds=time.perf_counter() - started)


def staging_sink(plan: BlockPlan, volume, staging: Staging, target: OutputTarget,
                 ) -> tuple[ZyxView, Callable[[int, tuple[slice, ...]], None]]:
    """The staging array as a sink, and the record step for :func:`predict_blocks`: fsync the
    chunks of a written block, then mark it done."""
    from ..io.volumes import create_volume

    uri = staging.array_uri(target.dataset)
    if zarr_node_type(staging.root / ARRAY / target.dataset) != "array":
        raise MaskTwinsError(f"{staging.root}: the staging array {ARRAY}/{target.dataset} is "
                             "missing, so its recorded blocks cannot be trusted; pass --restart")
    shape, chunks = target.layout(volume, plan.chunks)
    writer = create_volume(uri, shape, np.dtype(target.dtype), chunks, volume.voxel_size,
                           volume.offset)  # reopens the staging array
    sink, flush = ZyxView(writer), chunk_flusher(uri)

    def record(index: int, box: tuple[slice, ...]) -> None:
        flush(sink.stored(box))
        staging.mark_done(index)

    return sink, record


def predict_share(predict: Predictor, plan: BlockPlan, volume, staging: Staging,
                  target: OutputTarget, share: Iterable[int], mask: RoiMask | None = None,
                  ) -> BlockCounts:
    """Predict this process's blocks into the staging array, recording each one durably after
    its data is written and fsynced (in the writer thread)."""
    sink, record = staging_sink(plan, volume, staging, target)
    return predict_blocks(predict, plan, ZyxView(volume), sink, str(volume.uri), share,
                          staging.is_done, record, mask)


def finish(staging: Staging, target: OutputTarget, plan: BlockPlan, result: InferResult,
           lock: OutputLock) -> InferResult:
    """Commit the output when every block is done and no other process holds ``lock`` (then it
    is the last writer); otherwise leave the commit to the process that ends last."""
    remaining = plan.count - len(staging.done())
    if remaining:
        log.info("%d of %d blocks remain for other processes", remaining, plan.count)
        return replace(result, remaining=remaining, state="pending")
    if not lock.exclusive():
        return replace(result, state="handed-over")
    claimed = staging.claim()
    if claimed is None:
        return replace(result, state="handed-over")
    target.commit(claimed)
    return replace(result, state="written")


def kept_note(staging: Staging, created: bool, lock: OutputLock) -> str:
    """After an error: '' when the staging folder held no finished block (one this process
    created is then deleted), else a note that the finished blocks are kept for a rerun."""
    try:
        finished = len(staging.done())
    except OSError:
        return ""
    if not finished:
        if created and lock.exclusive():
            discard_if_empty(staging)
        return ""
    return (f"; the {finished} block(s) finished before are kept in {staging.root} for a rerun "
            "(--restart discards them)")


def discard_if_empty(staging: Staging) -> None:
    """Delete a staging folder this process created if it holds no finished block."""
    try:
        if not staging.done():
            staging.discard()
    except OSError:
        pass
