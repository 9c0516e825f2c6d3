"""The SYNTHIA -> Cityscapes reporting protocol: mIoU over 19, 16 and 13 classes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_helpers import invoke

from masktwins_cli.errors import MaskTwinsError
from masktwins_cli.io.volumes import write_volume
from masktwins_cli.scoring.benchmarks import SYNTHIA_13, SYNTHIA_16, protocol_scores
from masktwins_cli.scoring.classes import class_scores


def made_up_matrix() -> np.ndarray:
    """Class c: 10 * (c + 1) pixels right, c pixels predicted as class (c + 1) % 19; class 18
    (bicycle) never appears nor is predicted... except as the confusion of class 17."""
    matrix = np.zeros((19, 19), np.int64)
    for c in range(18):
        matrix[c, c] = 10 * (c + 1)
        matrix[c, (c + 1) % 19] = c
    return matrix


def hand_iou(c: int) -> float | None:
    if c == 18:  # only predicted (17 pixels of class 17): tp 0, union 17
        return 0.0
    tp, fn = 10 * (c + 1), c
    fp = c - 1 if c > 0 else 0  # class c - 1 predicted as c
    return tp / (tp + fp + fn)


def test_miou_19_16_13_equal_hand_computed_values():
    figures = protocol_scores(class_scores(made_up_matrix()), "synthia")
    iou = [hand_iou(c) for c in range(19)]
    assert figures["miou19"] == pytest.approx(np.mean(iou))
    assert figures["miou16"] == pytest.approx(np.mean([iou[c] for c in SYNTHIA_16]))
    assert figures["miou13"] == pytest.approx(np.mean([iou[c] for c in SYNTHIA_13]))
    assert len(SYNTHIA_16) == 16 and len(SYNTHIA_13) == 13
    assert {9, 14, 16}.isdisjoint(SYNTHIA_16) and {3, 4, 5}.isdisjoint(SYNTHIA_13)
    assert list(figures["table"]) == ["road", "sidewalk", "building", "traffic light",
                                      "traffic sign", "vegetation", "sky", "person", "rider",
                                      "car", "bus", "motorcycle", "bicycle"]
    assert figures["table"]["road"] == pytest.approx(10 / 10)


def test_a_class_absent_from_truth_and_prediction_is_left_out():
    matrix = np.eye(19, dtype=np.int64) * 5
    matrix[14, 14] = 0  # truck: nowhere
    figures = protocol_scores(class_scores(matrix), "synthia")
    assert figures["miou19"] == 1.0 and figures["miou16"] == 1.0


def test_other_class_counts_are_refused():
    with pytest.raises(MaskTwinsError, match="19 Cityscapes classes"):
        protocol_scores(class_scores(np.eye(3, dtype=np.int64)), "synthia")


def test_evaluate_protocol_prints_the_table_1_row_and_writes_the_figures(tmp_path):
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 19, (2, 16, 16)).astype(np.uint8)
    truth[:, :2] = 255
    pred = np.where(rng.random(truth.shape) < 0.7, truth, rng.integers(0, 19, truth.shape))
    pred = np.where(truth == 255, 0, pred).astype(np.uint8)
    write_volume(f"{tmp_path}/t.zarr/labels", truth, (1.0, 1.0, 1.0))
    write_volume(f"{tmp_path}/p.zarr/map", pred, (1.0, 1.0, 1.0))
    result = invoke("evaluate", f"{tmp_path}/p.zarr/map", f"{tmp_path}/t.zarr/labels",
                    "--num-classes", "19", "--protocol", "synthia", "--json", tmp_path / "s.json")
    assert result.exit_code == 0, result.output
    assert "mIoU13" in result.output and "mIoU16" in result.output and "Table 1" in result.output
    scores = json.loads((tmp_path / "s.json").read_text())
    matrix = np.asarray(scores["confusion_matrix"])
    expected = protocol_scores(class_scores(matrix), "synthia")
    assert scores["miou13"] == pytest.approx(expected["miou13"]) and scores["protocol"] == "synthia"
    wrong = invoke("evaluate", f"{tmp_path}/p.zarr/map", f"{tmp_path}/t.zarr/labels",
                   "--num-classes", "20", "--protocol", "synthia")
    assert wrong.exit_code == 2 and "19 Cityscapes classes" in wrong.output
    bogus = invoke("evaluate", f"{tmp_path}/p.zarr/map", f"{tmp_path}/t.zarr/labels",
                   "--num-classes", "19", "--protocol", "gta")
    assert bogus.exit_code == 2 and "--protocol 'gta'" in bogus.output


def test_upsample_scores_half_resolution_probabilities_against_full_resolution_labels(tmp_path):
    import torch.nn.functional as F

    from masktwins_cli.scoring.classes import confusion_matrix

    rng = np.random.default_rng(2)
    probs = rng.random((19, 2, 8, 16)).astype(np.float32)
    probs /= probs.sum(axis=0, keepdims=True)
    truth = rng.integers(0, 19, (2, 16, 32)).astype(np.uint8)
    truth[:, :3] = 255
    write_volume(f"{tmp_path}/p.zarr/probabilities", probs, (1.0, 1.0, 1.0))
    write_volume(f"{tmp_path}/t.zarr/labels", truth, (1.0, 1.0, 1.0))
    args = ("evaluate", f"{tmp_path}/p.zarr/probabilities", f"{tmp_path}/t.zarr/labels")
    refused = invoke(*args)
    assert refused.exit_code == 2 and "does not match" in refused.output
    result = invoke(*args, "--upsample", "--json", tmp_path / "s.json")
    assert result.exit_code == 0, result.output
    import torch

    full = F.interpolate(torch.from_numpy(probs).transpose(0, 1), size=(16, 32), mode="bilinear",
                         align_corners=False).transpose(0, 1).numpy()
    expected = confusion_matrix(full.argmax(axis=0), truth, 19)
    assert json.loads((tmp_path / "s.json").read_text())["confusion_matrix"] == expected.tolist()
    write_volume(f"{tmp_path}/m.zarr/map", probs.argmax(axis=0).astype(np.uint8), (1.0, 1.0, 1.0))
    class_map = invoke("evaluate", f"{tmp_path}/m.zarr/map", f"{tmp_path}/t.zarr/labels",
                       "--num-classes", "19", "--upsample")
    assert class_map.exit_code == 2 and "class map" in class_map.output
