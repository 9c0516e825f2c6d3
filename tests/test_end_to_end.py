"""The whole pipeline through the real console script: prepare -> train -> infer -> evaluate.

Never skipped: it runs on the CPU in well under a minute.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from masktwins_cli.io.volumes import open_volume


def masktwins_command() -> list[str]:
    """The installed console script beside this Python (the module as a fallback)."""
    script = Path(sys.executable).parent / "masktwins"
    return [str(script)] if script.exists() else [sys.executable, "-m", "masktwins_cli.cli"]


def run(*args, cwd):
    cmd = [*masktwins_command(), *args]
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done


def test_prepare_train_infer_evaluate(tmp_path):
    data = tmp_path / "data"
    run("prepare", "synthetic", str(data), "--dims", "2", "--seed", "3", "--shape", "4,80,80",
        cwd=tmp_path)
    meta = json.loads((data / "dataset.json").read_text())
    assert meta["shapes"]["source"] == [4, 80, 80]
    run("train", str(_recipe()), "--set",
        f'data.root="{data}"', "--set", "data.patch_size=[64,64]", "--set",
        "method.teacher_context=[8,8]", "--set", "train.iterations=3",
        "--set", "train.log_every=1", "--set", "train.threads=1", "--output-dir",
        str(tmp_path / "run"), cwd=tmp_path)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3]
    pred = tmp_path / "pred.zarr"
    run("infer", str(tmp_path / "run" / "last.pt"), str(data / "target_test.zarr" / "raw"),
        "-o", str(pred / "probabilities"), cwd=tmp_path)
    prob = open_volume(str(pred / "probabilities"))
    raw = open_volume(str(data / "target_test.zarr" / "raw"))
    assert prob.shape == raw.shape and prob.voxel_size == raw.voxel_size
    values = prob.read_all()
    assert values.dtype == np.float32 and 0 <= values.min() and values.max() <= 1
    scores = tmp_path / "scores.json"
    out = run("evaluate", str(pred / "probabilities"), str(data / "target_test.zarr" / "labels"),
              "--json", str(scores), "--overlay", str(tmp_path / "overlays"), "--raw",
              str(data / "target_test.zarr" / "raw"), cwd=tmp_path)
    result = json.loads(scores.read_text())
    for key in ("iou", "f1", "mcc", "ap"):
        assert 0 <= result[key] <= 1, key
    assert result["n_slices"] == raw.shape[0]
    assert "IoU" in out.stdout
    assert sorted(p.name for p in (tmp_path / "overlays").iterdir())


def _recipe():
    from masktwins_cli.experiments.demo import shipped_recipe

    return shipped_recipe("synthetic_mito2d.toml")
