"""prepare cityscapes / synthia on tiny trees in the exact published layouts."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from cli_helpers import invoke
from PIL import Image
from scene_fixtures import (
    CITYSCAPES_EXPECTED,
    CITYSCAPES_IDS,
    SIZE,
    SYNTHIA_EXPECTED,
    SYNTHIA_IDS,
    cityscapes_tree,
    expected_train_ids,
    synthia_tree,
    write_png16_rgb,
)

from masktwins_cli.io.volumes import open_volume
from masktwins_cli.prepare.scenes import SYNTHIA, TRAIN_CLASSES, read_label_ids


def prepared(out) -> tuple[np.ndarray, np.ndarray, dict]:
    raw = open_volume(f"{out}/raw").read_all()
    labels = open_volume(f"{out}/labels").read_all()
    attrs = zarr.open_group(str(out), mode="r").attrs["masktwins_prepare"]
    return raw, labels, attrs


def test_cityscapes_splits_become_rgb_volumes_with_train_ids(tmp_path):
    written = cityscapes_tree(tmp_path / "cs")
    for split in ("train", "val"):
        result = invoke("prepare", "cityscapes", tmp_path / "cs", tmp_path / f"{split}.zarr",
                        "--split", split)
        assert result.exit_code == 0, result.output
        raw, labels, attrs = prepared(tmp_path / f"{split}.zarr")
        pairs = written[split]
        assert raw.shape == (3, len(pairs), *SIZE) and labels.shape == (len(pairs), *SIZE)
        for z, (image, ids) in enumerate(pairs):  # city by city, 2 before 19 in each
            assert np.array_equal(raw[:, z], np.moveaxis(image, -1, 0))
            assert np.array_equal(labels[z], expected_train_ids(ids, CITYSCAPES_IDS, CITYSCAPES_EXPECTED))
            counts = np.bincount(labels[z].ravel(), minlength=256)[:19]
            assert attrs["class_pixels"][z] == counts.tolist()
        assert attrs["classes"] == list(TRAIN_CLASSES) and attrs["split"] == split


def test_synthia_labels_keep_their_16_bits(tmp_path):
    written = synthia_tree(tmp_path / "syn")
    result = invoke("prepare", "synthia", tmp_path / "syn", tmp_path / "syn.zarr")
    assert result.exit_code == 0, result.output
    raw, labels, attrs = prepared(tmp_path / "syn.zarr")
    assert raw.shape == (3, 3, *SIZE)
    for z, (image, ids) in enumerate(written):
        assert np.array_equal(raw[:, z], np.moveaxis(image, -1, 0))
        assert np.array_equal(labels[z], expected_train_ids(ids, SYNTHIA_IDS, SYNTHIA_EXPECTED))
    assert set(np.unique(labels)) == set(range(19)) | {255}
    assert sum(map(sum, attrs["class_pixels"])) == int(np.count_nonzero(labels != 255))


def test_the_pillow_pitfall_is_avoided(tmp_path):
    """Pillow reads a 16-bit RGB PNG as 8-bit (the high byte): every SYNTHIA id < 256 would
    become 0 (void). The reader used here keeps the ids."""
    ids = np.array([[3, 4, 22], [0, 13, 21]])
    label = np.stack([ids, np.full(ids.shape, 700), np.zeros(ids.shape)], axis=-1)
    write_png16_rgb(tmp_path / "label.png", label)
    with Image.open(tmp_path / "label.png") as img:
        assert not np.array_equal(np.asarray(img)[..., 0], ids)  # what Pillow makes of it
    assert np.array_equal(read_label_ids(tmp_path / "label.png", SYNTHIA), ids)


def test_scale_and_limit(tmp_path):
    cityscapes_tree(tmp_path / "cs")
    result = invoke("prepare", "cityscapes", tmp_path / "cs", tmp_path / "half.zarr", "--scale",
                    "0.5", "--limit", "3")
    assert result.exit_code == 0, result.output
    raw, labels, attrs = prepared(tmp_path / "half.zarr")
    assert raw.shape == (3, 3, SIZE[0] // 2, SIZE[1] // 2) and labels.shape == (3, 16, 32)
    assert set(np.unique(labels)) <= set(CITYSCAPES_EXPECTED.tolist())  # nearest: no new ids
    assert len(attrs["class_pixels"]) == 3 and attrs["scale"] == 0.5


def test_outputs_validate_as_ome_zarr(tmp_path):
    models = pytest.importorskip("ome_zarr_models", reason="the test extra installs it")
    synthia_tree(tmp_path / "syn", count=1)
    assert invoke("prepare", "synthia", tmp_path / "syn", tmp_path / "s.zarr").exit_code == 0
    models.open_ome_zarr(zarr.open_group(str(tmp_path / "s.zarr"), mode="r"))
    image_label = zarr.open_group(str(tmp_path / "s.zarr"), path="labels/classes",
                                  mode="r").attrs["ome"]["image-label"]
    assert {"label-value": 13, "rgba": [0, 0, 142, 255]} in image_label["colors"]  # car


def _break(tree, what: str):
    if what == "no-leftImg8bit":
        import shutil

        shutil.rmtree(tree / "leftImg8bit")
    elif what == "no-label":
        next((tree / "gtFine" / "train" / "aachen").glob("*_labelIds.png")).unlink()
    elif what == "id-outside-table":
        path = next((tree / "gtFine" / "train" / "bochum").glob("*_labelIds.png"))
        Image.fromarray(np.full(SIZE, 40, np.uint8)).save(path)
    elif what == "other-size":
        path = next((tree / "leftImg8bit" / "train" / "bochum").glob("*.png"))
        Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(path)


@pytest.mark.parametrize("what, fragments", [
    ("no-leftImg8bit", ["cs/leftImg8bit", "missing"]),
    ("no-label", ["has no label", "aachen"]),
    ("id-outside-table", ["40", "outside the cityscapes label table", "bochum"]),
    ("other-size", ["16x16", "one size"]),
    ("bad-split", ["--split", "bogus"]),
])
def test_bad_layouts_are_one_line_and_write_nothing(tmp_path, what, fragments):
    cityscapes_tree(tmp_path / "cs")
    _break(tmp_path / "cs", what)
    split = ["--split", "bogus"] if what == "bad-split" else []
    result = invoke("prepare", "cityscapes", tmp_path / "cs", tmp_path / "out.zarr", *split)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert not (tmp_path / "out.zarr").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


def test_synthia_ids_outside_the_table_and_missing_labels(tmp_path):
    synthia_tree(tmp_path / "syn", count=2)
    label = np.stack([np.full(SIZE, 23), np.zeros(SIZE), np.zeros(SIZE)], axis=-1)
    write_png16_rgb(tmp_path / "syn" / "GT" / "LABELS" / "0000001.png", label)
    result = invoke("prepare", "synthia", tmp_path / "syn", tmp_path / "out.zarr")
    assert result.exit_code == 2 and "23" in result.output and "0000001.png" in result.output
    (tmp_path / "syn" / "GT" / "LABELS" / "0000001.png").unlink()
    result = invoke("prepare", "synthia", tmp_path / "syn", tmp_path / "out.zarr")
    assert result.exit_code == 2 and "has no label" in result.output
    assert not (tmp_path / "out.zarr").exists()


def test_an_existing_output_needs_overwrite(tmp_path):
    synthia_tree(tmp_path / "syn", count=1)
    assert invoke("prepare", "synthia", tmp_path / "syn", tmp_path / "s.zarr").exit_code == 0
    again = invoke("prepare", "synthia", tmp_path / "syn", tmp_path / "s.zarr")
    assert again.exit_code == 2 and "--overwrite" in again.output
    assert invoke("prepare", "synthia", tmp_path / "syn", tmp_path / "s.zarr",
                  "--overwrite").exit_code == 0


def test_gta5_images_of_several_sizes_need_a_size(tmp_path):
    from scene_fixtures import gta5_tree

    pairs = gta5_tree(tmp_path / "gta")
    refused = invoke("prepare", "gta5", tmp_path / "gta", tmp_path / "g.zarr")
    assert refused.exit_code == 2 and "--size" in refused.output and "64x34" in refused.output
    assert not (tmp_path / "g.zarr").exists()
    result = invoke("prepare", "gta5", tmp_path / "gta", tmp_path / "g.zarr", "--size", "32x16")
    assert result.exit_code == 0, result.output
    raw, labels, attrs = prepared(tmp_path / "g.zarr")
    assert raw.shape == (3, 3, 16, 32) and labels.shape == (3, 16, 32)
    assert attrs["dataset"] == "gta5"
    full = invoke("prepare", "gta5", tmp_path / "gta", tmp_path / "f.zarr", "--size", "64x32",
                  "--limit", "1")
    assert full.exit_code == 0, full.output
    _, labels, _ = prepared(tmp_path / "f.zarr")  # palette indices are the ids, not colours
    assert np.array_equal(labels[0], expected_train_ids(pairs[0][1], CITYSCAPES_IDS, CITYSCAPES_EXPECTED))
    bad = invoke("prepare", "gta5", tmp_path / "gta", tmp_path / "b.zarr", "--size", "64by32")
    assert bad.exit_code == 2 and "WIDTHxHEIGHT" in bad.output
