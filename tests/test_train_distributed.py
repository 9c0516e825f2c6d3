"""Multi-process training under torchrun on CPU (2 ranks, gloo): it runs, rank 0 alone writes,
the ranks agree, gradients are the DDP mean, and resume is exact for the same world size."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from masktwins_cli.config.recipe import load_recipe
from masktwins_cli.errors import MaskTwinsError
from masktwins_cli.io.checkpoints import load_checkpoint
from masktwins_cli.training.distributed import DIGEST_ENV, state_digest
from masktwins_cli.training.metrics_log import read_log
from masktwins_cli.training.run import train
from tiny_data import write_pair, write_recipe

WORKER = Path(__file__).with_name("ddp_worker.py")


def torchrun(*args, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node=2 --standalone ARGS`` with this interpreter, on CPU."""
    environ = {k: v for k, v in os.environ.items()
               if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    environ.update(CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1", **(env or {}))
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
               "--standalone", *map(str, args)]
    return subprocess.run(command, cwd=cwd, env=environ, capture_output=True, text=True,
                          timeout=300)


def digests(folder: Path) -> list[dict]:
    return [json.loads((folder / f"rank{r}.json").read_text()) for r in (0, 1)]


@pytest.fixture()
def data(tmp_path):
    return write_pair(tmp_path / "data")


def test_cli_two_ranks_agree_and_rank0_writes(tmp_path, data):
    recipe = write_recipe(tmp_path / "r.toml", data, tmp_path / "run")
    done = torchrun("-m", "masktwins_cli.cli", "train", recipe, cwd=tmp_path,
                    env={DIGEST_ENV: str(tmp_path / "digests")})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("trained 4 iterations") == 1  # rank 0 alone prints
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == \
        ["last.pt", "log.jsonl", "recipe.toml"]
    assert [r["step"] for r in read_log(tmp_path / "run" / "log.jsonl")] == [1, 2, 3, 4]
    payload = load_checkpoint(tmp_path / "run" / "last.pt")
    assert payload["step"] == 4 and payload["world_size"] == 2
    rank0, rank1 = digests(tmp_path / "digests")
    assert rank0["student"] == rank1["student"] == state_digest(payload["model"])
    assert rank0["teacher"] == rank1["teacher"] == state_digest(payload["teacher"])
    # each rank drew its own crops and masks
    numpy0, numpy1 = (r["numpy"]["state"] for r in payload["rng_ranks"])
    assert numpy0 != numpy1
    assert not torch.equal(payload["rng_ranks"][0]["mask"], payload["rng_ranks"][1]["mask"])

    # one process: rank 0's random streams are the single-process ones, the weights are not
    single = train(load_recipe(write_recipe(tmp_path / "one.toml", data, tmp_path / "one")))
    one = load_checkpoint(single.last_checkpoint)
    assert one["rng"]["numpy"] == payload["rng"]["numpy"]
    assert torch.equal(one["rng"]["mask"], payload["rng"]["mask"])
    assert any(not torch.equal(one["model"][k], payload["model"][k]) for k in one["model"])

    # a different world size cannot resume: a one-line error, nothing written
    before = (tmp_path / "run" / "last.pt").read_bytes()
    with pytest.raises(MaskTwinsError, match="nproc_per_node=2"):
        train(load_recipe(recipe), resume=True)
    assert (tmp_path / "run" / "last.pt").read_bytes() == before


def test_ddp_gradients_ranks_and_exact_resume(tmp_path, data):
    """Batch norm (several student forwards per step, buffers) through the library API."""
    model = {"norm": "batch"}
    full = write_recipe(tmp_path / "full.toml", data, tmp_path / "full", model=model)
    split = write_recipe(tmp_path / "split.toml", data, tmp_path / "split", model=model)
    report = tmp_path / "report"
    report.mkdir()
    done = torchrun(WORKER, full, split, report, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    for rank in (0, 1):
        check = json.loads((report / f"grad_rank{rank}.json").read_text())
        assert check["max_diff"] <= 1e-5 * check["scale"], check
        assert check["differs_from_own"] > 1e-4 * check["scale"], check  # gradients were averaged
    for name in ("full", "split"):
        rank0, rank1 = digests(report / name)
        assert rank0 == {**rank1, "rank": 0}
    a = load_checkpoint(tmp_path / "full" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "last.pt")
    for key in ("model", "teacher"):
        assert state_digest(a[key]) == state_digest(b[key]), key
    assert state_digest(a["teacher"]) == digests(report / "full")[0]["teacher"]

    def losses(path):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in read_log(path)]

    assert losses(tmp_path / "full" / "log.jsonl") == losses(tmp_path / "split" / "log.jsonl")
