"""`masktwins infer --workers N` on daisy: real worker processes pull blocks from daisy's
scheduler and give the output of a single-process run; a rerun after a partial run skips the
recorded blocks (daisy's check function reads our records); bad worker options are one-line
errors. Each worker process imports torch, so every daisy run here costs a few seconds."""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import assert_user_error, invoke, snapshot

from masktwins_cli.errors import MaskTwinsError
from masktwins_cli.inference.blocks import BlockPlan
from masktwins_cli.inference.distributed import (
    WorkerSpec,
    attach_staging,
    available_cores,
    block_index,
    infer_with_daisy,
    worker_error,
    worker_threads,
)
from masktwins_cli.inference.predict import InferSetup, infer_volume
from masktwins_cli.io.volumes import open_volume, write_volume
from tiny_data import blob_volume

if sys.version_info < (3, 11):  # daisy 2 needs Python 3.11; where it can be installed it must be
    pytest.importorskip("daisy", reason="daisy 2 needs Python >= 3.11")

SHAPE = (3, 64, 64)  # (z, y, x); 2-D model, blocks of one 1 x 16 x 16 chunk: 48 blocks
BLOCKS = "infer.block_size=[1,16,16]"
COUNTS = re.compile(r"(\d+) predicted, (\d+) already done, (\d+) blocks in all")


@pytest.fixture(scope="module")
def checkpoint(tiny_trained_run) -> Path:
    torch.set_num_threads(1)  # as in the workers (OMP_NUM_THREADS=1 below): identical floats
    return tiny_trained_run / "last.pt"


@pytest.fixture(scope="module")
def volume(checkpoint, tmp_path_factory) -> tuple[str, np.ndarray]:
    """(input URI, output of one single-process run) of a blob image varying along z."""
    folder = tmp_path_factory.mktemp("daisy")
    raw, _ = blob_volume(SHAPE, seed=5)
    uri = f"{folder}/in.zarr/raw"
    write_volume(uri, raw, (40.0, 5.0, 5.0))
    reference = infer_volume(checkpoint, uri, f"{folder}/ref.zarr/p", overrides=[BLOCKS],
                             device="cpu")
    return uri, open_volume(reference.output).read_all()


@pytest.fixture(autouse=True)
def worker_environment(monkeypatch):
    """Workers inherit this environment: one torch thread each, the source tree importable."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")]))


def staging_of(output: Path) -> Path:
    return output.parent.parent / f".{output.parent.name}.{output.name}.partial"


def test_two_local_workers_equal_a_single_process_run(checkpoint, volume, tmp_path, caplog):
    uri, reference = volume
    output = tmp_path / "pred.zarr" / "p"
    with caplog.at_level(logging.INFO, logger="masktwins_cli.inference.distributed"):
        result = infer_with_daisy(checkpoint, uri, str(output), workers=2, overrides=[BLOCKS],
                                  device="cpu")
    assert "0 skipped as recorded by the check function, 48 predicted, 2 worker start(s)" in \
        caplog.text
    assert (result.state, result.predicted, result.skipped, result.blocks) == ("written", 48, 0, 48)
    assert np.array_equal(open_volume(str(output)).read_all(), reference)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred.zarr"]  # no staging, no logs
    again = infer_with_daisy(checkpoint, uri, str(output), workers=2, overrides=[BLOCKS],
                             device="cpu")
    assert (again.state, again.predicted) == ("up-to-date", 0)


def test_a_rerun_with_workers_skips_the_recorded_blocks(checkpoint, volume, tmp_path, caplog):
    """Half the blocks recorded by a single-process shard; the daisy run (its workers started
    through --worker-command, as on SLURM) predicts only the other half."""
    uri, reference = volume
    output = tmp_path / "pred.zarr" / "p"
    infer_volume(checkpoint, uri, str(output), overrides=[BLOCKS], device="cpu", shard=(1, 2))
    chunks = staging_of(output) / "out.zarr" / "p" / "c"
    before = {p: p.stat().st_mtime_ns for p in chunks.rglob("*") if p.is_file()}
    assert len(before) == 24
    with caplog.at_level(logging.INFO, logger="masktwins_cli.inference.distributed"):
        result = invoke("infer", checkpoint, uri, "-o", output, "--device", "cpu", "--set",
                        BLOCKS, "--workers", 2, "--worker-command", "env MASKTWINS_TEST=1 {cmd}")
    assert result.exit_code == 0, result.output
    assert "24 skipped as recorded by the check function, 24 predicted" in caplog.text
    assert tuple(map(int, COUNTS.search(result.stdout).groups())) == (24, 24, 48), result.stdout
    assert "wrote" in result.stdout and "2 daisy worker(s)" in result.stdout
    assert np.array_equal(open_volume(str(output)).read_all(), reference)
    after = {p: (output / "c" / p.relative_to(chunks)).stat().st_mtime_ns for p in before}
    assert after == before  # recorded blocks were not predicted again
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred.zarr"]


@pytest.mark.parametrize("extra,fragments", [
    (["--workers", "0"], ["--workers 0", "at least 1"]),
    (["--workers", "-2"], ["--workers -2", "at least 1"]),
    (["--workers", "2", "--shard", "1/2"], ["--shard", "--workers"]),
    (["--worker-command", "srun {cmd}"], ["--worker-command", "--workers N"]),
    (["--workers", "2", "--worker-command", "srun"], ["--worker-command", "{cmd}"]),
])
def test_bad_worker_options_are_one_line_errors(checkpoint, volume, tmp_path, extra, fragments):
    before = snapshot(tmp_path)
    result = invoke("infer", checkpoint, volume[0], "-o", tmp_path / "o.zarr/p", *extra)
    assert_user_error(result, *fragments)
    assert snapshot(tmp_path) == before


def test_a_failing_worker_command_is_a_one_line_error(checkpoint, volume, tmp_path):
    before = snapshot(tmp_path)
    result = invoke("infer", checkpoint, volume[0], "-o", tmp_path / "o.zarr/p", "--device", "cpu",
                    "--set", BLOCKS, "--workers", 2, "--worker-command", "false {cmd}")
    assert_user_error(result, "daisy workers failed", "exited with code 1", "infer-worker")
    assert snapshot(tmp_path) == before  # no block was done: the staging folder is gone


def test_infer_worker_without_a_scheduler_is_a_one_line_error(checkpoint, volume, tmp_path,
                                                              monkeypatch):
    monkeypatch.delenv("DAISY_CONTEXT", raising=False)
    result = invoke("infer-worker", checkpoint, volume[0], "-o", tmp_path / "o.zarr/p")
    assert_user_error(result, "DAISY_CONTEXT", "--workers")


def test_a_worker_attaches_only_to_a_staging_folder_of_the_same_work(checkpoint, volume, tmp_path):
    uri = volume[0]
    output = str(tmp_path / "pred.zarr" / "p")
    with pytest.raises(MaskTwinsError, match="does not exist"):
        attach_staging(InferSetup.prepare(checkpoint, uri, output, [BLOCKS]))
    infer_volume(checkpoint, uri, output, overrides=[BLOCKS], device="cpu", shard=(1, 2))
    staging = attach_staging(InferSetup.prepare(checkpoint, uri, output, [BLOCKS]))
    assert len(staging.done()) == 24
    other = InferSetup.prepare(checkpoint, uri, output, [BLOCKS, "infer.overlap=0.5"])
    with pytest.raises(MaskTwinsError, match=r"arguments differ .*infer\.overlap"):
        attach_staging(other)


def test_worker_threads_share_the_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert worker_threads(2) == max(1, available_cores() // 2)
    assert worker_threads(10 * available_cores()) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert worker_threads(2) == 3
    spec = WorkerSpec("/c.pt", "/in.zarr/raw", "/o.zarr/p", ("infer.overlap=0.5",), threads=2)
    assert spec.argv()[1:] == ["-m", "masktwins_cli.cli", "infer-worker", "/c.pt", "/in.zarr/raw",
                               "-o", "/o.zarr/p", "--weights", "student", "--device", "auto",
                               "--set", "infer.overlap=0.5", "--threads", "2"]


def test_daisy_blocks_map_to_our_block_indices():
    import daisy.v2 as daisy

    plan = BlockPlan((5, 40, 40), (2, 16, 16), (2, 16, 16), (1, 32, 32), (1, 16, 16))
    for index in range(plan.count):
        start = plan.start(index)
        roi = daisy.Roi(start, tuple(min(b, n - s) for s, b, n in
                                     zip(start, plan.block, plan.shape)))
        block = daisy.Block(roi, roi, roi)
        assert block_index(plan, block) == index
    text = "Traceback ...\n  raise err\nmasktwins_cli.errors.MaskTwinsError: in.zarr: NaN values\n"
    assert worker_error(text) == "in.zarr: NaN values"
    assert worker_error("x\nmasktwins: error: bad arguments\n") == "bad arguments"
