"""K-class evaluation: one confusion matrix over the whole volume, per-class IoU, mIoU over all
classes or a subset, pixel accuracy, the ignore value; equal to a hand-computed matrix and to
scikit-learn; streamed slab by slab; through `masktwins evaluate`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_helpers import assert_user_error, invoke
from sklearn.metrics import confusion_matrix as sklearn_confusion

from masktwins_cli.errors import MaskTwinsError
from masktwins_cli.evaluation import classes_run
from masktwins_cli.evaluation.classes_run import evaluate_classes
from masktwins_cli.io.volumes import write_volume
from masktwins_cli.scoring.classes import class_scores, confusion_matrix


def test_a_hand_computed_example():
    truth = np.array([[0, 0, 1, 1], [2, 2, 2, 255]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 2, 1]])
    matrix = confusion_matrix(pred, truth, 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 2]]  # the 255 voxel is not counted
    scores = class_scores(matrix)
    # class 0: tp 1, fp 1 (a 2 predicted as 0), fn 1 -> 1/3; class 1: 2/(2+1) ; class 2: 2/3
    assert scores.iou == pytest.approx((1 / 3, 2 / 3, 2 / 3))
    assert scores.miou == pytest.approx(5 / 9)
    assert scores.pixel_accuracy == pytest.approx(5 / 7)
    subset = class_scores(matrix, classes=[1, 2])
    assert subset.miou == pytest.approx(2 / 3) and subset.classes == (1, 2)


def test_equals_scikit_learn_on_random_maps():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 6, (4, 30, 40))
    truth[rng.random(truth.shape) < 0.1] = 255
    pred = rng.integers(0, 6, truth.shape)
    counted = truth != 255
    expected = sklearn_confusion(truth[counted], pred[counted], labels=range(6))
    matrix = confusion_matrix(pred, truth, 6)
    assert np.array_equal(matrix, expected)
    tp = np.diag(expected)
    iou = tp / (expected.sum(0) + expected.sum(1) - tp)
    assert class_scores(matrix).iou == pytest.approx(tuple(iou))
    assert class_scores(matrix).miou == pytest.approx(iou.mean())


def test_a_class_never_seen_nor_predicted_is_left_out_of_the_mean():
    matrix = np.array([[5, 1, 0], [2, 4, 0], [0, 0, 0]])
    scores = class_scores(matrix)
    assert scores.iou[2] is None
    assert scores.miou == pytest.approx(np.mean([5 / 8, 4 / 7]))
    with pytest.raises(MaskTwinsError, match="--classes 3: outside the 3 classes"):
        class_scores(matrix, classes=[0, 3])


def test_labels_outside_the_classes_are_an_error_not_a_skewed_matrix():
    truth, pred = np.array([0, 1, 7]), np.array([0, 1, 1])
    with pytest.raises(MaskTwinsError, match=r"t.zarr/l: truth label values 7 .*0..2 or 255"):
        confusion_matrix(pred, truth, 3, where="t.zarr/l")
    with pytest.raises(MaskTwinsError, match="prediction classes 4"):
        confusion_matrix(np.array([0, 4]), np.array([0, 1]), 3)


def volumes(tmp_path, seed=0, shape=(6, 24, 20), k=3):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, shape).astype(np.uint8)
    logits = rng.random((k, *shape)).astype(np.float32)
    logits[(truth, *np.indices(shape))] += 0.6  # mostly right
    probs = logits / logits.sum(axis=0)
    write_volume(f"{tmp_path}/t.zarr/labels", truth, (1.0, 1.0, 1.0))
    write_volume(f"{tmp_path}/p.zarr/probs", probs, (1.0, 1.0, 1.0), chunks=(1, 2, 24, 20))
    write_volume(f"{tmp_path}/p.zarr/map", probs.argmax(0).astype(np.uint8), (1.0, 1.0, 1.0))
    return truth, probs


def test_probabilities_and_the_class_map_give_the_same_scores_streamed_or_not(tmp_path,
                                                                             monkeypatch):
    truth, probs = volumes(tmp_path)
    whole = confusion_matrix(probs.argmax(0), truth, 3)
    from_probs = evaluate_classes(f"{tmp_path}/p.zarr/probs", f"{tmp_path}/t.zarr/labels")
    from_map = evaluate_classes(f"{tmp_path}/p.zarr/map", f"{tmp_path}/t.zarr/labels", 3)
    monkeypatch.setattr(classes_run, "SLAB_VOXELS", 24 * 20)  # one slice per slab
    streamed = evaluate_classes(f"{tmp_path}/p.zarr/map", f"{tmp_path}/t.zarr/labels", 3)
    for result in (from_probs, from_map, streamed):
        assert np.array_equal(result.scores.matrix, whole)
    assert (from_probs.source, from_map.source) == ("probabilities", "class map")


def test_an_ignored_region_filled_with_garbage_changes_nothing(tmp_path):
    truth, probs = volumes(tmp_path)
    before = evaluate_classes(f"{tmp_path}/p.zarr/map", f"{tmp_path}/t.zarr/labels", 3)
    truth = truth.copy()
    truth[:, :8] = 255
    write_volume(f"{tmp_path}/t2.zarr/labels", truth, (1.0, 1.0, 1.0))
    garbage = probs.argmax(0).astype(np.uint8)
    ignored = evaluate_classes(f"{tmp_path}/p.zarr/map", f"{tmp_path}/t2.zarr/labels", 3)
    garbage[:, :8] = (garbage[:, :8] + 1) % 3  # other predictions where the truth is ignored
    write_volume(f"{tmp_path}/g.zarr/map", garbage, (1.0, 1.0, 1.0))
    again = evaluate_classes(f"{tmp_path}/g.zarr/map", f"{tmp_path}/t2.zarr/labels", 3)
    assert np.array_equal(ignored.scores.matrix, again.scores.matrix)
    assert ignored.scores.matrix.sum() == before.scores.matrix.sum() - 6 * 8 * 20


def test_evaluate_command_with_classes_json_and_table(tmp_path):
    volumes(tmp_path)
    result = invoke("evaluate", f"{tmp_path}/p.zarr/map", f"{tmp_path}/t.zarr/labels",
                    "--num-classes", "3", "--classes", "1,2", "--json", tmp_path / "s.json")
    assert result.exit_code == 0, result.output
    assert "mIoU" in result.stdout and "pixel acc." in result.stdout
    scores = json.loads((tmp_path / "s.json").read_text())
    assert scores["num_classes"] == 3 and scores["miou_classes"] == [1, 2]
    assert scores["miou"] == pytest.approx(np.mean([scores["iou"]["1"], scores["iou"]["2"]]))
    assert len(scores["confusion_matrix"]) == 3 and scores["prediction_kind"] == "class map"


@pytest.mark.parametrize("extra, expected", [
    (["--classes", "1,x"], "--classes '1,x'"),
    (["--classes", "0,5"], "--classes 5: outside the 3 classes"),
    (["--num-classes", "1"], "--num-classes 1"),
])
def test_evaluate_command_option_errors(tmp_path, extra, expected):
    volumes(tmp_path)
    result = invoke("evaluate", f"{tmp_path}/p.zarr/probs", f"{tmp_path}/t.zarr/labels", *extra)
    assert_user_error(result, expected)


def test_a_class_map_without_a_class_count_stays_binary_and_binary_options_are_refused(tmp_path):
    truth = np.zeros((2, 16, 16), np.uint8)
    truth[:, 4:8] = 1
    write_volume(f"{tmp_path}/t.zarr/l", truth, (1.0, 1.0, 1.0))
    write_volume(f"{tmp_path}/p.zarr/m", truth, (1.0, 1.0, 1.0))  # a 0/1 mask: as today
    result = invoke("evaluate", f"{tmp_path}/p.zarr/m", f"{tmp_path}/t.zarr/l", "--json",
                    tmp_path / "s.json")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "s.json").read_text())["iou"] == 1.0
    write_volume(f"{tmp_path}/p.zarr/f", truth.astype(np.float32), (1.0, 1.0, 1.0))
    refused = invoke("evaluate", f"{tmp_path}/p.zarr/f", f"{tmp_path}/t.zarr/l", "--classes", "1")
    assert_user_error(refused, "are for class")


def test_synapse_outputs_are_not_scored_as_classes(tmp_path):
    import zarr

    truth = np.zeros((2, 16, 16), np.uint8)
    write_volume(f"{tmp_path}/t.zarr/l", truth, (1.0, 1.0, 1.0))
    write_volume(f"{tmp_path}/p.zarr/p", np.zeros((2, 2, 16, 16), np.float32), (1.0, 1.0, 1.0))
    array = zarr.open_array(f"{tmp_path}/p.zarr", path="p", mode="r+")
    array.attrs["masktwins"] = {"recipe": {"model": {"task": "synapse", "num_classes": 2}}}
    result = invoke("evaluate", f"{tmp_path}/p.zarr/p", f"{tmp_path}/t.zarr/l")
    assert_user_error(result, "evaluate --task synapse")
