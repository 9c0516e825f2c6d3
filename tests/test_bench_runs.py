"""Benchmark bookkeeping (finished runs kept, settings never mixed) and the synthetic synapse
benchmark end to end at toy size."""

import importlib.util
import json
from pathlib import Path

import pytest

from masktwins_cli.errors import MaskTwinsError
from masktwins_cli.experiments.bench_runs import all_runs, check_settings, run_once, write_training_curves
from masktwins_cli.experiments.comparison import MethodSpec
from masktwins_cli.synapse.points import read_points

REPO = Path(__file__).resolve().parent.parent


def test_a_finished_run_is_kept_and_an_unfinished_one_restarts(tmp_path):
    calls = []

    def work():
        calls.append(1)
        (tmp_path / "seed0" / "a").mkdir(parents=True)  # training makes its run folder
        (tmp_path / "seed0" / "a" / "weights").write_text("trained")
        return {"score": 0.5}

    run_dir = tmp_path / "seed0" / "a"
    run_dir.mkdir(parents=True)
    (run_dir / "stale").write_text("left by a killed call")
    first = run_once(run_dir, "A", 0, work)
    assert first == {"method": "A", "seed": 0, "score": 0.5} and not (run_dir / "stale").exists()
    assert run_once(run_dir, "A", 0, work) == first and len(calls) == 1
    other = tmp_path / "seed1" / "b"
    other.mkdir(parents=True)
    (other / "run.json").write_text(json.dumps({"method": "B", "seed": 1, "score": 0.1}))
    methods = [MethodSpec("B"), MethodSpec("A")]
    assert [(r["method"], r["seed"]) for r in all_runs(tmp_path, [first], methods)] == [
        ("A", 0), ("B", 1)]


def test_settings_of_one_table_never_mix(tmp_path):
    path = tmp_path / "out" / "settings.json"
    assert check_settings(path, ["train.iterations=5"]) == {"overrides": ["train.iterations=5"]}
    assert check_settings(path, ["train.iterations=5"])["overrides"] == ["train.iterations=5"]
    with pytest.raises(MaskTwinsError, match="other settings"):
        check_settings(path, ["train.iterations=6"])
    with pytest.raises(MaskTwinsError, match="test_shape"):
        check_settings(path, ["train.iterations=5"], {"test_shape": [64, 64, 64]})


def test_synthetic_synapse_bench_runs_end_to_end(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("synbench", REPO / "bench" / "synthetic_synapse.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench"
    argv = ["--out", str(out), "--seeds", "0", "--methods", "NoAdapt,MaskTwins",
            "--set", "train.iterations=2", "--set", "method.adapt_start=0", "--set", "train.threads=1",
            "--set", "model.features=[4,4,4,4,4]", "--test-shape", "64,96,96"]
    assert bench.main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in results["runs"]] == ["NoAdapt", "MaskTwins"]
    for run in results["runs"]:
        assert 0.0 <= run["score"] <= 1.0 and run["true_pre"] > 0
        assert run["score"] == pytest.approx((run["f1_pre"] + run["f1_post"]) / 2)
    table = (out / "results.md").read_text()
    assert "| F1_pre | F1_post | score |" in table
    for run in results["runs"]:
        assert (f"| {run['method']} | 0 | {run['pred_pre']} / {run['true_pre']} | "
                f"{run['pred_post']} / {run['true_post']} |") in table
    printed = capsys.readouterr().out
    assert "results:" in printed and f"curves: {out / 'curves.png'}" in printed
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "settings.json").read_text())["data"] == {"test_shape": [64, 96, 96]}
    assert [r["true_pre"] for r in results["runs"]] == [
        read_points(out / "data" / "seed0" / "target_test_points.csv").n_pre] * 2


def test_training_curves_need_the_seeds_logs(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="the plot extra (matplotlib) is not installed")
    runs = [{"method": "NoAdapt", "seed": 0}, {"method": "MaskTwins", "seed": 0}]
    assert write_training_curves(tmp_path, runs, 1, "t") is None  # no run of seed 1
    (tmp_path / "seed0" / "noadapt").mkdir(parents=True)
    (tmp_path / "seed0" / "noadapt" / "log.jsonl").write_text('{"step": 1, "loss": 0.5}\n')
    assert write_training_curves(tmp_path, runs, 0, "t") is None  # MaskTwins has no log
    assert "training curves not drawn" in capsys.readouterr().out
    (tmp_path / "seed0" / "masktwins").mkdir()
    (tmp_path / "seed0" / "masktwins" / "log.jsonl").write_text('{"step": 1, "loss": 0.4}\n')
    assert write_training_curves(tmp_path, runs, 0, "t") == tmp_path / "curves.png"
