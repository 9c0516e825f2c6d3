"""Durable records of a blockwise ``infer`` run, so a rerun resumes and shards share the work.

``infer`` fills a staging folder next to the output container, named after the output
(``.pred.zarr.probabilities.partial`` for ``pred.zarr/probabilities``), so every rerun of the same
command -- and every shard of an array job -- finds it::

    manifest.json        what is computed: input, checkpoint fingerprint, settings, block plan
    done/<index>         one empty marker per block whose data is written and flushed
    out.zarr/<dataset>   the output array being filled (moved into place by the commit)

Protocol (no server, only atomic renames of one file system):

* create: a complete folder (manifest, ``done/``, empty array) is built under a unique temporary
  name and renamed to the staging name; a process that loses that race uses the winner's folder.
  Every process compares its manifest with the folder's and refuses one made for other work.
* record: a block's data is written and fsynced first (chunk files and their folders), then its
  marker is created, so a marker never names a block whose data could be missing after
  ``kill -9`` or a machine crash.
* lock: every process writing the folder holds the output's lock file (``....lock``, see
  :mod:`masktwins_cli.io.locks`) shared; a second process running while another one writes
  (an unsharded rerun, or a run beside shards) helps, taking the blocks from the last one down.
* commit: a process that finds every marker present and can take the lock exclusive (no other
  process is writing) renames the staging folder to the claim name (``....commit``) and moves the
  array into place; when it cannot, another process is still writing and commits when it ends.
  A claim left by a process killed while committing is settled by the next run under the lock
  (see :meth:`~masktwins_cli.inference.output.OutputTarget.settle`): committed again if it
  still holds its array, only tidied up if the array was already moved into place.

Blocks are numbered in :func:`~masktwins_cli.inference.predict.block_starts` order; shard ``i/N``
(1-based) takes blocks ``i-1, i-1+N, i-1+2N, ...``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import MaskTwinsError
from ..io.atomic import (
    atomic_open,
    fsync_path,
    sweep_stale_temporaries,
    temporary_sibling,
)

MANIFEST = "manifest.json"
DONE = "done"
ARRAY = "out.zarr"
FORMAT = "masktwins-infer-staging"
STAGING_SUFFIX, CLAIM_SUFFIX, LOCK_SUFFIX = ".partial", ".commit", ".lock"


# ---------------------------------------------------------------------------------- shards
def shard_indices(total: int, shard: tuple[int, int] | None) -> range:
    """Indices of the blocks (of ``total``) that shard (i, N) predicts: round robin, 1-based i."""
    if shard is None:
        return range(total)
    index, count = shard
    if not 1 <= index <= count:
        raise MaskTwinsError(f"shard {index}/{count}: expected i/N with 1 <= i <= N (1-based)")
    return range(index - 1, total, count)


def shard_text(shard: tuple[int, int] | None) -> str:
    """``"i/N"``, or ``""`` for a run over all blocks."""
    return "" if shard is None else f"{shard[0]}/{shard[1]}"


# -------------------------------------------------------------------------------- manifest
def file_sha256(path: str | Path, buffer_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a whole file (the checkpoint's content fingerprint)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for piece in iter(lambda: stream.read(buffer_bytes), b""):
            digest.update(piece)
    return digest.hexdigest()


def make_manifest(work: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    """A manifest: ``work`` (compared between runs; JSON-able values) and ``info`` (not compared,
    e.g. the checkpoint path). Tuples become lists, as they are after a JSON round trip."""
    return json.loads(json.dumps({"format": FORMAT, "version": 1, **work, "info": info}))


def fingerprint(manifest: dict[str, Any]) -> str:
    """Hex SHA-256 of the compared part of a manifest (stored with the finished output)."""
    work = {key: value for key, value in manifest.items() if key != "info"}
    return hashlib.sha256(json.dumps(work, sort_keys=True).encode()).hexdigest()


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as ``{"a.b": leaf}``."""
    if not isinstance(value, dict):
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, item in value.items():
        flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def manifest_difference(ours: dict[str, Any], theirs: dict[str, Any]) -> str | None:
    """None when two manifests describe the same work, else a short text naming what differs."""
    mine, other = _flatten({**ours, "info": {}}), _flatten({**theirs, "info": {}})
    keys = [key for key in dict.fromkeys([*mine, *other]) if mine.get(key) != other.get(key)]
    if not keys:
        return None
    key = keys[0]
    if key.startswith("checkpoint"):
        paths = (ours.get("info", {}).get("checkpoint"), theirs.get("info", {}).get("checkpoint"))
        text = f"checkpoint: {paths[0]} in this run, {paths[1]} with other content in the folder"
    else:
        text = f"{key}: {mine.get(key)!r} in this run, {other.get(key)!r} in the folder"
    return text + (f"; {len(keys) - 1} more difference(s)" if len(keys) > 1 else "")


# ------------------------------------------------------------------------------ durability
def _write_json_durably(path: Path, value: dict[str, Any]) -> None:
    """Write a small JSON file durably and atomically."""
    with atomic_open(path, "w") as stream:
        json.dump(value, stream, indent=2, sort_keys=True)
        stream.write("\n")


def claim_path(root: Path) -> Path:
    """Name a staging folder takes while one process commits it."""
    return root.with_name(root.name.removesuffix(STAGING_SUFFIX) + CLAIM_SUFFIX)


def lock_path(root: Path) -> Path:
    """The lock file of the processes writing a staging folder (see :mod:`..io.locks`)."""
    return root.with_name(root.name.removesuffix(STAGING_SUFFIX) + LOCK_SUFFIX)


# --------------------------------------------------------------------------------- staging
class Staging:
    """A staging folder (see the module docstring); ``root`` ends with ``.partial``."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def array_uri(self, dataset: str) -> str:
        """URI of the output array inside the staging folder."""
        return f"{self.root / ARRAY}/{dataset}"

    def manifest(self) -> dict[str, Any]:
        """The stored manifest; MaskTwinsError if the folder is not a staging folder."""
        try:
            manifest = json.loads((self.root / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise MaskTwinsError(f"{self.root}: not a masktwins staging folder (no readable "
                                 f"{MANIFEST}: {err.__class__.__name__}); pass --restart to "
                                 "discard it") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise MaskTwinsError(f"{self.root}: not a masktwins staging folder ({MANIFEST} is "
                                 "foreign); pass --restart to discard it")
        return manifest

    def done(self) -> set[int]:
        """Indices of the blocks recorded as written."""
        return {int(name) for name in os.listdir(self.root / DONE) if name.isdigit()}

    def is_done(self, index: int) -> bool:
        """Whether block ``index`` is recorded (by this or another process)."""
        return (self.root / DONE / str(index)).exists()

    def mark_done(self, index: int) -> None:
        """Record block ``index``; call only after its data is written and fsynced.

        The marker is an empty file, so its creation is atomic. It is not fsynced itself: a
        marker lost in a machine crash only means that block is predicted again, while one that
        survives names data that reached the disk before the marker existed.
        """
        os.close(os.open(self.root / DONE / str(index), os.O_WRONLY | os.O_CREAT, 0o644))

    def claim(self) -> Path | None:
        """Rename the folder to its claim name; None when another process claimed it first."""
        claimed = claim_path(self.root)
        try:
            os.rename(self.root, claimed)
        except FileNotFoundError:
            return None
        except OSError as err:
            if err.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise MaskTwinsError(f"{claimed} exists: another process is committing this "
                                     "output, or its commit was interrupted; rerun later") from None
            raise
        return claimed

    def discard(self) -> None:
        """Delete the staging folder and a claim of it."""
        for folder in (self.root, claim_path(self.root)):
            shutil.rmtree(folder, ignore_errors=True)


def open_staging(root: Path, manifest: dict[str, Any], build: Callable[[Path], None],
                 restart: bool = False) -> tuple[Staging, bool]:
    """The staging folder for ``manifest``: reused when its manifest matches, else created.

    Args:
        root: staging folder path (``....partial``).
        manifest: from :func:`make_manifest`.
        build: creates the empty output container at the path it is given (``.../out.zarr``).
        restart: discard an existing staging folder first (never with shards running).

    Returns:
        (staging, whether this call created it). MaskTwinsError when the folder was made for
        other work, naming the folder and what differs.
    """
    staging = Staging(root)
    if restart:
        staging.discard()
    created = False
    if not root.exists():
        created = _create(root, manifest, build)
    difference = manifest_difference(manifest, staging.manifest())
    if difference:
        raise MaskTwinsError(f"{root}: staging folder of another infer run ({difference}); pass "
                             "--restart to discard it, or choose another output (nothing was "
                             "changed)")
    return staging, created


def _create(root: Path, manifest: dict[str, Any], build: Callable[[Path], None]) -> bool:
    """Build a staging folder under a unique name and rename it to ``root``; False when another
    process created ``root`` first (its folder is then used)."""
    sweep_stale_temporaries(root)  # a folder a killed process was building
    temporary = temporary_sibling(root)
    try:
        (temporary / DONE).mkdir(parents=True)
        build(temporary / ARRAY)
        _write_json_durably(temporary / MANIFEST, manifest)
        try:
            os.rename(temporary, root)
        except OSError:
            if root.is_dir():
                return False
            raise
        fsync_path(root.parent)
        return True
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
