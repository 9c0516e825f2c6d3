"""Resumable and sharded `masktwins infer`: a run killed with SIGKILL resumes to the exact output
of an uninterrupted run without recomputing finished blocks; shards (one after the other and as
concurrent processes) give the same output; a staging folder made for other work is refused;
blockwise reads stay bounded by block + halo and agree with one whole-volume pass."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import assert_user_error, invoke, snapshot

from masktwins_cli.errors import MaskTwinsError
from masktwins_cli.inference import predict, records
from masktwins_cli.inference.blocks import align_block
from masktwins_cli.inference.predict import infer_volume
from masktwins_cli.inference.records import (
    Staging,
    make_manifest,
    open_staging,
    shard_indices,
)
from masktwins_cli.io.checkpoints import load_checkpoint, save_checkpoint
from masktwins_cli.io.volumes import open_volume, write_volume
from tiny_data import blob_volume

SHAPE = (6, 96, 96)  # (z, y, x); 2-D model, blocks of one 16 x 16 tile: 6 * 6 * 6 = 216 blocks
SMALL_SHAPE = (3, 64, 64)  # for the in-process tests: 3 * 4 * 4 = 48 blocks
SMALL_BLOCKS = "infer.block_size=[1,16,16]"
COUNTS = re.compile(r"(\d+) predicted, (\d+) already done, (\d+) blocks in all")
CHILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
             "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]),
                                            os.environ.get("PYTHONPATH", "")])}


@pytest.fixture(scope="module")
def checkpoint(tiny_trained_run) -> Path:
    torch.set_num_threads(1)  # as in the child processes (OMP_NUM_THREADS=1): identical floats
    return tiny_trained_run / "last.pt"


def _volume_and_reference(checkpoint, folder: Path, shape) -> tuple[str, np.ndarray]:
    """A blob image that varies along z, with anisotropic voxels, and the output of one
    uninterrupted in-process run over it with small blocks."""
    raw, _ = blob_volume(shape, seed=3)
    uri = f"{folder}/in.zarr/raw"
    write_volume(uri, raw, (40.0, 5.0, 5.0))
    out = f"{folder}/ref.zarr/p"
    result = infer_volume(checkpoint, uri, out, overrides=[SMALL_BLOCKS], device="cpu")
    assert (result.state, result.predicted) == ("written", result.blocks)
    return uri, open_volume(out).read_all()


@pytest.fixture(scope="module")
def big(checkpoint, tmp_path_factory) -> tuple[str, np.ndarray]:
    """(input URI, reference output) of the 216-block volume, for the child-process tests."""
    return _volume_and_reference(checkpoint, tmp_path_factory.mktemp("big"), SHAPE)


@pytest.fixture(scope="module")
def small(checkpoint, tmp_path_factory) -> tuple[str, np.ndarray]:
    """(input URI, reference output) of the 48-block volume."""
    return _volume_and_reference(checkpoint, tmp_path_factory.mktemp("small"), SMALL_SHAPE)


def cli_command(checkpoint, volume, output, *extra) -> list[str]:
    """`masktwins infer` as a child process (the console script runs masktwins_cli.cli:main)."""
    return [sys.executable, "-m", "masktwins_cli.cli", "infer", str(checkpoint), volume, "-o",
            str(output), "--device", "cpu", "--set", SMALL_BLOCKS, *extra]


def counts(line: str) -> tuple[int, int, int]:
    """(predicted, already done, total) from an infer report line."""
    match = COUNTS.search(line)
    assert match, line
    return tuple(int(g) for g in match.groups())


def staging_of(output: Path) -> Path:
    """The staging folder of output ``X.zarr/p``."""
    return output.parent.parent / f".{output.parent.name}.p.partial"


def chunk_stats(array_dir: Path, indices: set[int]) -> dict[str, tuple[int, int]]:
    """(inode, mtime_ns) of the chunk file of each block (block = one (1, 16, 16) chunk)."""
    grid = (SHAPE[0], SHAPE[1] // 16, SHAPE[2] // 16)
    stats = {}
    for index in indices:
        key = "c/" + "/".join(str(int(i)) for i in np.unravel_index(index, grid))
        stat = (array_dir / key).stat()
        stats[key] = (stat.st_ino, stat.st_mtime_ns)
    return stats


# ------------------------------------------------------------------------------ kill -9
def test_sigkill_mid_run_then_rerun_resumes_to_the_same_output(checkpoint, big, tmp_path):
    volume, reference = big
    output = tmp_path / "pred.zarr" / "p"
    command = cli_command(checkpoint, volume, output)
    done = staging_of(output) / "done"
    child = subprocess.Popen(command, env=CHILD_ENV, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (done.is_dir() and len(os.listdir(done)) >= 3):
        assert child.poll() is None, ("infer ended before it could be killed", child.communicate())
        assert time.monotonic() < deadline, "no block was recorded within 120 s"
        time.sleep(0.002)
    child.send_signal(signal.SIGKILL)
    child.communicate()
    assert child.returncode == -signal.SIGKILL
    markers = {int(name) for name in os.listdir(done)}
    assert 3 <= len(markers) < 216 and not output.exists()
    before = chunk_stats(staging_of(output) / "out.zarr" / "p", markers)

    rerun = subprocess.run(command, env=CHILD_ENV, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    predicted, skipped, total = counts(rerun.stdout)
    assert (skipped, predicted + skipped, total) == (len(markers), 216, 216)
    assert np.array_equal(open_volume(str(output)).read_all(), reference)
    assert chunk_stats(output, markers) == before  # finished blocks were not written again
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred.zarr"]


# ------------------------------------------------------------------------------- shards
def test_shards_one_after_another_equal_a_single_run(checkpoint, small, tmp_path):
    volume, reference = small
    output = tmp_path / "pred.zarr" / "p"
    results = []
    for index in (1, 2, 3):
        results.append(infer_volume(checkpoint, volume, str(output), overrides=[SMALL_BLOCKS],
                                    device="cpu", shard=(index, 3)))
        assert output.exists() == (index == 3)  # only the last shard commits
    assert [r.state for r in results] == ["pending", "pending", "written"]
    assert [r.predicted for r in results] == [16, 16, 16]
    assert [r.remaining for r in results] == [32, 16, 0]
    assert np.array_equal(open_volume(str(output)).read_all(), reference)
    assert not staging_of(output).exists()
    again = invoke("infer", checkpoint, volume, "-o", output, "--device", "cpu", "--set",
                   SMALL_BLOCKS, "--shard", "2/3")  # e.g. a requeued array task
    assert again.exit_code == 0 and "already complete" in again.stdout, again.output


def test_concurrent_shard_processes_equal_a_single_run(checkpoint, big, tmp_path):
    volume, reference = big
    output = tmp_path / "pred.zarr" / "p"
    children = [subprocess.Popen(cli_command(checkpoint, volume, output, "--shard", f"{i}/2"),
                                 env=CHILD_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True) for i in (1, 2)]
    reports = [child.communicate(timeout=300) for child in children]
    assert [child.returncode for child in children] == [0, 0], reports
    lines = [stdout for stdout, _ in reports]
    assert sum("wrote" in line for line in lines) == 1, lines  # exactly one process commits
    assert sum(counts(line)[0] for line in lines) == 216
    assert np.array_equal(open_volume(str(output)).read_all(), reference)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred.zarr"]


def test_a_process_losing_the_creation_race_uses_the_winners_folder(tmp_path):
    root = tmp_path / ".out.zarr.p.partial"
    manifest = make_manifest({"plan": {"blocks": 4}}, {})
    built = []
    first, created = open_staging(root, manifest, built.append)
    assert created and built[0].name == "out.zarr"
    assert built[0].parent.name.startswith(f".{root.name}.tmp-")  # built under a unique name
    assert not records._create(root, manifest, built.append)  # root appeared meanwhile
    second, created = open_staging(root, manifest, built.append)
    assert not created and len(built) == 2 and second.manifest() == first.manifest()
    assert sorted(p.name for p in tmp_path.iterdir()) == [root.name]  # no temporary folders
    with pytest.raises(MaskTwinsError, match=r"plan\.blocks: 5 in this run, 4 in the folder"):
        open_staging(root, make_manifest({"plan": {"blocks": 5}}, {}), built.append)


def test_exactly_one_claim_wins(tmp_path):
    root = tmp_path / ".out.zarr.p.partial"
    (root / "done").mkdir(parents=True)
    first, second = Staging(root).claim(), Staging(root).claim()
    assert first == tmp_path / ".out.zarr.p.commit" and first.is_dir() and second is None


def test_an_interrupted_commit_is_finished_by_the_next_run(checkpoint, small, tmp_path,
                                                          monkeypatch):
    volume, reference = small
    output = tmp_path / "pred.zarr" / "p"
    infer_volume(checkpoint, volume, str(output), overrides=[SMALL_BLOCKS], device="cpu",
                 shard=(1, 2))

    def killed_while_committing(self, claimed):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(predict.OutputTarget, "commit", killed_while_committing)
        with pytest.raises(KeyboardInterrupt):
            infer_volume(checkpoint, volume, str(output), overrides=[SMALL_BLOCKS], device="cpu",
                         shard=(2, 2))
    claimed = tmp_path / ".pred.zarr.p.commit"
    assert claimed.is_dir() and not output.exists()
    left = claimed / "out.zarr" / "p" / "c" / "0" / "0" / f"1.{'ab' * 16}.partial"
    left.write_bytes(b"a chunk file zarr was writing when its process was killed")
    result = infer_volume(checkpoint, volume, str(output), overrides=[SMALL_BLOCKS], device="cpu")
    assert (result.state, result.predicted, result.skipped) == ("written", 0, 48)
    assert np.array_equal(open_volume(str(output)).read_all(), reference)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred.zarr"]
    assert not list(output.rglob("*.partial"))


def test_restart_is_refused_with_a_shard(checkpoint, small, tmp_path):
    result = invoke("infer", checkpoint, small[0], "-o", tmp_path / "o.zarr/p", "--shard", "1/2",
                    "--restart")
    assert_user_error(result, "--restart", "--shard 1/2", ".o.zarr.p.partial")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("text", ["0/2", "3/2", "1/0", "a/b", "1-2", "1", "", "-1/2", "1/2/3"])
def test_bad_shard_is_a_one_line_error(checkpoint, small, tmp_path, text):
    volume = small[0]
    before = snapshot(tmp_path)
    result = invoke("infer", checkpoint, volume, "-o", tmp_path / "o.zarr/p", "--shard", text)
    assert_user_error(result, "--shard", "1 <= i <= N")
    assert snapshot(tmp_path) == before


def test_shards_split_the_blocks_round_robin():
    parts = [list(shard_indices(10, (i, 3))) for i in (1, 2, 3)]
    assert parts == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert list(shard_indices(2, (3, 3))) == [] and list(shard_indices(4, None)) == [0, 1, 2, 3]
    with pytest.raises(MaskTwinsError, match="1-based"):
        shard_indices(10, (4, 3))


def test_blocks_are_whole_chunks():
    assert align_block((6, 16, 16), (1, 64, 64), (6, 64, 64)) == ((6, 16, 16), (1, 16, 16))
    assert align_block((20, 300, 257), (8, 256, 256), (99, 999, 999)) == (
        (21, 300, 258), (7, 150, 129))
    assert align_block((99, 64, 64), (8, 256, 256), (5, 64, 64)) == ((5, 64, 64), (5, 64, 64))


# ------------------------------------------------------------------- manifest mismatch
@pytest.fixture
def half_done(checkpoint, small, tmp_path) -> Path:
    """The output path of a run (over the small volume) whose first shard of two finished."""
    volume = small[0]
    output = tmp_path / "pred.zarr" / "p"
    infer_volume(checkpoint, volume, str(output), overrides=[SMALL_BLOCKS], device="cpu",
                 shard=(1, 2))
    return output


def other_checkpoint(checkpoint: Path, folder: Path) -> Path:
    """The same network with one weight changed."""
    payload = load_checkpoint(checkpoint)
    name = next(iter(payload["model"]))
    payload["model"][name] = payload["model"][name] + 0.01
    return save_checkpoint(folder / "other.pt", {k: v for k, v in payload.items()
                                                 if k not in ("format", "version")})


@pytest.mark.parametrize("change,fragment", [
    ("checkpoint", "checkpoint"),
    ("infer.overlap=0.5", "infer.overlap"),
    ("infer.block_size=[1,32,32]", "infer.block_size"),
    ("--weights", "weights"),
])
def test_a_staging_folder_of_other_work_is_refused(checkpoint, small, half_done, tmp_path,
                                                   change, fragment):
    volume = small[0]
    used = other_checkpoint(checkpoint, tmp_path) if change == "checkpoint" else checkpoint
    extra = ["--set", change] if change.startswith("infer.") else []
    if change == "--weights":
        extra = ["--weights", "teacher"]
    before = snapshot(tmp_path)
    result = invoke("infer", used, volume, "-o", half_done, "--device", "cpu", "--set",
                    SMALL_BLOCKS, *extra)
    assert_user_error(result, staging_of(half_done), fragment, "--restart")
    assert snapshot(tmp_path) == before


def test_restart_discards_a_staging_folder_of_other_work(checkpoint, small, half_done):
    volume = small[0]
    result = invoke("infer", checkpoint, volume, "-o", half_done, "--device", "cpu", "--set",
                    SMALL_BLOCKS, "--set", "infer.overlap=0.5", "--restart")
    assert result.exit_code == 0, result.output
    assert counts(result.stdout) == (48, 0, 48) and "wrote" in result.stdout
    assert half_done.exists() and not staging_of(half_done).exists()


def test_same_work_resumes_without_restart(checkpoint, small, half_done):
    volume, reference = small
    result = invoke("infer", checkpoint, volume, "-o", half_done, "--device", "cpu", "--set",
                    SMALL_BLOCKS)
    assert result.exit_code == 0, result.output
    assert counts(result.stdout) == (24, 24, 48)
    assert np.array_equal(open_volume(str(half_done)).read_all(), reference)


# -------------------------------------------------------------------------- out of core
def test_reads_are_bounded_by_block_plus_halo_and_match_one_pass(checkpoint, big, tmp_path,
                                                                 monkeypatch):
    volume = big[0]  # 6 x 96 x 96: 54 blocks of 1 x 32 x 32
    reads: list[tuple[int, ...]] = []
    original = predict.ZyxView.read

    def spy(self, box):
        data = original(self, box)
        reads.append(data.shape)
        return data

    monkeypatch.setattr(predict.ZyxView, "read", spy)
    # windows of 32 with overlap 0.5 (stride 16) and blocks of 32 put every window of a block
    # where the whole-volume pass puts one, so only float summation order differs
    settings = ["infer.window=[32,32]", "infer.overlap=0.5"]
    whole = infer_volume(checkpoint, volume, str(tmp_path / "whole.zarr/p"), device="cpu",
                         overrides=[*settings, "infer.block_size=[6,96,96]"])
    assert whole.blocks == 1 and reads == [SHAPE]
    reads.clear()
    tiled = infer_volume(checkpoint, volume, str(tmp_path / "tiled.zarr/p"), device="cpu",
                         overrides=[*settings, "infer.block_size=[1,32,32]"])
    bound = 1 * (32 + 2 * 16) * (32 + 2 * 16)  # the windows touching a block: 16 beyond each side
    assert tiled.blocks == 54 and len(reads) == 54
    assert max(np.prod(shape) for shape in reads) == bound
    np.testing.assert_allclose(open_volume(tiled.output).read_all(),
                               open_volume(whole.output).read_all(), atol=1e-5)


def test_a_failed_run_keeps_finished_blocks_only(checkpoint, small, tmp_path, monkeypatch):
    volume, reference = small
    calls = []
    real = predict.predict_box

    def fails_at_the_fifth_block(*args, **kwargs):
        calls.append(1)
        if len(calls) in (1, 5):
            raise MaskTwinsError("simulated failure")
        return real(*args, **kwargs)

    output = tmp_path / "pred.zarr" / "p"
    with monkeypatch.context() as patch:
        patch.setattr(predict, "predict_box", fails_at_the_fifth_block)
        for _ in range(2):  # nothing done: no staging left; then 3 blocks done: kept
            with pytest.raises(MaskTwinsError, match="simulated"):
                infer_volume(checkpoint, volume, str(output), overrides=[SMALL_BLOCKS],
                             device="cpu")
            assert not output.exists()
            assert staging_of(output).exists() == (len(calls) == 5)
    result = infer_volume(checkpoint, volume, str(output), overrides=[SMALL_BLOCKS], device="cpu")
    assert (result.predicted, result.skipped) == (45, 3)
    assert np.array_equal(open_volume(str(output)).read_all(), reference)
