"""Training-curve figures from log.jsonl (masktwins curves)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_user_error, invoke
from PIL import Image

from masktwins_cli.errors import MaskTwinsError
from masktwins_cli.evaluation.curves import (
    choose_terms,
    distinct_labels,
    load_runs,
    logged_terms,
    series,
    write_curves,
)

pytest.importorskip("matplotlib", reason="the plot extra (matplotlib) is not installed")


def write_log(folder: Path, records: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "log.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return folder


def adapted_records(scale: float) -> list[dict]:
    records = [{"step": s, "lr": 1e-3, "loss": scale / s, "loss_sup": 0.5 * scale / s,
                "loss_cl": 0.1, "loss_cm": 0.01 * s, "confident_fraction": 0.5,
                "pseudo_foreground": 0.1, "seconds": s * 0.2} for s in (1, 10, 20, 30)]
    records.insert(2, {"step": 10, "val_iou": 0.3, "val_f1": 0.4})
    return records


@pytest.fixture()
def two_seeds(tmp_path):
    return [write_log(tmp_path / f"seed{n}" / "masktwins", adapted_records(1 + n)) for n in (0, 1)]


def test_labels_are_the_shortest_distinct_folder_tails(tmp_path):
    paths = [tmp_path / "a" / "seed0" / "masktwins" / "log.jsonl",
             tmp_path / "a" / "seed1" / "masktwins" / "log.jsonl",
             tmp_path / "a" / "seed0" / "noadapt" / "log.jsonl"]
    assert distinct_labels(paths) == ["seed0/masktwins", "seed1/masktwins", "seed0/noadapt"]
    assert distinct_labels(paths[:1]) == ["masktwins"]


def test_terms_series_and_order(two_seeds, tmp_path):
    noadapt = write_log(tmp_path / "seed0" / "noadapt",
                        [{"step": s, "lr": 1e-3, "loss": 1 / s, "loss_sup": 1 / s, "extra_term": 2,
                          "seconds": 1.0} for s in (1, 10)])
    runs = load_runs([*two_seeds, noadapt])
    assert [r.label for r in runs] == ["seed0/masktwins", "seed1/masktwins", "seed0/noadapt"]
    assert logged_terms(runs) == ["loss", "loss_sup", "loss_cl", "loss_cm", "confident_fraction",
                                  "pseudo_foreground", "val_iou", "val_f1", "lr", "extra_term"]
    assert "lr" not in choose_terms(runs, None)
    # the validation record of step 10 holds no loss: the loss series skips it
    assert series(runs[1], "loss") == ([1, 10, 20, 30], [2.0, 0.2, 0.1, 2 / 30])
    assert series(runs[0], "val_iou") == ([10], [0.3])
    assert series(runs[2], "loss_cl") == ([], [])


def test_non_finite_values_are_skipped(tmp_path):
    run = write_log(tmp_path / "r", [{"step": 1, "loss": None}, {"step": 2, "loss": 0.5}])
    (log,) = load_runs([run])
    assert series(log, "loss") == ([2], [0.5])


def test_figure_is_a_png_with_one_panel_per_term(two_seeds, tmp_path):
    runs = load_runs(two_seeds)
    out = write_curves(tmp_path / "c.png", runs, ["loss_sup", "loss_cm", "val_iou", "pseudo_foreground"],
                       title="t")
    with Image.open(out) as image:
        assert image.format == "PNG"
        width, height = image.size
        pixels = np.asarray(image.convert("RGB"))
    assert width > height  # 4 panels: 3 columns x 2 rows at 4.2 x 2.8 in
    assert pixels.std() > 10  # something was drawn
    assert not list(tmp_path.glob(".c.png.*"))  # no temporary file left behind


def test_unknown_term_names_what_is_logged(two_seeds):
    runs = load_runs(two_seeds)
    with pytest.raises(MaskTwinsError, match="val_miou.*logged terms: loss, loss_sup"):
        choose_terms(runs, ["loss", "val_miou"])


@pytest.mark.parametrize("content,fragment", [
    ("{not json\n", "log.jsonl:1: not a JSON record"),
    ('{"step": 1}\n[1, 2]\n', "log.jsonl:2: expected a JSON object"),
    ('{"loss": 1}\n', "log.jsonl:1: expected a JSON object with an integer 'step'"),
    ("\n", "the log is empty"),
])
def test_bad_logs_are_one_line_errors(tmp_path, content, fragment):
    (tmp_path / "log.jsonl").write_text(content, encoding="utf-8")
    with pytest.raises(MaskTwinsError, match=fragment.replace("(", r"\(")):
        load_runs([tmp_path])


def test_cli_writes_the_figure(two_seeds, tmp_path):
    out = tmp_path / "curves.png"
    result = invoke("curves", *two_seeds, "--out", out, "--terms", "loss_sup,val_iou",
                    "--label", "A", "--label", "B")
    assert result.exit_code == 0, result.output
    assert "2 terms (loss_sup, val_iou) x 2 runs" in result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args,names", [
    (["{missing}"], ["missing", "no log.jsonl"]),
    (["{run}", "--terms", "val_dice"], ["val_dice", "not logged"]),
    (["{run}", "--label", "A", "--label", "B"], ["2 labels for 1 runs"]),
    (["{run}", "--out", "{tmp}/c.pdf"], ["c.pdf", "PNG"]),
    (["{run}", "--out", "{tmp}/nowhere/c.png"], ["nowhere", "does not exist"]),
])
def test_cli_bad_input(two_seeds, tmp_path, args, names):
    filled = [a.format(missing=tmp_path / "missing", run=two_seeds[0], tmp=tmp_path) for a in args]
    assert_user_error(invoke("curves", *filled), *names)
    assert not list(tmp_path.glob("*.png")) and not (tmp_path / "c.pdf").exists()


def test_cli_refuses_to_replace_a_figure_without_overwrite(two_seeds, tmp_path):
    out = tmp_path / "curves.png"
    out.write_bytes(b"an earlier figure")
    assert_user_error(invoke("curves", *two_seeds, "--out", out), out, "--overwrite")
    assert out.read_bytes() == b"an earlier figure"
    assert invoke("curves", *two_seeds, "--out", out, "--overwrite").exit_code == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
