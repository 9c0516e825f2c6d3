"""The demo pipeline on a tiny synthetic pair: three methods, two seeds, table and JSON."""

import json
import math

import pytest

from masktwins_cli.errors import MaskTwinsError
from masktwins_cli.experiments.demo import METHODS, demo_table, run_demo, summarise


def test_tiny_demo_writes_results_for_every_method_and_seed(tmp_path):
    stages = []
    result = run_demo(tmp_path, dims=2, seeds=[0, 1], iterations=2, shape=(2, 80, 80),
                      overrides=["data.patch_size=[64,64]", "method.teacher_context=[8,8]",
                                 "train.threads=1"],
                      report=lambda *args: stages.append(args))
    assert {(r["method"], r["seed"]) for r in result.runs} == {(m, s) for m in METHODS
                                                                 for s in (0, 1)}
    saved = json.loads(result.results_json.read_text())
    assert [row["method"] for row in saved["summary"]] == list(METHODS)
    for row in saved["summary"]:
        assert 0 <= row["iou"]["mean"] <= 1 and row["iou"]["std"] >= 0
    assert "| MaskTwins |" in (tmp_path / "results.md").read_text()
    assert any("training MaskTwins" in str(s[0]) for s in stages)
    with pytest.raises(MaskTwinsError, match="--overwrite"):
        run_demo(tmp_path, seeds=[0], iterations=2, shape=(2, 64, 64))


def test_summary_mean_and_population_std():
    runs = [{"method": m, "seed": s, "train_seconds": 1.0, "iou": v, "f1": v, "mcc": v, "ap": None}
            for m in METHODS for s, v in ((0, 0.5), (1, 0.7))]
    rows = summarise(runs, list(METHODS))
    assert rows[0]["iou"]["mean"] == pytest.approx(0.6)
    assert rows[0]["iou"]["std"] == pytest.approx(0.1)
    assert math.isnan(rows[0]["ap"]["mean"])
    assert "nan" in demo_table(rows, 2, [0, 1])


def test_bad_override_fails_before_anything_is_written(tmp_path):
    with pytest.raises(MaskTwinsError, match="train.lrr"):
        run_demo(tmp_path / "d", overrides=["train.lrr=1"])
    assert not (tmp_path / "d").exists()


def test_demo_output_says_one_seed_cannot_rank_the_methods(capsys):
    from masktwins_cli.experiments.demo import DemoResult
    from masktwins_cli.terminal import SINGLE_SEED_NOTE, print_demo_table

    runs = [{"method": m, "seed": 0, "train_seconds": 1.0, "iou": v, "f1": v, "mcc": v, "ap": v}
            for m, v in (("NoAdapt", 0.5), ("MaskTwins", 0.6), ("Oracle", 0.9))]
    one = DemoResult(2, [0], runs, summarise(runs, list(METHODS)), None)
    print_demo_table(one)
    shown = capsys.readouterr().out
    assert "cannot rank" in shown and "± 0.000" not in shown and "0.600" in shown
    two = [dict(r, seed=s) for r in runs for s in (0, 1)]
    print_demo_table(DemoResult(2, [0, 1], two, summarise(two, list(METHODS)), None))
    assert SINGLE_SEED_NOTE not in capsys.readouterr().out


def test_a_bad_iteration_count_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(MaskTwinsError, match="train.iterations"):
        run_demo(tmp_path / "d", seeds=[0], iterations=0, shape=(2, 80, 80))
    assert not (tmp_path / "d").exists()
