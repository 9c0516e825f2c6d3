"""Tests for masktwins_cli.synapse.points: the table, its validation, CSV and WASP-SYN HDF5 files."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from masktwins_cli.errors import MaskTwinsError
from masktwins_cli.synapse.points import (
    SynapsePoints,
    check_points,
    make_points,
    offset_from_name,
    point_voxels,
    read_points,
    read_points_csv,
    read_waspsyn_points,
    write_points,
    write_points_csv,
    write_waspsyn_points,
)

SHAPE = (7, 20, 30)  # anisotropic, so an axis swap shows up as a point outside the volume

# Two pre points, three posts: pre 0 has posts 0 and 2, pre 1 has post 1. Coordinates are
# distinct per axis (z < 7 < y, x) and not all integers, so swaps and rounding show.
TABLE = SynapsePoints(
    pre=np.array([[1.0, 12.5, 25.0], [5.0, 3.0, 0.1]]),
    post=np.array([[2.0, 14.0, 27.0], [6.0, 2.0, 1.0], [0.25, 10.0, 22.0 / 3.0]]),
    post_pre=np.array([0, 1, 0]),
)


def assert_same(a: SynapsePoints, b: SynapsePoints) -> None:
    np.testing.assert_array_equal(a.pre, b.pre)
    np.testing.assert_array_equal(a.post, b.post)
    np.testing.assert_array_equal(a.post_pre, b.post_pre)
    assert a.pre.dtype == np.float64 and a.post.dtype == np.float64 and a.post_pre.dtype == np.int64


def write_csv(path: Path, *rows: str) -> Path:
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_table_layout_is_checked_copied_and_read_only():
    pre = np.array([[1, 2, 3]])
    table = SynapsePoints(pre, np.zeros((0, 3)), [])
    pre[0, 0] = 99
    assert table.pre[0, 0] == 1.0 and table.n_pre == 1 and table.n_post == 0
    with pytest.raises(ValueError):
        table.pre[0, 0] = 5.0
    with pytest.raises(ValueError, match="pre"):
        SynapsePoints(np.zeros((2, 2)), np.zeros((0, 3)), [])
    with pytest.raises(ValueError, match="links"):
        SynapsePoints(np.zeros((1, 3)), np.zeros((2, 3)), [0])
    empty = SynapsePoints.empty()
    assert empty.pre.shape == (0, 3) and empty.post.shape == (0, 3) and empty.post_pre.shape == (0,)


def test_posts_of_translated_and_point_voxels():
    np.testing.assert_array_equal(TABLE.posts_of(0), TABLE.post[[0, 2]])
    moved = TABLE.translated((1, 10, 100))
    np.testing.assert_array_equal(moved.pre[1], [6.0, 13.0, 100.1])
    # round half up, also for negatives
    np.testing.assert_array_equal(point_voxels([[0.5, 1.49, -0.5], [-0.51, 2.5, 3.5]]),
                                  [[1, 1, 0], [-1, 3, 4]])


@pytest.mark.parametrize(
    ("pre", "post", "links", "message"),
    [
        ([[1, 2, 3, 4]], [], [], r"src: pre points have shape \(1, 4\); expected \(rows, 3\)"),
        ([[1, 2, 3]], [[1, 2]], [0], r"src: post points have shape \(1, 2\)"),
        ([[1, 2, 3]], [[1, 2, 3], [1, 2, 3]], [0, 1], "src: post row 1 links to pre row 1, but "
         r"there are 1 pre points \(rows 0..0\)"),
        ([[1, 2, 3]], [[1, 2, 3]], [0.5], "src: post row 0 links to pre 0.5, not a row index"),
        ([[1, 2, 3]], [[1, 2, 3]], [-1], "src: post row 0 links to pre row -1"),
        ([[1, 2, 3], [1, np.nan, 3]], [], [], "src: pre row 1 has a non-finite coordinate"),
        ([[1, 2, 3]], [[1, 2, np.inf]], [0], "src: post row 0 has a non-finite coordinate"),
        ([[1, 2, 3], [7, 2, 3]], [], [], r"src: pre row 1 at \(z, y, x\) = \(7, 2, 3\) lies "
         r"outside the volume of shape \(7, 20, 30\)"),
        ([[1, 2, 3]], [[1, -0.6, 3]], [0], "src: post row 0 .* lies outside"),
    ],
)
def test_make_points_names_source_and_row(pre, post, links, message):
    with pytest.raises(MaskTwinsError, match=message):
        make_points(pre, post, links, "src", SHAPE)


def test_make_points_edges_of_the_volume_are_inside():
    # voxel floor(c + 0.5) must lie in [0, S): -0.5 and S - 0.5 - tiny are inside
    table = make_points([[-0.5, -0.5, -0.5], [6.49, 19.49, 29.49]], [], [], "src", SHAPE)
    assert table.n_pre == 2
    assert check_points(TABLE, "labels", SHAPE) is not TABLE


def test_csv_round_trip_is_exact(tmp_path):
    path = tmp_path / "points.csv"
    write_points_csv(path, TABLE)
    assert_same(read_points_csv(path, SHAPE), TABLE)
    assert path.read_text().splitlines()[0] == "kind,id,pre_id,z,y,x"
    assert [p.name for p in tmp_path.iterdir()] == ["points.csv"]  # no staging file left
    empty = tmp_path / "empty.csv"
    write_points_csv(empty, SynapsePoints.empty())
    assert_same(read_points_csv(empty), SynapsePoints.empty())


def test_csv_reads_any_column_order_ids_and_blank_lines(tmp_path):
    path = write_csv(tmp_path / "p.csv", "x,y,z,pre_id,id,kind", "3,2,1,7,40,post", "",
                     "29,19,5,,7,pre", "9,8,4,, 3 ,PRE", "1,1,1,3,41,post")
    table = read_points_csv(path, SHAPE)
    np.testing.assert_array_equal(table.pre, [[5, 19, 29], [4, 8, 9]])
    np.testing.assert_array_equal(table.post, [[1, 2, 3], [1, 1, 1]])
    np.testing.assert_array_equal(table.post_pre, [0, 1])


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (["kind,id,pre_id,z,y"], r"p.csv: line 1: header 'kind,id,pre_id,z,y' is not a point-table "
         "header; expected the columns kind,id,pre_id,z,y,x"),
        (["kind,id,pre_id,z,y,x,score"], "line 1: header"),
        (["kind,id,pre_id,z,y,x", "pre,0,,1,2,3", "pre,1,,1,2"], "p.csv: line 3: 5 fields; "
         "expected 6"),
        (["kind,id,pre_id,z,y,x", "pre,0,,1,2,3", "post,0,5,1,2,3"], "p.csv: line 3: post 0 links "
         "to pre_id 5, which no pre row defines"),
        (["kind,id,pre_id,z,y,x", "pre,0,,1,2,3", "post,0,0,1,nan,3"], "p.csv: line 3 has a "
         "non-finite coordinate"),
        (["kind,id,pre_id,z,y,x", "pre,0,,1,2,3", "", "pre,1,,1,2,31"], r"p.csv: line 4 at "
         r"\(z, y, x\) = \(1, 2, 31\) lies outside the volume of shape \(7, 20, 30\)"),
        (["kind,id,pre_id,z,y,x", "syn,0,,1,2,3"], "line 2: kind 'syn' is neither"),
        (["kind,id,pre_id,z,y,x", "pre,0,0,1,2,3"], "line 2: a pre row leaves pre_id empty"),
        (["kind,id,pre_id,z,y,x", "pre,a,,1,2,3"], "line 2: id and .* must be integers"),
        (["kind,id,pre_id,z,y,x", "pre,0,,1,two,3"], "line 2: z, y, x must be numbers"),
        (["kind,id,pre_id,z,y,x", "pre,0,,1,2,3", "pre,0,,1,2,4"], "line 3: pre id 0 is used twice"),
    ],
)
def test_bad_csv_tables_name_file_and_line(tmp_path, rows, message):
    path = write_csv(tmp_path / "p.csv", *rows)
    with pytest.raises(MaskTwinsError, match=message):
        read_points_csv(path, SHAPE)


def test_missing_and_empty_csv(tmp_path):
    with pytest.raises(MaskTwinsError, match="point table not found"):
        read_points_csv(tmp_path / "nope.csv")
    (tmp_path / "blank.csv").write_text("")
    with pytest.raises(MaskTwinsError, match="blank.csv: line 1: header '' is not"):
        read_points_csv(tmp_path / "blank.csv")


@pytest.mark.parametrize(
    ("name", "offset"),
    [
        ("vol_z100_y200_x300.h5", (100, 200, 300)),
        ("x300_vol_Y200_z100.hdf5", (100, 200, 300)),
        ("vol_100_200_300.h5", (100, 200, 300)),
        ("/data/sample1_vol2_100_200_300.h5", (100, 200, 300)),
        ("a_7_b_100_200_300.h5", (100, 200, 300)),  # one run of exactly three integers
        ("syns_zyx_5500-6100_6000-6600_1800-2400.h5", (5500, 6000, 1800)),  # the challenge's
        ("sample_x2_10_20_30.h5", (10, 20, 30)),  # an incomplete tag set is not an offset
    ],
)
def test_offset_from_name(name, offset):
    assert offset_from_name(name) == offset


@pytest.mark.parametrize("name", ["labels.h5", "vol_100_200.h5", "2023_100_200_300.h5",
                                  "a_1_2_3_b_4_5_6.h5", "vol_z1_z2_y3_x4.h5"])
def test_offset_from_name_refuses_missing_or_ambiguous(name):
    with pytest.raises(MaskTwinsError, match=f"crop offset in the file name '{name}'.*explicitly"):
        offset_from_name(name)


def write_waspsyn(path: Path, pre: np.ndarray, post: np.ndarray) -> Path:
    with h5py.File(path, "w") as h5file:
        h5file["pre"] = pre
        h5file["post"] = post
    return path


def test_waspsyn_reader_subtracts_offset_from_name(tmp_path):
    offset = np.array([100, 200, 300])
    post = np.column_stack([TABLE.post_pre, TABLE.post + offset])
    for name in ("syns_zyx_100-107_200-220_300-330.h5", "lab_z100_y200_x300.h5",
                 "lab_100_200_300.hdf5"):
        path = write_waspsyn(tmp_path / name, TABLE.pre + offset, post)
        table = read_waspsyn_points(path, shape=SHAPE)
        np.testing.assert_allclose(table.pre, TABLE.pre, atol=1e-12)
        np.testing.assert_allclose(table.post, TABLE.post, atol=1e-12)
        np.testing.assert_array_equal(table.post_pre, TABLE.post_pre)
    # an explicit offset wins over the name; integer datasets are fine
    path = write_waspsyn(tmp_path / "v_1_2_3.h5", np.array([[11, 22, 33]]), np.array([[0, 12, 23, 34]]))
    np.testing.assert_array_equal(read_waspsyn_points(path, offset=(10, 20, 30)).pre, [[1, 2, 3]])
    np.testing.assert_array_equal(read_waspsyn_points(path).post, [[11, 21, 31]])


def test_waspsyn_reader_errors(tmp_path):
    good_pre, good_post = np.zeros((2, 3)), np.array([[1, 0, 0, 0]])
    path = write_waspsyn(tmp_path / "labels.h5", good_pre, good_post)
    with pytest.raises(MaskTwinsError, match="crop offset in the file name 'labels.h5'"):
        read_waspsyn_points(path)
    cases = [
        (np.zeros((2, 4)), good_post, r"dataset 'pre' has shape \(2, 4\); the WASP-SYN layout"),
        (good_pre, np.zeros((1, 3)), r"dataset 'post' has shape \(1, 3\)"),
        (good_pre, np.array([[2, 0, 0, 0]]), "bad_0_0_0.h5: post row 0 links to pre row 2, but "
         "there are 2 pre points"),
        (good_pre, np.array([[0, 0, 0, 0], [1.5, 0, 0, 0]]), "post row 1 links to pre 1.5"),
        (np.array([[0, 0, 0], [7, 0, 0]]), good_post, r"pre row 1 at .* lies outside the volume"),
        (good_pre, np.array([[0, np.nan, 0, 0]]), "post row 0 has a non-finite coordinate"),
    ]
    for pre, post, message in cases:
        path = write_waspsyn(tmp_path / "bad_0_0_0.h5", pre, post)
        with pytest.raises(MaskTwinsError, match=message):
            read_waspsyn_points(path, shape=SHAPE)
    with h5py.File(tmp_path / "nopost_0_0_0.h5", "w") as h5file:
        h5file["pre"] = good_pre
    with pytest.raises(MaskTwinsError, match="no dataset 'post'"):
        read_waspsyn_points(tmp_path / "nopost_0_0_0.h5")
    with pytest.raises(MaskTwinsError, match="HDF5 file not found"):
        read_waspsyn_points(tmp_path / "missing_0_0_0.h5")


def test_waspsyn_writer_round_trips_with_and_without_offset(tmp_path):
    detections = tmp_path / "pred.h5"
    write_waspsyn_points(detections, TABLE)
    assert_same(read_waspsyn_points(detections, offset=(0, 0, 0)), TABLE)
    with h5py.File(detections, "r") as h5file:
        assert h5file["pre"].shape == (2, 3) and h5file["post"].shape == (3, 4)
        np.testing.assert_array_equal(h5file["post"][:, 0], TABLE.post_pre)
    labels = tmp_path / "labels_z4_y8_x16.h5"
    write_waspsyn_points(labels, TABLE, offset=(4, 8, 16))
    with h5py.File(labels, "r") as h5file:
        np.testing.assert_array_equal(h5file["pre"][0], TABLE.pre[0] + [4, 8, 16])
    np.testing.assert_allclose(read_waspsyn_points(labels).post, TABLE.post, atol=1e-12)
    empty = tmp_path / "empty.h5"
    write_waspsyn_points(empty, SynapsePoints.empty())
    assert_same(read_waspsyn_points(empty, offset=(0, 0, 0)), SynapsePoints.empty())


def test_read_and_write_points_dispatch_by_suffix(tmp_path):
    for name in ("t.csv", "t.h5"):
        write_points(tmp_path / name, TABLE)
        assert_same(read_points(tmp_path / name, SHAPE, **({"offset": (0, 0, 0)} if name.endswith(
            "h5") else {})), TABLE)
    with pytest.raises(MaskTwinsError, match="offset applies to WASP-SYN HDF5 files only"):
        read_points(tmp_path / "t.csv", offset=(1, 2, 3))
    with pytest.raises(MaskTwinsError, match="unknown point-table format '.json'"):
        read_points(tmp_path / "t.json")
    with pytest.raises(MaskTwinsError, match="unknown point-table format '.txt'"):
        write_points(tmp_path / "t.txt", TABLE)
