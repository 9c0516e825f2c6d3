"""The block pipeline of ``infer``: read, predict and write overlap.

One reader thread reads (and checks) the next blocks while the calling thread predicts the
current one, and one writer thread writes, fsyncs and records the finished ones. Both queues
hold at most ``prefetch`` blocks, so host memory stays bounded by a few blocks whatever the
volume size, and in steady state the device does not wait on the disk. Blocks are predicted and
recorded in order; an error in any stage stops the pipeline after the blocks already handed to
the writer are written and recorded (a rerun resumes from them), and is raised in the caller.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple

import numpy as np

from ..errors import MaskTwinsError
from .blocks import BlockPlan, BlockWork, ZyxView
from .roi import RoiMask

log = logging.getLogger(__name__)

Predictor = Callable[[np.ndarray, BlockWork, "np.ndarray | None"], np.ndarray]
"""(raw read voxels, block, mask of the block's box or None) -> output of the block's box,
(z, y, x) or (C, z, y, x) float32."""

DEFAULT_PREFETCH = 2


class BlockCounts(NamedTuple):
    """Blocks this call ``predicted``, ``skipped`` (already recorded as done) and finished as
    ``outside`` the ROI mask (recorded without prediction; their output stays 0)."""

    predicted: int
    skipped: int
    outside: int = 0


def predict_blocks(predict: Predictor, plan: BlockPlan, source: ZyxView, sink: ZyxView, name: str,
                   indices: Iterable[int] | None = None,
                   is_done: Callable[[int], bool] = lambda index: False,
                   on_written: Callable[[int, tuple[slice, ...]], None] = lambda index, box: None,
                   mask: RoiMask | None = None, prefetch: int = DEFAULT_PREFETCH) -> BlockCounts:
    """Predict blocks ``indices`` (default: all) of the plan from ``source`` into ``sink``.

    A block for which ``is_done(index)`` holds when it is about to be read is skipped;
    ``on_written(index, box)`` runs (in the writer thread) after a block's box ((z, y, x)
    voxels) is written. Each block reads its own windows' span from ``source``, so the result
    of a block does not depend on which other blocks are predicted. ``name`` names the source
    in errors. ``prefetch`` >= 1: blocks read ahead and blocks waiting to be written.
    """
    todo = iter(range(plan.count) if indices is None else indices)
    reads: deque[Future] = deque()
    writes: deque[Future] = deque()
    predicted = skipped = outside = 0

    def load(work: BlockWork):
        keep = mask.covering(work.box) if mask is not None else None
        if keep is not None and not keep.any():
            return work, None, keep
        raw = source.read(work.read)
        if raw.dtype.kind == "f" and not np.all(np.isfinite(raw)):
            raise MaskTwinsError(f"{name}: NaN or infinite values in the block at voxel {work.start}")
        return work, raw, keep

    def store(work: BlockWork, output: np.ndarray | None) -> None:
        if output is not None:
            sink.write(work.box, output)
        on_written(work.index, work.box)

    def read_ahead(reader: ThreadPoolExecutor) -> None:
        nonlocal skipped
        while len(reads) < prefetch:
            index = next(todo, None)
            if index is None:
                return
            if is_done(index):
                skipped += 1
                continue
            reads.append(reader.submit(load, plan.work(index)))

    with ThreadPoolExecutor(1, thread_name_prefix="infer-read") as reader, \
            ThreadPoolExecutor(1, thread_name_prefix="infer-write") as writer:
        try:
            read_ahead(reader)
            while reads:
                work, raw, keep = reads.popleft().result()
                read_ahead(reader)
                output = None if raw is None else predict(raw, work, keep)
                while len(writes) >= prefetch:
                    writes.popleft().result()
                writes.append(writer.submit(store, work, output))
                if raw is None:
                    outside += 1
                else:
                    predicted += 1
                log.debug("block %d at %s %s", work.index, work.start,
                          "predicted" if raw is not None else "outside the mask")
            while writes:
                writes.popleft().result()
        except BaseException:
            for future in reads:
                future.cancel()
            for future in writes:  # finish what was handed over, so its records are kept
                try:
                    future.result()
                except Exception:  # the first error is the one to report
                    pass
            raise
    return BlockCounts(predicted, skipped, outside)
