"""The commit of `masktwins infer` and processes writing one output at once: a process killed
while committing never costs a finished result (issue 16, cases 1 and 8), two runs on one output
share the work and exactly one commits (case 4), and the output lock behaves as
:mod:`masktwins_cli.io.locks` says."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_infer_resume import (
    CHILD_ENV,
    SMALL_BLOCKS,
    _volume_and_reference,
    cli_command,
    counts,
    staging_of,
)

from masktwins_cli.errors import MaskTwinsError
from masktwins_cli.inference import output as output_module
from masktwins_cli.inference.predict import infer_volume
from masktwins_cli.io.locks import OutputLock
from masktwins_cli.io.volumes import open_volume, write_volume

pytest_plugins = ["test_infer_resume"]  # its checkpoint and small fixtures
LARGE_SHAPE = (16, 160, 160)  # 1600 blocks, several seconds: long enough to run beside another
LARGE_BLOCKS = 16 * 10 * 10


@pytest.fixture(scope="module")
def large(checkpoint, tmp_path_factory) -> tuple[str, np.ndarray]:
    """(input URI, reference output) of a volume whose run lasts several seconds."""
    return _volume_and_reference(checkpoint, tmp_path_factory.mktemp("large"), LARGE_SHAPE)


def hidden_leftovers(folder: Path) -> list[str]:
    """Names below ``folder`` that a finished run must not leave: staging, claim, lock and
    set-aside folders and files."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*")
                  if p.name.endswith((".partial", ".commit", ".lock")) or ".old-" in p.name)


def killed_after_the_move(monkeypatch):
    """Make the next commit die right after the new array is in place (as kill -9 would)."""
    def die(self, claimed):
        raise KeyboardInterrupt

    monkeypatch.setattr(output_module.OutputTarget, "complete_commit", die)


def test_overwrite_killed_after_the_move_then_rerun_keeps_the_result(checkpoint, small, tmp_path,
                                                                     monkeypatch):
    """Case 1: the rerun of an interrupted `--overwrite` took the claim folder (manifest, every
    marker, an empty out.zarr) for a finished run and committed an all-zero array."""
    volume, reference = small
    output = tmp_path / "pred.zarr" / "p"
    write_volume(str(output), np.full_like(reference, 0.25), (40.0, 5.0, 5.0),
                 chunks=(1, 8, 8))  # an old output of other content and many chunk files
    with monkeypatch.context() as patch:
        killed_after_the_move(patch)
        with pytest.raises(KeyboardInterrupt):
            infer_volume(checkpoint, volume, str(output), overrides=[SMALL_BLOCKS], device="cpu",
                         overwrite=True)
    claim = tmp_path / ".pred.zarr.p.commit"
    assert (claim / "manifest.json").is_file() and len(os.listdir(claim / "done")) == 48
    assert not (claim / "out.zarr" / "p").exists()  # the very state the issue found
    assert np.array_equal(open_volume(str(output)).read_all(), reference)

    result = infer_volume(checkpoint, volume, str(output), overrides=[SMALL_BLOCKS], device="cpu",
                          overwrite=True)
    assert (result.state, result.predicted) == ("written", 48)  # --overwrite recomputes
    assert np.array_equal(open_volume(str(output)).read_all(), reference)
    assert hidden_leftovers(tmp_path) == []


def test_a_run_without_overwrite_after_that_kill_finds_the_output_complete(checkpoint, small,
                                                                          tmp_path, monkeypatch):
    volume, reference = small
    output = tmp_path / "pred.zarr" / "p"
    with monkeypatch.context() as patch:
        killed_after_the_move(patch)
        with pytest.raises(KeyboardInterrupt):
            infer_volume(checkpoint, volume, str(output), overrides=[SMALL_BLOCKS], device="cpu")
    assert (tmp_path / ".pred.zarr.p.commit").is_dir()
    result = infer_volume(checkpoint, volume, str(output), overrides=[SMALL_BLOCKS], device="cpu")
    assert result.state == "up-to-date"
    assert np.array_equal(open_volume(str(output)).read_all(), reference)
    assert hidden_leftovers(tmp_path) == []  # case 8: the claim folder was tidied up


def test_a_claim_from_before_the_move_is_committed_again(checkpoint, small, tmp_path, monkeypatch):
    volume, reference = small
    output = tmp_path / "pred.zarr" / "p"
    write_volume(str(output), np.full_like(reference, 0.25), (40.0, 5.0, 5.0))
    def killed_between_the_renames(self, claimed):  # old array set aside, then killed
        os.replace(output, output.with_name(".p.old-12345"))
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(output_module.OutputTarget, "commit", killed_between_the_renames)
        with pytest.raises(KeyboardInterrupt):
            infer_volume(checkpoint, volume, str(output), overrides=[SMALL_BLOCKS], device="cpu",
                         overwrite=True)
    assert not output.exists() and list(output.parent.glob(".p.old-*"))  # old data kept aside
    result = infer_volume(checkpoint, volume, str(output), overrides=[SMALL_BLOCKS], device="cpu")
    assert (result.state, result.predicted, result.skipped) == ("written", 0, 48)
    assert np.array_equal(open_volume(str(output)).read_all(), reference)
    assert hidden_leftovers(tmp_path) == []


def test_a_staging_folder_without_its_array_is_refused_not_committed(checkpoint, small, tmp_path):
    volume, _ = small
    output = tmp_path / "pred.zarr" / "p"
    infer_volume(checkpoint, volume, str(output), overrides=[SMALL_BLOCKS], device="cpu",
                 shard=(1, 2))
    shutil.rmtree(staging_of(output) / "out.zarr" / "p")
    with pytest.raises(MaskTwinsError, match="staging array out.zarr/p is missing.*--restart"):
        infer_volume(checkpoint, volume, str(output), overrides=[SMALL_BLOCKS], device="cpu",
                     shard=(2, 2))
    assert not output.exists()


def wait_for_blocks(child: subprocess.Popen, done: Path, count: int, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not (done.is_dir() and len(os.listdir(done)) >= count):
        assert child.poll() is None, ("infer ended too soon", child.communicate())
        assert time.monotonic() < deadline, f"fewer than {count} blocks in {seconds} s"
        time.sleep(0.002)


@pytest.mark.parametrize("second", [(), ("--overwrite",)])
def test_two_unsharded_runs_on_one_output_share_the_work(checkpoint, large, tmp_path, second):
    """Case 4: the second run raced the first (both predicted everything, one died with
    'No such file or directory' and left a staging folder without a manifest)."""
    volume, reference = large
    output = tmp_path / "pred.zarr" / "p"
    first = subprocess.Popen(cli_command(checkpoint, volume, output), env=CHILD_ENV,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_blocks(first, staging_of(output) / "done", 3)
    other = subprocess.Popen(cli_command(checkpoint, volume, output, *second), env=CHILD_ENV,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reports = [child.communicate(timeout=300) for child in (first, other)]
    assert [first.returncode, other.returncode] == [0, 0], reports
    lines = [stdout for stdout, _ in reports]
    assert sum(line.startswith("wrote") for line in lines) == 1, lines  # exactly one commits
    predicted = [counts(line)[0] for line in lines]
    assert predicted[1] > 0, lines  # the second one helped ...
    assert sum(predicted) <= LARGE_BLOCKS + 16, lines  # ... from the other end (a few meet)
    assert np.array_equal(open_volume(str(output)).read_all(), reference)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred.zarr"]


def test_an_unsharded_run_beside_running_shards_helps_them(checkpoint, large, tmp_path):
    """The README's advice (run once without --shard to finish) while shards still run."""
    volume, reference = large
    output = tmp_path / "pred.zarr" / "p"
    shard = subprocess.Popen(cli_command(checkpoint, volume, output, "--shard", "1/2"),
                             env=CHILD_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_blocks(shard, staging_of(output) / "done", 2)
    whole = subprocess.run(cli_command(checkpoint, volume, output), env=CHILD_ENV,
                           capture_output=True, text=True, timeout=300)
    shard_out, shard_err = shard.communicate(timeout=300)
    assert (shard.returncode, whole.returncode) == (0, 0), (shard_err, whole.stderr)
    assert "wrote" in shard_out + whole.stdout
    assert np.array_equal(open_volume(str(output)).read_all(), reference)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred.zarr"]


def test_restart_is_refused_while_another_process_writes(checkpoint, large, tmp_path):
    volume, _ = large
    output = tmp_path / "pred.zarr" / "p"
    first = subprocess.Popen(cli_command(checkpoint, volume, output), env=CHILD_ENV,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_blocks(first, staging_of(output) / "done", 2)
        restart = subprocess.run(cli_command(checkpoint, volume, output, "--restart"),
                                 env=CHILD_ENV, capture_output=True, text=True, timeout=300)
        assert restart.returncode == 2
        assert "--restart: another infer process is writing" in restart.stderr
        assert "Traceback" not in restart.stderr
    finally:
        first.communicate(timeout=300)
    assert first.returncode == 0 and output.exists()


# ------------------------------------------------------------------------------- the lock
def _hold(path: str, started, leave) -> None:
    lock = OutputLock(path).enter()
    lock.end_setup()
    started.set()
    leave.wait(30)
    lock.release()


def test_output_lock_shared_work_exclusive_commit_and_cleanup(tmp_path):
    path = tmp_path / ".out.zarr.p.lock"
    context = multiprocessing.get_context("spawn")
    started, leave = context.Event(), context.Event()
    holder = context.Process(target=_hold, args=(str(path), started, leave))
    holder.start()
    try:
        assert started.wait(60)
        mine = OutputLock(path).enter()  # setup is free again, work is shared
        assert not mine.alone() and not mine.exclusive()
        mine.end_setup()
        leave.set()
        holder.join(30)
        assert holder.exitcode == 0
        assert mine.alone() and mine.exclusive()  # the other process is gone
        mine.release()
        assert not path.exists()  # the last one to let go removes the file
    finally:
        leave.set()
        holder.join(30)


def test_output_lock_taken_again_after_its_holder_was_killed(tmp_path):
    path = tmp_path / ".out.zarr.p.lock"
    code = ("import time; from masktwins_cli.io.locks import OutputLock; "
            f"OutputLock({str(path)!r}).enter().end_setup(); print('held', flush=True); "
            "time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code], env=CHILD_ENV, stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        mine = OutputLock(path).enter()
        assert not mine.exclusive()
        child.kill()
        child.wait(30)
        assert mine.exclusive()  # the kernel dropped the killed process's locks
        mine.release()
        assert not path.exists()
    finally:
        child.kill()
        child.wait(30)


def test_an_output_in_folders_that_do_not_exist_yet_is_written(checkpoint, small, tmp_path):
    volume, reference = small
    output = tmp_path / "new" / "deeper" / "pred.zarr" / "p"
    result = infer_volume(checkpoint, volume, str(output), overrides=[SMALL_BLOCKS], device="cpu")
    assert result.state == "written"
    assert np.array_equal(open_volume(str(output)).read_all(), reference)
    assert hidden_leftovers(tmp_path) == []


def test_two_class_manifests_do_not_name_infer_classes(checkpoint, small, tmp_path):
    """infer.classes (new) only enters the manifest of K > 2 models: two-class staging folders
    and outputs from before it keep matching."""
    from masktwins_cli.config.recipe import recipe_from_dict
    from masktwins_cli.inference.manifest import manifest_infer_settings
    from masktwins_cli.io.checkpoints import load_checkpoint

    recipe = load_checkpoint(checkpoint)["recipe"]
    assert "classes" not in manifest_infer_settings(recipe_from_dict(recipe))
    recipe["model"]["num_classes"] = 3
    assert manifest_infer_settings(recipe_from_dict(recipe))["classes"] == "map"
