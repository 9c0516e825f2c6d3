"""``masktwins prepare waspsyn`` (the WASP-SYN layout) and ``prepare synthetic --task synapse``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_helpers import assert_user_error, invoke, snapshot
from waspsyn_data import (
    LABELED,
    OFFSET,
    POST,
    PRE,
    SHAPE,
    TARGET_OFFSET,
    UNLABELED,
    coordinate_image,
    make_layout,
    range_name,
    write_image,
    write_labels,
)

from masktwins_cli.io.volumes import open_volume
from masktwins_cli.synapse.points import read_points_csv


def _assert_labeled_volume(out, name):
    raw = open_volume(out / f"{name}.zarr" / "raw")
    assert raw.shape == SHAPE and raw.dtype == np.uint16
    np.testing.assert_array_equal(raw[:], coordinate_image())
    assert raw.voxel_size == (8.0, 8.0, 8.0)
    assert raw.offset == tuple(8.0 * o for o in OFFSET)
    assert max(raw.chunks) <= 64
    table = read_points_csv(out / f"{name}_points.csv", shape=SHAPE)
    np.testing.assert_array_equal(table.pre, PRE)  # local: the offset in the name subtracted
    np.testing.assert_array_equal(table.post, POST[:, 1:])
    np.testing.assert_array_equal(table.post_pre, POST[:, 0].astype(np.int64))


def test_prepare_every_volume(tmp_path):
    make_layout(tmp_path / "wasp")
    out = tmp_path / "out"
    result = invoke("prepare", "waspsyn", tmp_path / "wasp", out, "--unlabeled")
    assert result.exit_code == 0, result.output
    assert "3 pre, 4 post points" in result.stdout and "no labels" in result.stdout
    _assert_labeled_volume(out, LABELED)
    target = open_volume(out / f"{UNLABELED}.zarr" / "raw")
    np.testing.assert_array_equal(target[:], coordinate_image()[::-1])
    assert target.offset == tuple(8.0 * o for o in TARGET_OFFSET)
    assert not (out / f"{UNLABELED}_points.csv").exists()
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{LABELED}.zarr", f"{LABELED}_points.csv", f"{UNLABELED}.zarr"])


def test_prepare_as_source_and_target(tmp_path):
    make_layout(tmp_path / "wasp")
    out = tmp_path / "data" / "waspsyn"
    result = invoke("prepare", "waspsyn", tmp_path / "wasp" / LABELED, out, "--as", "source")
    assert result.exit_code == 0, result.output
    result = invoke("prepare", "waspsyn", tmp_path / "wasp", out, "--as", "target",
                    "--volume", UNLABELED, "--unlabeled")
    assert result.exit_code == 0, result.output
    _assert_labeled_volume(out, "source")
    assert open_volume(out / "target.zarr" / "raw").shape == SHAPE
    assert sorted(p.name for p in out.iterdir()) == ["source.zarr", "source_points.csv",
                                                     "target.zarr"]
    # a rerun refuses to replace, then replaces with --overwrite
    before = snapshot(out)
    assert_user_error(invoke("prepare", "waspsyn", tmp_path / "wasp" / LABELED, out, "--as",
                             "source"), "source.zarr", "--overwrite")
    assert snapshot(out) == before
    result = invoke("prepare", "waspsyn", tmp_path / "wasp" / LABELED, out, "--as", "source",
                    "--overwrite")
    assert result.exit_code == 0, result.output
    _assert_labeled_volume(out, "source")
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_as_needs_one_volume(tmp_path):
    make_layout(tmp_path / "wasp")
    assert_user_error(invoke("prepare", "waspsyn", tmp_path / "wasp", tmp_path / "out", "--as",
                             "source", "--unlabeled"), "--volume", LABELED, UNLABELED)
    assert_user_error(invoke("prepare", "waspsyn", tmp_path / "wasp", tmp_path / "out",
                             "--volume", "nope"), "nope", LABELED)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------ bad layouts
def _bad(tmp_path, *names, extra=()):
    before = snapshot(tmp_path)
    line = assert_user_error(invoke("prepare", "waspsyn", tmp_path / "wasp", tmp_path / "out",
                                    *extra), *names)
    assert snapshot(tmp_path) == before  # nothing written, no output folder
    return line


def test_image_without_labels_needs_unlabeled(tmp_path):
    files = make_layout(tmp_path / "wasp")
    _bad(tmp_path, files["target"], "--unlabeled")


def test_labels_without_image(tmp_path):
    files = make_layout(tmp_path / "wasp", unlabeled=False)
    stray = write_labels(tmp_path / "wasp" / LABELED / range_name("syns", (1, 2, 3)), PRE, POST,
                         (1, 2, 3))
    line = _bad(tmp_path, stray, "(1, 2, 3)")
    assert files["image"].name not in line


def test_missing_main_dataset(tmp_path):
    files = make_layout(tmp_path / "wasp", unlabeled=False)
    write_image(files["image"], coordinate_image(), dataset="raw")
    _bad(tmp_path, files["image"], "main")


def test_image_not_3d(tmp_path):
    files = make_layout(tmp_path / "wasp", unlabeled=False)
    write_image(files["image"], coordinate_image()[0])
    _bad(tmp_path, files["image"], "3-D")


@pytest.mark.parametrize("pre,post,fragments", [
    (np.vstack([PRE, [[5.0, 40.0, 3.0]]]), POST, ["pre row 3", "outside"]),   # y = 40 >= 40
    (PRE, np.vstack([POST, [[0, -1.0, 3.0, 3.0]]]), ["post row 4", "outside"]),
    (PRE, np.vstack([POST, [[3, 5.0, 3.0, 3.0]]]), ["post row 4", "pre row 3"]),  # no pre row 3
    (PRE, POST[:, 1:], ["'post'", "(4, 3)"]),                                 # wrong columns
])
def test_bad_point_tables(tmp_path, pre, post, fragments):
    files = make_layout(tmp_path / "wasp", unlabeled=False)
    if post.shape[1] == 3:  # wrong columns: written as is, without the offset
        with __import__("h5py").File(files["labels"], "w") as h5file:
            h5file["pre"], h5file["post"] = pre + OFFSET, post
    else:
        write_labels(files["labels"], pre, post)
    _bad(tmp_path, files["labels"], *fragments)


# ------------------------------------------------------------------- synthetic synapse pair
def test_prepare_synthetic_synapse(tmp_path):
    out = tmp_path / "syn"
    result = invoke("prepare", "synthetic", out, "--task", "synapse", "--seed", "2",
                    "--shape", "32,40,48")
    assert result.exit_code == 0, result.output
    names = ("source", "target_train", "target_test")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{n}.zarr" for n in names] + [f"{n}_points.csv" for n in names] + ["dataset.json"])
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["task"] == "synapse" and meta["seed"] == 2
    for name in names:
        raw = open_volume(out / f"{name}.zarr" / "raw")
        assert raw.shape == (32, 40, 48) and raw.voxel_size == (8.0, 8.0, 8.0)
        table = read_points_csv(out / f"{name}_points.csv", shape=raw.shape)
        assert meta["points"][name] == {"pre": table.n_pre, "post": table.n_post}
        assert f"{name}: 32x40x48 voxels, {table.n_pre} pre, {table.n_post} post" in result.stdout


def test_prepare_synthetic_synapse_bad_shape(tmp_path):
    assert_user_error(invoke("prepare", "synthetic", tmp_path / "syn", "--task", "synapse",
                             "--shape", "8,40,48"), "shape")
    assert not (tmp_path / "syn").exists()


def test_prepare_synthetic_synapse_test_shape(tmp_path):
    out = tmp_path / "syn"
    result = invoke("prepare", "synthetic", out, "--task", "synapse", "--shape", "32,40,48",
                    "--test-shape", "32,64,64")
    assert result.exit_code == 0, result.output
    assert open_volume(out / "target_test.zarr" / "raw").shape == (32, 64, 64)
    assert open_volume(out / "source.zarr" / "raw").shape == (32, 40, 48)
    assert "target_test: 32x64x64 voxels" in result.stdout


@pytest.mark.parametrize("args,fragment", [
    (["--task", "synapse", "--test-shape", "32,64"], "--test-shape '32,64'"),
    (["--task", "mito", "--test-shape", "32,64,64"], "only for --task synapse"),
])
def test_prepare_synthetic_bad_test_shape(tmp_path, args, fragment):
    assert_user_error(invoke("prepare", "synthetic", tmp_path / "syn", *args), fragment)
    assert not (tmp_path / "syn").exists()


def test_image_name_without_offset(tmp_path):
    make_layout(tmp_path / "wasp", unlabeled=False)
    stray = write_image(tmp_path / "wasp" / "img_main.h5", coordinate_image())
    _bad(tmp_path, stray, "img_zyx_<z0>-<z1>")
