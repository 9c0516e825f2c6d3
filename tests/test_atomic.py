"""The one durable atomic writer: a kill between writing and renaming never leaves a truncated
file under the final name, and a failed write leaves the old file as it was."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from masktwins_cli.io.atomic import atomic_open, atomic_path, swap_in, write_text_atomic

KILLED_WRITER = textwrap.dedent("""
    import os, sys
    from masktwins_cli.io import atomic

    def killed_at_rename(*args):      # the process dies between write and rename
        os.kill(os.getpid(), 9)

    atomic.os.replace = killed_at_rename
    with atomic.atomic_open(sys.argv[1], "wb") as stream:
        stream.write(b"x" * 5_000_000)
""")


@pytest.mark.parametrize("existing", [None, b"old complete content"])
def test_a_kill_between_write_and_rename_leaves_no_partial_file(tmp_path, existing):
    target = tmp_path / "out.bin"
    if existing is not None:
        target.write_bytes(existing)
    done = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(target)], timeout=120)
    assert done.returncode == -signal.SIGKILL
    if existing is None:
        assert not target.exists()
    else:
        assert target.read_bytes() == existing
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "out.bin"]
    assert all(name.startswith(".out.bin.tmp-") for name in leftovers)  # hidden, recognisable


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "recipe.toml"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(target, "w") as stream:
        stream.write("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recipe.toml"]


def test_writes_land_complete_and_fsync_the_file_and_folder(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")),
                                                 real_fsync(fd)))
    write_text_atomic(tmp_path / "a" / "b.txt", "hello")
    assert (tmp_path / "a" / "b.txt").read_text() == "hello"
    assert any(".b.txt.tmp-" in s for s in synced) and str(tmp_path / "a") in synced
    with atomic_path(tmp_path / "c.bin") as temporary:
        temporary.write_bytes(b"abc")
    assert (tmp_path / "c.bin").read_bytes() == b"abc"


def test_swap_in_replaces_a_folder_whole(tmp_path):
    target, staged = tmp_path / "out.zarr", tmp_path / ".staged"
    (target / "old").mkdir(parents=True)
    (staged / "new").mkdir(parents=True)
    swap_in(staged, target)
    assert sorted(p.name for p in target.iterdir()) == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.zarr"]


def test_the_next_write_sweeps_a_dead_writers_leftover(tmp_path):
    target = tmp_path / "last.pt"
    dead = tmp_path / ".last.pt.tmp-999999999-abcd1234"  # no such process
    live = tmp_path / f".last.pt.tmp-{os.getpid()}-abcd1234"  # a writer still running
    fresh = tmp_path / ".last.pt.tmp-999999998-00000000"  # too new to judge
    other = tmp_path / ".other.pt.tmp-999999999-abcd1234"
    for path in (dead, live, fresh, other):
        path.write_bytes(b"partial")
    old = 1_000_000_000
    for path in (dead, live, other):
        os.utime(path, (old, old))
    write_text_atomic(target, "new")
    assert not dead.exists()
    assert live.exists() and fresh.exists() and other.exists()
    assert target.read_text() == "new"


def test_a_leftover_of_this_host_is_swept_at_once_another_hosts_after_a_minute(tmp_path):
    """A writer killed a moment ago on this machine leaves a temporary the next write removes
    (a crash-and-rerun leaves nothing behind); one named by another host may belong to a live
    writer on a shared file system and waits for the age rule."""
    from masktwins_cli.io.atomic import HOST

    target = tmp_path / "recipe.toml"
    here = tmp_path / f".recipe.toml.tmp-{HOST}-999999999-abcd1234"
    elsewhere = tmp_path / ".recipe.toml.tmp-othernode-999999999-abcd1234"
    running = tmp_path / f".recipe.toml.tmp-{HOST}-{os.getpid()}-abcd1234"
    for path in (here, elsewhere, running):
        path.write_bytes(b"partial")
    write_text_atomic(target, "new")
    assert not here.exists() and elsewhere.exists() and running.exists()
    old = 1_000_000_000
    os.utime(elsewhere, (old, old))
    write_text_atomic(target, "newer")
    assert not elsewhere.exists() and running.exists()
