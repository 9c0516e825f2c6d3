"""Durable atomic writes: a file or folder appears under its final name complete, or not at all.

One protocol for every output of the package:

- small files (:func:`atomic_path`, :func:`atomic_open`, :func:`write_text_atomic`): write a
  hidden temporary sibling ``.NAME.tmp-PID-RANDOM``, flush and fsync it, rename it onto the final
  name (atomic on POSIX), fsync the folder so the rename itself survives a power cut; on any
  error the temporary is removed and an existing file is left as it was;
- folders (:func:`swap_in`): a complete staged folder replaces the target by two renames (the old
  one is moved aside first, since a folder cannot be renamed over a non-empty one), then the
  folder is fsynced and the old copy deleted. Between the two renames the target is briefly
  absent, never partial.

A kill between writing and renaming leaves only the hidden temporary, never a truncated file
under the final name (tested by killing a writer there); the next write of the same file
removes such leftovers once their process is gone.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def fsync_path(path: Path) -> None:
    """Flush a file or folder to stable storage; absent paths are skipped, and folders where
    the file system cannot fsync them."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(descriptor)
    except OSError:  # some file systems cannot fsync directories
        pass
    finally:
        os.close(descriptor)


HOST = socket.gethostname().replace(os.sep, "_").replace("-", "_") or "host"


def temporary_sibling(path: Path, kind: str = "tmp") -> Path:
    """A hidden unique name beside ``path``: ``.NAME.KIND-HOST-PID-RANDOM`` (the host and process
    that write it, so a later run can tell a dead writer's leftover from a live one's work)."""
    return path.with_name(f".{path.name}.{kind}-{HOST}-{os.getpid()}-{secrets.token_hex(4)}")


STALE_SECONDS = 60.0


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _writer_gone(tag: str, age_seconds: float) -> bool:
    """Whether the writer named by a temporary's ``HOST-PID-RANDOM`` tag is gone: on this host,
    its process has exited; elsewhere (a shared file system) or in the older ``PID-RANDOM`` form,
    its process is not running here and the file has not changed for a minute."""
    parts = tag.rsplit("-", 2)
    if len(parts) == 3 and parts[1].isdigit() and parts[0] == HOST:
        return not _process_alive(int(parts[1]))
    pid = parts[1] if len(parts) == 3 else tag.split("-", 1)[0]
    alive_here = pid.isdigit() and _process_alive(int(pid))
    return not alive_here and age_seconds > STALE_SECONDS


def sweep_stale_temporaries(path: Path) -> list[Path]:
    """Remove the temporaries killed writers of ``path`` left behind (hidden siblings
    ``.NAME.tmp-...`` whose writer is gone, see :func:`_writer_gone`). Returns them."""
    removed = []
    prefix = f".{path.name}.tmp-"
    try:
        siblings = list(path.parent.iterdir())
    except OSError:
        return removed
    for sibling in siblings:
        if not sibling.name.startswith(prefix):
            continue
        try:
            stale = _writer_gone(sibling.name[len(prefix):], time.time() - sibling.lstat().st_mtime)
        except OSError:
            continue
        if stale:
            _remove(sibling)
            removed.append(sibling)
    return removed


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path for any writer (``torch.save``, h5py, zarr, an image library);
    when the body succeeds the file or folder written there replaces ``path``
    (:func:`swap_in`); on error (or a kill) the temporary goes and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temporaries(path)
    temporary = temporary_sibling(path)
    try:
        yield temporary
        swap_in(temporary, path)
    finally:
        _remove(temporary)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w",
                encoding: str | None = "utf-8") -> Iterator[IO]:
    """``open`` for writing through :func:`atomic_path` (``mode`` ``w`` or ``wb``)."""
    with atomic_path(path) as temporary:
        with open(temporary, mode, encoding=None if "b" in mode else encoding) as stream:
            yield stream
            stream.flush()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write a small text file durably and atomically."""
    with atomic_open(path, "w") as stream:
        stream.write(text)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write a small binary file durably and atomically."""
    with atomic_open(path, "wb") as stream:
        stream.write(data)


def swap_in(staged: Path, target: Path) -> None:
    """Move a complete staged file or folder onto ``target``, replacing an existing one; the
    folder is fsynced after the rename and the old copy deleted last."""
    fsync_path(staged)
    if staged.is_dir() and target.exists():
        old = temporary_sibling(target, "old")
        os.replace(target, old)  # a folder cannot be renamed over a non-empty one
        try:
            os.replace(staged, target)
        except BaseException:
            os.replace(old, target)
            raise
        fsync_path(target.parent)
        _remove(old)
    else:  # files, and folders onto nothing, are replaced in one rename
        os.replace(staged, target)
        fsync_path(target.parent)
