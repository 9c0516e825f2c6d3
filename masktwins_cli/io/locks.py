"""An advisory lock shared by the processes that write one output (``infer`` runs, shards).

One small lock file holds two POSIX record locks (``fcntl.lockf`` byte ranges), which the kernel
drops when their process exits or is killed, also over NFS v4:

* byte 0, the *work* lock: every process that may write into the run's staging folder holds it
  shared; the one that commits (or discards) the folder needs it exclusive, so it cannot act
  while another process is still writing, and a folder found in a committing state while one
  holds the lock shared can only have been left by a process that died;
* byte 1, the *setup* lock: held exclusive while a process tidies up after a dead process and
  opens the staging folder, so two starting processes never do that at once.

The last process to let go deletes the lock file (holding both locks exclusive); a process that
locked a file someone deleted meanwhile notices (its inode is no longer the path's) and retries
with the new one. Where the file system has no record locks (some Lustre mounts), a warning is
logged once and the locks always succeed, which is as safe as the run without locks.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

WORK, SETUP = 0, 1
_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
_warned: set[str] = set()


class OutputLock:
    """The lock of one output (see the module docstring); ``path`` is the lock file."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._fd: int | None = None
        self.supported = fcntl is not None

    # ------------------------------------------------------------------------------ primitives
    def _lock(self, kind: str, start: int, wait: bool) -> bool:
        """Lock byte ``start`` ('shared', 'exclusive' or 'none'); False when ``wait`` is off and
        another process holds a conflicting lock."""
        if not self.supported or self._fd is None:
            return True
        command = {"shared": fcntl.LOCK_SH, "exclusive": fcntl.LOCK_EX, "none": fcntl.LOCK_UN}[kind]
        if not wait and kind != "none":
            command |= fcntl.LOCK_NB
        try:
            fcntl.lockf(self._fd, command, 1, start)
        except OSError as err:
            if err.errno in (errno.EAGAIN, errno.EACCES):
                return False
            if err.errno in _UNSUPPORTED:
                self._unsupported(err)
                return True
            raise
        return True

    def _unsupported(self, err: OSError) -> None:
        self.supported = False
        folder = str(self.path.parent)
        if folder not in _warned:
            _warned.add(folder)
            log.warning("%s: the file system has no record locks (%s); concurrent infer runs on "
                        "one output are not coordinated", folder, os.strerror(err.errno))

    def _open_current(self) -> None:
        """Open the lock file and take the setup lock, retrying when the file was replaced."""
        self.path.parent.mkdir(parents=True, exist_ok=True)  # the output's folder may be new
        while True:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if not self._lock("exclusive", SETUP, wait=False):
                log.info("waiting for another infer process to finish setting up %s", self.path)
                self._lock("exclusive", SETUP, wait=True)
            try:
                same = os.stat(self.path).st_ino == os.fstat(self._fd).st_ino
            except FileNotFoundError:
                same = False
            if same or not self.supported:
                return
            os.close(self._fd)  # the last holder deleted that file meanwhile: take the new one
            self._fd = None

    # -------------------------------------------------------------------------------- protocol
    def enter(self) -> OutputLock:
        """Take the setup lock (exclusive) and the work lock (shared), waiting for a process
        that is setting up or committing."""
        self._open_current()
        if not self._lock("shared", WORK, wait=False):
            log.info("waiting for another infer process to finish committing (%s)", self.path)
            self._lock("shared", WORK, wait=True)
        return self

    def end_setup(self) -> None:
        """Let other processes set up (keep the shared work lock)."""
        self._lock("none", SETUP, wait=False)

    def alone(self) -> bool:
        """Whether no other process holds the work lock now (the shared lock is kept)."""
        if self._lock("exclusive", WORK, wait=False):
            self._lock("shared", WORK, wait=True)
            return True
        return False

    def exclusive(self) -> bool:
        """Turn the shared work lock exclusive, if no other process holds it; True on success
        (then hold it until :meth:`release`)."""
        return self._lock("exclusive", WORK, wait=False)

    def release(self) -> None:
        """Drop every lock; the last process to do so deletes the lock file."""
        if self._fd is None:
            return
        try:
            if self.supported and self._lock("exclusive", WORK, wait=False) \
                    and self._lock("exclusive", SETUP, wait=False):
                try:
                    if os.stat(self.path).st_ino == os.fstat(self._fd).st_ino:
                        os.unlink(self.path)
                except FileNotFoundError:
                    pass
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> OutputLock:
        return self.enter()

    def __exit__(self, *exc) -> None:
        self.release()
