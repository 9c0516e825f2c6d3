"""A three-class colour task with an ignored region through prepare stack --rgb, train, infer
(class map and class probabilities) and evaluate, on the CPU."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import invoke
from PIL import Image

from masktwins_cli.io.volumes import open_volume, write_volume
from tiny_data import toml_document

SHAPE = (2, 64, 64)
COLOURS = np.array([[128, 128, 128], [200, 70, 70], [70, 70, 200]])  # grey, red, blue


def write_pngs(folder, slices, mode: str) -> str:
    folder.mkdir()
    for z, plane in enumerate(slices):
        Image.fromarray(plane, mode=mode).save(folder / f"s{z}.png")
    return str(folder)


@pytest.fixture(scope="module")
def three_class_run(tmp_path_factory):
    """(folder with d.zarr (training labels) and t.zarr (full truth), trained run): class 1 a
    red and class 2 a blue square on grey, of one brightness, so only the colour tells them
    apart; a band of ignored (255) training labels. Prepared from PNG slices with --rgb."""
    folder = tmp_path_factory.mktemp("three_classes")
    rng = np.random.default_rng(0)
    truth = np.zeros(SHAPE, np.uint8)
    truth[:, 8:28, 8:28] = 1
    truth[:, 36:60, 30:56] = 2
    rgb = (COLOURS[truth] + rng.normal(0, 8, (*SHAPE, 3))).clip(0, 255).astype(np.uint8)
    labels = truth.copy()
    labels[:, :, :4] = 255  # unlabeled margin in the training labels
    images = write_pngs(folder / "images", rgb, "RGB")
    for name, stack in (("d", labels), ("t", truth)):
        pngs = write_pngs(folder / f"{name}_labels", stack, "L")
        result = invoke("prepare", "stack", f"{folder}/{name}.zarr", "--images", images,
                        "--labels", pngs, "--rgb", "--voxel-size", "1,1,1")
        assert result.exit_code == 0, result.output
    assert "x 3 channels" in result.output
    sections = {
        "data": {"root": str(folder), "patch_size": [32, 32], "augment": False,
                 "source": [{"raw": "d.zarr/raw", "labels": "d.zarr/labels"}],
                 "target": [{"raw": "d.zarr/raw"}],
                 "val": [{"raw": "d.zarr/raw", "labels": "d.zarr/labels"}]},
        "model": {"spatial_dims": 2, "in_channels": 3, "features": [8, 8, 8, 8, 8],
                  "num_classes": 3},
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


def test_prepare_stack_rgb_keeps_the_colours_channel_first(three_class_run):
    raw = open_volume(f"{three_class_run}/d.zarr/raw")
    assert (raw.dtype, tuple(raw.shape)) == (np.uint8, (3, *SHAPE))
    first = np.asarray(Image.open(three_class_run / "images" / "s0.png"))
    assert np.array_equal(raw[:, 0], np.moveaxis(first, -1, 0))
    labels = open_volume(f"{three_class_run}/d.zarr/labels").read_all()
    assert tuple(labels.shape) == SHAPE and set(np.unique(labels)) == {0, 1, 2, 255}


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
        result = invoke("evaluate", f"{folder}/p.zarr/{kind}", f"{folder}/t.zarr/labels",
                        "--json", out)
        assert result.exit_code == 0, result.output
        scores.append(json.loads(out.read_text()))
    assert scores[0]["confusion_matrix"] == scores[1]["confusion_matrix"]
    # it learned the squares, which only their colour tells apart
    assert scores[0]["num_classes"] == 3 and scores[0]["miou"] > 0.5
    assert min(scores[0]["iou"][c] for c in ("1", "2")) > 0.5, scores[0]["iou"]


def test_garbage_where_the_labels_are_ignored_changes_no_score(three_class_run):
    folder = three_class_run
    predicted = open_volume(f"{folder}/p.zarr/map").read_all()
    garbage = predicted.copy()
    garbage[:, :, :4] = np.random.default_rng(1).integers(0, 3, garbage[:, :, :4].shape)
    assert not np.array_equal(garbage, predicted)
    write_volume(f"{folder}/g.zarr/map", garbage, (1.0, 1.0, 1.0))
    scores = []
    for prediction in (f"{folder}/p.zarr/map", f"{folder}/g.zarr/map"):
        out = folder / "garbage.json"
        result = invoke("evaluate", prediction, f"{folder}/d.zarr/labels", "--num-classes", "3",
                        "--json", out, "--overwrite")
        assert result.exit_code == 0, result.output
        scores.append({k: v for k, v in json.loads(out.read_text()).items() if k != "prediction"})
    assert scores[0] == scores[1] and scores[0]["miou"] > 0.5


def test_three_class_validation_logs_the_miou_and_keeps_the_best(three_class_run):
    from masktwins_cli.training.metrics_log import read_log

    records = [r for r in read_log(three_class_run / "run" / "log.jsonl") if "val_miou" in r]
    assert [r["step"] for r in records] == [50, 100, 150]
    assert all(0.0 <= r["val_miou"] <= 1.0 and "val_iou" not in r for r in records)
    assert (three_class_run / "run" / "best.pt").is_file()


def test_both_writes_the_probabilities_and_the_class_map_beside_them(three_class_run):
    """infer.classes = 'both': probabilities at the output, their argmax in <dataset>_map; a
    rerun is complete, an earlier 'probabilities' output is reused, a map made by other work
    is refused without --overwrite, and a map lost after the commit is derived again."""
    import shutil

    folder = three_class_run
    checkpoint, raw = folder / "run" / "last.pt", f"{folder}/d.zarr/raw"
    both = ("--device", "cpu", "--set", 'infer.classes="both"')
    result = invoke("infer", checkpoint, raw, "-o", f"{folder}/b.zarr/seg", *both)
    assert result.exit_code == 0, result.output
    assert f"class map: {folder}/b.zarr/seg_map" in result.output
    probs = open_volume(f"{folder}/b.zarr/seg").read_all()
    class_map = open_volume(f"{folder}/b.zarr/seg_map")
    assert (class_map.dtype, tuple(class_map.shape)) == (np.uint8, SHAPE)
    assert np.array_equal(class_map.read_all(), probs.argmax(axis=0))
    assert np.array_equal(class_map.read_all(), open_volume(f"{folder}/p.zarr/map").read_all())
    again = invoke("infer", checkpoint, raw, "-o", f"{folder}/b.zarr/seg", *both)
    assert again.exit_code == 0 and "already complete" in again.output
    shutil.rmtree(folder / "b.zarr" / "seg_map")  # e.g. killed while deriving it
    again = invoke("infer", checkpoint, raw, "-o", f"{folder}/b.zarr/seg", *both)
    assert again.exit_code == 0 and "already complete" in again.output
    assert np.array_equal(open_volume(f"{folder}/b.zarr/seg_map").read_all(), probs.argmax(axis=0))
    # an output made with 'probabilities' is the same work: only its map is derived
    reused = invoke("infer", checkpoint, raw, "-o", f"{folder}/p.zarr/probabilities", *both)
    assert reused.exit_code == 0 and "already complete" in reused.output, reused.output
    assert open_volume(f"{folder}/p.zarr/probabilities_map").shape == SHAPE
    # someone else's array where the map would go: refused before any work
    write_volume(f"{folder}/o.zarr/seg_map", np.ones(SHAPE, np.uint8), (1.0, 1.0, 1.0))
    refused = invoke("infer", checkpoint, raw, "-o", f"{folder}/o.zarr/seg", *both)
    assert refused.exit_code == 2 and "o.zarr/seg_map" in refused.output
    assert not (folder / "o.zarr" / "seg").exists()
    assert np.all(open_volume(f"{folder}/o.zarr/seg_map").read_all() == 1)
    replaced = invoke("infer", checkpoint, raw, "-o", f"{folder}/o.zarr/seg", *both, "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert np.array_equal(open_volume(f"{folder}/o.zarr/seg_map").read_all(), probs.argmax(axis=0))


def test_class_overlays_show_prediction_truth_and_errors_over_the_colour_image(three_class_run):
    from masktwins_cli.evaluation.class_overlays import background

    folder = three_class_run
    if not (folder / "p.zarr" / "map").exists():  # made by the test above when run with it
        made = invoke("infer", folder / "run" / "last.pt", f"{folder}/d.zarr/raw", "-o",
                      f"{folder}/p.zarr/map", "--device", "cpu")
        assert made.exit_code == 0, made.output
    out = folder / "overlays"
    result = invoke("evaluate", f"{folder}/p.zarr/map", f"{folder}/d.zarr/labels", "--overlay",
                    out, "--raw", f"{folder}/d.zarr/raw", "--json", folder / "o.json")
    assert result.exit_code == 0, result.output
    paths = sorted(out.glob("overlay_z*.png"))
    assert [p.name for p in paths] == ["overlay_z0000.png", "overlay_z0001.png"]
    panels = np.asarray(Image.open(paths[0]))
    assert panels.shape == (64, 3 * 64, 3)
    truth_panel, errors = panels[:, 64:128], panels[:, 128:]
    assert not truth_panel[:, :4].any()  # ignored truth: black
    predicted = open_volume(f"{folder}/p.zarr/map").read_all()[0]
    labels = open_volume(f"{folder}/d.zarr/labels").read_all()[0]
    wrong = (predicted != labels) & (labels != 255)
    base = np.clip(np.rint(background(open_volume(f"{folder}/d.zarr/raw")[:, 0])), 0, 255)
    assert np.array_equal(errors[~wrong], base[~wrong])  # only the errors are marked
    assert (errors[wrong] != base[wrong]).any(axis=-1).all()
    recorded = json.loads((folder / "o.json").read_text())["overlays"]
    assert [Path(p).name for p in recorded] == [p.name for p in paths]
    again = invoke("evaluate", f"{folder}/p.zarr/map", f"{folder}/d.zarr/labels", "--overlay",
                   out, "--raw", f"{folder}/d.zarr/raw")
    assert again.exit_code == 2  # existing overlays are not overwritten without --overwrite
