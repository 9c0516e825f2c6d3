"""bench/device_check.py, the one GPU command, proven at toy sizes on the CPU so it cannot rot:
the smoke run writes every field the full run writes; the plan fits 8 minutes; the budget
guard skips parts with a note and leaves no half-written figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "device_check.py"
DATA = REPO.parent / "shared" / "data"


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def test_smoke_run_writes_every_figure_and_the_table(tmp_path):
    done = run("--scale", "smoke", "--out", str(tmp_path / "out"), "--data", str(DATA))
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "out" / "device_check.json").read_text())
    assert set(report) == {"scale", "budget_seconds", "seconds", "device", "plan", "parts", "targets"}
    assert set(report["device"]) == {"device", "device_name", "torch", "cuda", "cudnn", "python",
                                     "commit"}
    assert [p["part"] for p in report["plan"]] == ["train_speed", "infer_speed", "real_pair"]
    parts = report["parts"]
    for name in ("train_speed", "infer_speed"):
        assert parts[name]["status"] == "done", parts[name]
    assert set(parts["train_speed"]["figures"]) == {"3d", "2d"}
    for row in parts["train_speed"]["figures"].values():
        assert row["steps_per_second"]["naive"] > 0 and row["speedup"]["masktwins"] > 0
    infer = parts["infer_speed"]["figures"]
    assert set(infer["seconds"]) == {"masktwins", "monai", "network"}
    assert len(infer["peak_rss_gib"]) == 2 and infer["speedup_vs_monai"] > 0
    if DATA.is_dir():
        assert parts["real_pair"]["status"] == "done", parts["real_pair"]
        methods = [row["method"] for row in parts["real_pair"]["figures"]["summary"]]
        assert methods == ["NoAdapt", "MaskTwins"]
    else:  # stated, not silently missing
        assert parts["real_pair"]["status"] == "skipped" and parts["real_pair"]["note"]
    assert len(report["targets"]) == 4
    assert all(t["value"] is not None for t in report["targets"][:4] if parts["infer_speed"]["figures"])
    table = (tmp_path / "out" / "device_check.md").read_text()
    assert "| train_speed | done |" in table and "| target | value | met |" in table
    assert report["seconds"] < 60, report["seconds"]


def test_the_plan_fits_eight_minutes():
    done = run("--dry-run")
    assert done.returncode == 0, done.stdout
    assert "budget 480 s" in done.stdout
    total = float(done.stdout.split("estimates add up to ")[1].split(" s")[0])
    assert total <= 480
    for part in ("train_speed", "infer_speed", "real_pair"):
        assert part in done.stdout
    assert "estimate:" in done.stdout  # each estimate says where it comes from


def test_the_budget_guard_skips_what_does_not_fit(tmp_path):
    done = run("--scale", "smoke", "--budget", "25", "--out", str(tmp_path / "out"),
               "--data", str(tmp_path / "nothing"))
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "out" / "device_check.json").read_text())
    skipped = [n for n, p in report["parts"].items() if p["status"] == "skipped"]
    assert skipped and all(report["parts"][n]["note"] for n in skipped)
    for name in skipped:
        assert report["parts"][name]["figures"] is None
        assert not (tmp_path / "out" / name).exists()


@pytest.mark.realdata
def test_pack_data_makes_the_real_pair_small_enough_to_travel(tmp_path):
    if not (DATA / "vnc3").is_dir():
        pytest.skip(f"{DATA} is absent: no real stacks to pack")
    done = run("--pack-data", str(tmp_path / "packed"), "--data", str(DATA))
    assert done.returncode == 0, done.stdout + done.stderr
    size = sum(p.stat().st_size for p in (tmp_path / "packed").rglob("*") if p.is_file())
    assert size < 40 * 2**20, size
    for needed in ("vnc3.zarr/raw", "cdeep3m/training.zarr/raw", "cdeep3m/validation.zarr/labels"):
        assert (tmp_path / "packed" / needed).is_dir(), needed
    again = run("--pack-data", str(tmp_path / "packed"), "--data", str(DATA))
    assert again.returncode == 2 and "exists" in again.stdout  # never over an earlier pack
