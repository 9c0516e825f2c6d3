"""Method comparisons (summary, table, gap closed), comparison figures and the real benchmark."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from masktwins_cli.errors import MaskTwinsError
from masktwins_cli.evaluation.figures import comparison_figure, comparison_panels, write_comparison_figure
from masktwins_cli.experiments.bench_runs import chosen_methods, folder_name
from masktwins_cli.experiments.comparison import gap_closed, markdown_table, summarise

REPO = Path(__file__).resolve().parent.parent
REAL_DATA = REPO.parent / "shared" / "data"


def _runs(values: dict[str, list[float]]) -> list[dict]:
    return [{"method": m, "seed": s, "train_seconds": 10.0 * (s + 1), "iou": v, "f1": v, "mcc": v,
             "ap": None if m == "B" else v} for m, vs in values.items() for s, v in enumerate(vs)]


def test_summary_follows_the_method_order_and_skips_methods_without_runs():
    rows = summarise(_runs({"B": [0.2, 0.4], "A": [0.9]}), ["A", "missing", "B"])
    assert [r["method"] for r in rows] == ["A", "B"]
    assert rows[0]["seeds"] == 1 and rows[0]["iou"] == {"mean": 0.9, "std": 0.0}
    assert rows[1]["seeds"] == 2 and rows[1]["iou"]["mean"] == pytest.approx(0.3)
    assert rows[1]["iou"]["std"] == pytest.approx(0.1)  # population std
    assert rows[1]["train_seconds"] == pytest.approx(15.0)
    assert math.isnan(rows[1]["ap"]["mean"])
    table = markdown_table(rows, "title")
    assert table.startswith("title\n") and "| A | 1 | 0.900 |" in table  # no spread of one run
    assert "± 0.000" not in table
    assert "| B | 2 | 0.300 ± 0.100 |" in table and "| nan |" in table


def test_gap_closed_is_the_fraction_of_the_baseline_to_oracle_gap():
    rows = summarise(_runs({"NoAdapt": [0.2], "MaskTwins": [0.5], "Oracle": [0.8]}),
                     ["NoAdapt", "MaskTwins", "Oracle"])
    assert gap_closed(rows, "MaskTwins") == pytest.approx(0.5)
    assert gap_closed(rows, "Missing") is None
    flat = summarise(_runs({"NoAdapt": [0.8], "MaskTwins": [0.5], "Oracle": [0.8]}),
                     ["NoAdapt", "MaskTwins", "Oracle"])
    assert gap_closed(flat, "MaskTwins") is None


def test_comparison_panels_colour_errors_and_figure_layout(tmp_path):
    raw = np.tile(np.arange(16, dtype=np.uint8) * 16, (16, 1))
    truth = np.zeros((16, 16), bool)
    truth[4:8, 4:8] = True
    prob = np.zeros((16, 16), np.float32)
    prob[4:8, 4:6] = 0.9  # half the object found: the other half is a false negative
    prob[12:14, 12:14] = 0.6  # a false positive
    panels = comparison_panels(raw, truth, {"model": prob})
    assert [name for name, _ in panels] == ["image", "truth", "model"]
    model = panels[2][1]
    assert model[5, 7, 0] > model[5, 7, 1]  # false negative: red
    assert model[13, 13, 1] > model[13, 13, 0]  # false positive: green
    assert np.array_equal(panels[0][1][..., 0], panels[0][1][..., 2])  # image stays grey
    figure = comparison_figure([panels, panels], scale=1.0)
    assert figure.shape == (18 + 2 * 16 + 4, 3 * 16 + 2 * 4, 3)
    with pytest.raises(MaskTwinsError, match="shape"):
        comparison_panels(raw, truth, {"model": prob[:8]})
    volume = np.stack([raw, raw])
    path = write_comparison_figure(tmp_path / "f" / "c.png", volume, np.stack([truth, truth]),
                                   {"a": np.stack([prob, prob])}, [0, 1], scale=1.0)
    assert path.is_file() and not list(path.parent.glob(".*"))


def _bench_module():
    spec = importlib.util.spec_from_file_location("real_mito", REPO / "bench" / "real_mito.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_real_bench_method_selection_and_folder_names():
    bench = _bench_module()
    names = [m.name for m in chosen_methods("MaskTwins, NoAdapt", bench.METHODS)]
    assert names == ["NoAdapt", "MaskTwins"]
    with pytest.raises(MaskTwinsError, match="unknown 'Nope'"):
        chosen_methods("Nope", bench.METHODS)
    assert folder_name("MaskTwins w/o EMA") == "masktwins_wo_ema"
    assert folder_name("MIC (single mask)") == "mic_single_mask"
    assert len({folder_name(m.name) for m in bench.METHODS}) == len(bench.METHODS)


def test_real_bench_skips_with_a_reason_without_data(tmp_path, capsys):
    assert _bench_module().main(["--data", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 0
    assert "skipped" in capsys.readouterr().out and not (tmp_path / "o").exists()


@pytest.mark.realdata
@pytest.mark.skipif(not REAL_DATA.is_dir(), reason=f"real EM data not present at {REAL_DATA}")
def test_real_bench_runs_end_to_end_on_the_shared_stacks(tmp_path, capsys):
    out = tmp_path / "bench"
    bench = _bench_module()
    argv = ["--out", str(out), "--seeds", "0", "--methods", "NoAdapt,MaskTwins",
            "--set", "train.iterations=2", "--set", "train.threads=1",
            "--set", "model.features=[4,4,4,4,4]", "--set", "infer.batch_size=2"]
    assert bench.main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in results["runs"]] == ["NoAdapt", "MaskTwins"]
    assert all(0.0 <= r["iou"] <= 1.0 for r in results["runs"])
    assert (out / "comparison.png").is_file() and "| MaskTwins | 1 |" in (out / "results.md").read_text()
    assert (out / "data" / "vnc3.zarr" / "raw").is_dir()
    assert "results:" in capsys.readouterr().out
    # a second call keeps the finished runs; other settings in the same OUT are refused
    checkpoint = out / "seed0" / "noadapt" / "last.pt"
    written = checkpoint.stat().st_mtime_ns
    assert bench.main(argv) == 0
    assert "finished earlier" in capsys.readouterr().out
    assert checkpoint.stat().st_mtime_ns == written
    with pytest.raises(MaskTwinsError, match="other settings"):
        bench.main([*argv, "--set", "train.lr=0.1"])
    sys.modules.pop("real_mito", None)
