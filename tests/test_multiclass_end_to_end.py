"""A three-class task with an ignored region through train, infer (class map and class
probabilities) and evaluate, on the CPU."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_helpers import invoke

from masktwins_cli.io.volumes import open_volume, write_volume
from tiny_data import toml_document

SHAPE = (2, 64, 64)


@pytest.fixture(scope="module")
def three_class_run(tmp_path_factory):
    """(folder, trained run folder): class 1 a bright and class 2 a dark square on grey (the
    contrast to the background tells them apart; the network's instance norm removes absolute
    intensity), a band of ignored (255) labels."""
    folder = tmp_path_factory.mktemp("three_classes")
    rng = np.random.default_rng(0)
    labels = np.zeros(SHAPE, np.uint8)
    labels[:, 8:28, 8:28] = 1
    labels[:, 36:60, 30:56] = 2
    grey = np.choose(labels, [128, 220, 40]).astype(np.float64)
    raw = (grey + rng.normal(0, 8, SHAPE)).clip(0, 255).astype(np.uint8)
    truth = labels.copy()
    labels[:, :, :4] = 255  # unlabeled margin in the training labels
    write_volume(f"{folder}/d.zarr/raw", raw, (1.0, 1.0, 1.0))
    write_volume(f"{folder}/d.zarr/labels", labels, (1.0, 1.0, 1.0))
    write_volume(f"{folder}/d.zarr/truth", truth, (1.0, 1.0, 1.0))
    sections = {
        "data": {"root": str(folder), "patch_size": [32, 32], "augment": False,
                 "source": [{"raw": "d.zarr/raw", "labels": "d.zarr/labels"}],
                 "target": [{"raw": "d.zarr/raw"}],
                 "val": [{"raw": "d.zarr/raw", "labels": "d.zarr/labels"}]},
        "model": {"spatial_dims": 2, "features": [4, 4, 4, 4, 4], "num_classes": 3},
        "method": {"block_size": [8, 8], "adapt_start": 75},
        "train": {"iterations": 150, "batch_size": 2, "target_batch_size": 1, "device": "cpu",
                  "lr": 0.01, "output_dir": str(folder / "run"), "threads": 1, "log_every": 10,
                  "val_every": 50},
        "infer": {"batch_size": 4},
    }
    (folder / "recipe.toml").write_text(toml_document(sections), encoding="utf-8")
    result = invoke("train", folder / "recipe.toml")
    assert result.exit_code == 0, result.output
    return folder


def test_three_classes_infer_a_class_map_and_probabilities_that_evaluate_alike(three_class_run):
    folder = three_class_run
    checkpoint, raw = folder / "run" / "last.pt", f"{folder}/d.zarr/raw"
    for kind in ("map", "probabilities"):
        result = invoke("infer", checkpoint, raw, "-o", f"{folder}/p.zarr/{kind}", "--device",
                        "cpu", "--set", f'infer.classes="{kind}"')
        assert result.exit_code == 0, result.output
    class_map = open_volume(f"{folder}/p.zarr/map")
    probabilities = open_volume(f"{folder}/p.zarr/probabilities")
    assert (class_map.dtype, tuple(class_map.shape)) == (np.uint8, SHAPE)
    assert (probabilities.dtype, tuple(probabilities.shape)) == (np.float32, (3, *SHAPE))
    probs = probabilities.read_all()
    assert np.allclose(probs.sum(axis=0), 1.0, atol=1e-4)
    assert np.array_equal(class_map.read_all(), probs.argmax(axis=0))
    scores = []
    for kind in ("map", "probabilities"):  # K comes from the recipe stored with the output
        out = folder / f"{kind}.json"
        result = invoke("evaluate", f"{folder}/p.zarr/{kind}", f"{folder}/d.zarr/truth",
                        "--json", out)
        assert result.exit_code == 0, result.output
        scores.append(json.loads(out.read_text()))
    assert scores[0]["confusion_matrix"] == scores[1]["confusion_matrix"]
    assert scores[0]["num_classes"] == 3 and scores[0]["miou"] > 0.5  # it learned the squares


def test_three_class_validation_logs_the_miou_and_keeps_the_best(three_class_run):
    from masktwins_cli.training.metrics_log import read_log

    records = [r for r in read_log(three_class_run / "run" / "log.jsonl") if "val_miou" in r]
    assert [r["step"] for r in records] == [50, 100, 150]
    assert all(0.0 <= r["val_miou"] <= 1.0 and "val_iou" not in r for r in records)
    assert (three_class_run / "run" / "best.pt").is_file()
