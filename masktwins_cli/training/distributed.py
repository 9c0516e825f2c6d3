"""Multi-process training under ``torchrun``: one process per GPU (or CPU process with gloo).

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; with WORLD_SIZE > 1 ``masktwins train`` joins the
process group (nccl on CUDA, gloo on CPU), trains the student wrapped in DistributedDataParallel
and leaves the group at the end, also on error. What is per rank and what is shared:

- data crops, block masks, dropout: each rank draws its own (rank r > 0 offsets every seed by
  ``RANK_SEED_STRIDE * r``; rank 0 draws exactly what a single-process run draws), so the
  effective batch is WORLD_SIZE x train.batch_size (and x target_batch_size); lr is not scaled.
- gradients: averaged over ranks by DDP in the one ``loss.backward()`` of a step, which stays
  correct with several student forwards per step (source with AdaIN, masked views): DDP's
  per-parameter hook fires once per backward, after autograd has summed the contributions of
  all forwards, and with ``find_unused_parameters=False`` (every forward uses every parameter)
  nothing else depends on which forward came last (tests/test_train_distributed.py compares DDP
  gradients with averaged single-process ones).
- EMA teacher: kept and updated on every rank from the synchronised student, so the teachers are
  identical without communication and each rank labels its own target crops; the teacher pass
  (and the student labelling itself when EMA is off) uses the plain network, not DDP.
- batch norm (model.norm = batch): each rank normalises with its own batch statistics; running
  statistics are rank 0's, broadcast after every step so that students and teachers agree.
- files (recipe.toml, log.jsonl, checkpoints) and progress output: rank 0 only; logged loss terms
  are the mean over ranks; validation runs on rank 0 while the others wait at their next
  collective; checkpoints hold every rank's RNG states.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from ..errors import MaskTwinsError

RANK_SEED_STRIDE = 1000
# Rank 0 validates and saves while the others wait in their next collective: allow for it.
GROUP_TIMEOUT = datetime.timedelta(hours=1)
# Debug/test hook: when set to a folder, every rank writes rank<r>.json with digests of its weights.
DIGEST_ENV = "MASKTWINS_RANK_DIGESTS"


@dataclass(frozen=True)
class Distributed:
    """Where this process sits in the run; ``world_size == 1`` is a plain single-process run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes files and prints progress."""
        return self.rank == 0

    def seed(self, seed: int) -> int:
        """This rank's seed for a stream seeded with ``seed`` in a single-process run."""
        return seed + RANK_SEED_STRIDE * self.rank


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise MaskTwinsError(f"environment variable {name}={value!r} is not an integer "
                             "(set by torchrun)") from None


def from_environment() -> Distributed:
    """Read torchrun's RANK, WORLD_SIZE and LOCAL_RANK (absent: a single-process run)."""
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return Distributed()
    return Distributed(_env_int("RANK", 0), world, _env_int("LOCAL_RANK", 0))


def is_main_process() -> bool:
    """True unless this process is a torchrun worker with RANK > 0."""
    return from_environment().main


def rank_device(device: torch.device, ctx: Distributed) -> torch.device:
    """cuda:LOCAL_RANK for a distributed GPU run (made the current device); else ``device``."""
    if not ctx.enabled or device.type != "cuda":
        return device
    count = torch.cuda.device_count()
    if ctx.local_rank >= count:
        raise MaskTwinsError(f"LOCAL_RANK {ctx.local_rank} has no GPU: this node has {count}; "
                             "start torchrun with --nproc_per_node at most the number of GPUs")
    torch.cuda.set_device(ctx.local_rank)
    return torch.device("cuda", ctx.local_rank)


@contextlib.contextmanager
def process_group(ctx: Distributed, device: torch.device) -> Iterator[None]:
    """Join the process group for the body (nccl on CUDA, gloo on CPU) and always leave it.

    A group that the caller already initialised is used as is and left to the caller.
    """
    if not ctx.enabled or dist.is_initialized():
        yield
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=GROUP_TIMEOUT)
    try:
        yield
    finally:
        dist.destroy_process_group()


def wrap_student(model: torch.nn.Module, ctx: Distributed,
                 device: torch.device) -> torch.nn.Module | None:
    """The student in DistributedDataParallel (None for a single-process run).

    DDP broadcasts rank 0's weights at construction and averages gradients in backward; every
    forward uses every parameter, so ``find_unused_parameters=False`` (several forwards before
    one backward: see the module docstring).
    """
    if not ctx.enabled:
        return None
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids,
                                                     find_unused_parameters=False)


@torch.no_grad()
def broadcast_buffers(model: torch.nn.Module, ctx: Distributed) -> None:
    """Give every rank rank 0's buffers (batch-norm running statistics): each rank's last forward
    updated its own, and the EMA teacher must see the same student everywhere. One broadcast per
    buffer dtype; nothing to do for instance norm (no buffers)."""
    if not ctx.enabled:
        return
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for buffer in model.buffers():
        by_dtype.setdefault(buffer.dtype, []).append(buffer)
    for group in by_dtype.values():
        flat = torch.cat([b.reshape(-1) for b in group])
        dist.broadcast(flat, src=0)
        offset = 0
        for b in group:
            b.copy_(flat[offset:offset + b.numel()].view_as(b))
            offset += b.numel()


def mean_over_ranks(values: dict[str, float], ctx: Distributed,
                    device: torch.device) -> dict[str, float]:
    """The mean of each value over the ranks (a collective: every rank calls it, same keys)."""
    if not ctx.enabled or not values:
        return values
    keys = sorted(values)
    total = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return {k: float(v) / ctx.world_size for k, v in zip(keys, total.tolist())}


def gather_objects(value, ctx: Distributed) -> list:
    """Every rank's ``value``, indexed by rank (a collective)."""
    if not ctx.enabled:
        return [value]
    values: list = [None] * ctx.world_size
    dist.all_gather_object(values, value)
    return values


def barrier(ctx: Distributed, device: torch.device) -> None:
    """Wait for every rank (no-op in a single-process run)."""
    if ctx.enabled:
        dist.barrier(device_ids=[device.index] if device.type == "cuda" else None)


def state_digest(state: Mapping[str, torch.Tensor] | None) -> str | None:
    """SHA-256 of a state dict (names, dtypes, shapes and bytes); None for None."""
    if state is None:
        return None
    sha = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        sha.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        sha.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return sha.hexdigest()


def write_rank_digest(ctx: Distributed, student: torch.nn.Module,
                      teacher: torch.nn.Module | None) -> None:
    """When ``$MASKTWINS_RANK_DIGESTS`` names a folder: write this rank's weight digests there."""
    folder = os.environ.get(DIGEST_ENV)
    if not folder:
        return
    record = {"rank": ctx.rank, "world_size": ctx.world_size,
              "student": state_digest(student.state_dict()),
              "teacher": None if teacher is None else state_digest(teacher.state_dict())}
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / f"rank{ctx.rank}.json").write_text(json.dumps(record), encoding="utf-8")
