"""Tests for the volume interface (masktwins_cli.io.volumes / .uri).

Test arrays encode their coordinates (value = z*10000 + y*100 + x) on an anisotropic shape, so
an axis swap or an off-by-one in slicing shows up as a wrong value.
"""

from __future__ import annotations

import json
import pickle

import h5py
import numpy as np
import pytest
import tifffile
import zarr

from masktwins_cli.errors import MaskTwinsError
from masktwins_cli.io.volumes import (
    Volume,
    WritableVolume,
    create_volume,
    open_volume,
    parse_uri,
    write_volume,
)

SHAPE = (5, 17, 23)


def coordinate_volume(shape=SHAPE, dtype=np.uint32) -> np.ndarray:
    """Array whose value at (z, y, x) is z*10000 + y*100 + x."""
    z, y, x = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    return (z * 10000 + y * 100 + x).astype(dtype)


@pytest.fixture
def volume() -> np.ndarray:
    return coordinate_volume()


KEYS = [
    (slice(1, 4), slice(2, 9), slice(5, 20)),
    (2, slice(None), slice(3, 7)),
    (slice(None, None, 2), slice(16, 2, -3), 22),
    (Ellipsis, 4),
    (None, -1, slice(-5, None), None),
    (slice(3, 3), slice(None), slice(None)),
    (4, 16, 22),
]


def check_slicing(vol: Volume, expected: np.ndarray) -> None:
    for key in KEYS:
        got = vol[key]
        assert isinstance(got, np.ndarray)
        np.testing.assert_array_equal(got, expected[key], err_msg=str(key))
    np.testing.assert_array_equal(vol.read((slice(1, 3), slice(4, 10))), expected[1:3, 4:10])


# ------------------------------------------------------------------------------------ parsing
@pytest.mark.parametrize(
    ("uri", "kind", "container", "dataset"),
    [
        ("a/b/data.zarr/raw", "zarr", "a/b/data.zarr", "raw"),
        ("x.zarr/volumes/raw/", "zarr", "x.zarr", "volumes/raw"),
        ("/abs/x.ZARR", "zarr", "/abs/x.ZARR", ""),
        ("file.h5:/raw", "hdf5", "file.h5", "raw"),
        ("d/file.hdf5:/group/raw", "hdf5", "d/file.hdf5", "group/raw"),
        ("stack.tif", "tiff", "stack.tif", ""),
        ("s/stack.TIFF", "tiff", "s/stack.TIFF", ""),
    ],
)
def test_parse_uri(uri, kind, container, dataset):
    parsed = parse_uri(uri)
    assert (parsed.kind, str(parsed.container), parsed.dataset) == (kind, container, dataset)


def test_parse_uri_hdf5_slash_spelling_and_unknown_extension(tmp_path):
    h5path = tmp_path / "f.h5"
    h5py.File(h5path, "w").close()
    assert parse_uri(f"{h5path}/g/raw") == parse_uri(f"{h5path}:/g/raw")
    with pytest.raises(MaskTwinsError, match=r"data\.npy.*\.zarr.*\.h5.*\.tif"):
        parse_uri(tmp_path / "data.npy")
    with pytest.raises(MaskTwinsError, match="stack.tif"):
        parse_uri("stack.tif/raw")


# -------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("uri", ["o.zarr/volumes/raw", "o.h5:/volumes/raw", "o.tif", "root.zarr"])
def test_write_volume_round_trip(tmp_path, volume, uri):
    written = write_volume(
        tmp_path / uri, volume, voxel_size=(40, 4, 3), offset=(8, 2, 1), chunks=(2, 8, 8)
    )
    vol = open_volume(tmp_path / uri, ndim=3)
    assert vol.uri == written.uri
    assert (vol.shape, vol.dtype, vol.ndim) == (SHAPE, np.dtype(np.uint32), 3)
    assert vol.voxel_size == pytest.approx((40, 4, 3))
    assert vol.offset == pytest.approx((8, 2, 1))
    assert vol.chunks == ((1, 17, 23) if uri.endswith(".tif") else (2, 8, 8))
    np.testing.assert_array_equal(vol.read_all(), volume)
    check_slicing(vol, volume)


def test_zarr_v3_metadata_and_ome_multiscales_written(tmp_path, volume):
    write_volume(tmp_path / "c.zarr/g/other", volume[0], voxel_size=(4, 4))
    write_volume(tmp_path / "c.zarr/g/raw", volume, voxel_size=(40, 4, 4), offset=(0, 8, 8))
    write_volume(tmp_path / "c.zarr/g/raw", volume, voxel_size=(40, 4, 3), overwrite=True)
    array = zarr.open_array(str(tmp_path / "c.zarr"), path="g/raw", mode="r")
    assert array.metadata.zarr_format == 3
    assert array.attrs["voxel_size"] == [40, 4, 3] and array.attrs["axes"] == ["z", "y", "x"]
    images = zarr.open_group(str(tmp_path / "c.zarr/g"), mode="r").attrs["ome"]["multiscales"]
    by_path = {image["datasets"][0]["path"]: image for image in images}
    assert sorted(by_path) == ["other", "raw"]  # the sibling's entry survives
    transforms = by_path["raw"]["datasets"][0]["coordinateTransformations"]
    assert transforms[0]["scale"] == [40, 4, 3] and transforms[1]["translation"] == [0, 0, 0]


def test_zarr_v2_written_by_zarr_reads_with_resolution_attr(tmp_path, volume):
    group = zarr.open_group(str(tmp_path / "v2.zarr"), mode="w", zarr_format=2)
    array = group.create_array("vols/raw", shape=SHAPE, chunks=(2, 5, 7), dtype="uint32")
    array[:] = volume
    array.attrs.update(resolution=[30, 6, 5], offset=[60, 12, 10])
    vol = open_volume(f"{tmp_path}/v2.zarr/vols/raw")
    assert (vol.chunks, vol.voxel_size, vol.offset) == ((2, 5, 7), (30, 6, 5), (60, 12, 10))
    check_slicing(vol, volume)
    root = zarr.open_array(
        str(tmp_path / "root2.zarr"), mode="w", shape=SHAPE, zarr_format=2, dtype="uint32"
    )
    root[:] = volume
    np.testing.assert_array_equal(open_volume(tmp_path / "root2.zarr")[2], volume[2])
    written = write_volume(tmp_path / "v2.zarr/vols/copy", volume, voxel_size=(30, 6, 5))
    assert zarr.open_group(str(tmp_path / "v2.zarr"), mode="r").metadata.zarr_format == 2
    assert written.voxel_size == (30, 6, 5)
    assert "multiscales" in json.loads((tmp_path / "v2.zarr/vols/.zattrs").read_text())


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_ome_zarr_multiscales_calibration(tmp_path, volume, zarr_format):
    group = zarr.open_group(str(tmp_path / "ome.zarr"), mode="w", zarr_format=zarr_format)
    for name in ("s0", "s1"):
        group.create_array(name, shape=SHAPE, dtype="uint32")[:] = volume
    image = {
        "axes": [
            {"name": a, "type": "space", "unit": u}
            for a, u in zip("zyx", ["nanometer", "micrometer", "nanometer"], strict=True)
        ],
        "datasets": [
            {"path": "s0", "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 1]}]},
            {
                "path": "s1",
                "coordinateTransformations": [
                    {"type": "scale", "scale": [50, 0.008, 8]},
                    {"type": "translation", "translation": [25, 0.004, 4]},
                ],
            },
        ],
    }
    if zarr_format == 2:
        group.attrs["multiscales"] = [{"version": "0.4", **image}]
    else:
        group.attrs["ome"] = {"version": "0.5", "multiscales": [image]}
    vol = open_volume(tmp_path / "ome.zarr/s1")
    assert vol.voxel_size == pytest.approx((50, 8, 8))
    assert vol.offset == pytest.approx((25, 4, 4))
    assert open_volume(tmp_path / "ome.zarr/s0").voxel_size == pytest.approx((1, 1000, 1))


@pytest.mark.parametrize("spelling", ["{}:/g/raw", "{}/g/raw"])
def test_hdf5_written_by_h5py_both_spellings(tmp_path, volume, spelling):
    path = tmp_path / "data.hdf5"
    with h5py.File(path, "w") as h5file:
        dataset = h5file.create_dataset("g/raw", data=volume)  # contiguous
        dataset.attrs["resolution"] = [40, 4, 4]
        h5file.create_dataset("labels", data=volume[0])
    vol = open_volume(spelling.format(path))
    assert vol.uri == f"{path}:/g/raw"
    assert (vol.chunks, vol.voxel_size, vol.offset) == ((1, 17, 23), (40, 4, 4), (0, 0, 0))
    check_slicing(vol, volume)
    assert open_volume(f"{path}:/labels", ndim=(2, 3)).shape == SHAPE[1:]


def test_tiff_imagej_calibration_and_single_page(tmp_path, volume):
    stack = volume.astype(np.uint16)
    tifffile.imwrite(
        tmp_path / "ij.tif",
        stack,
        imagej=True,
        resolution=(1 / 4, 1 / 5),
        metadata={"spacing": 0.04, "unit": "micron", "axes": "ZYX"},
    )
    vol = open_volume(tmp_path / "ij.tif")
    assert vol.voxel_size == pytest.approx((40, 5000, 4000))
    check_slicing(vol, stack)
    tifffile.imwrite(tmp_path / "page.tiff", stack[3])
    page = open_volume(tmp_path / "page.tiff", ndim=2)
    assert (page.shape, page.chunks, page.voxel_size) == (SHAPE[1:], SHAPE[1:], (1.0, 1.0))
    np.testing.assert_array_equal(page[::-1, 2:5], stack[3, ::-1, 2:5])


# ---------------------------------------------------------------------------------- pickling
@pytest.mark.parametrize("uri", ["p.zarr/raw", "p.h5:/raw", "p.tif"])
def test_pickled_volume_reads_after_unpickle_and_fork(tmp_path, volume, uri):
    vol = write_volume(tmp_path / uri, volume, voxel_size=(40, 4, 4))
    _ = vol[0, 0, 0]  # open the handle before pickling
    clone = pickle.loads(pickle.dumps(vol))
    assert clone._handle is None and clone.meta == vol.meta
    np.testing.assert_array_equal(clone[1:3, 4], volume[1:3, 4])
    vol._pid = -1  # what a forked child sees: the handle belongs to another process
    np.testing.assert_array_equal(vol[4], volume[4])


# ------------------------------------------------------------------------------------ errors
def error_for(uri, **kwargs) -> str:
    with pytest.raises(MaskTwinsError) as info:
        open_volume(uri, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("name", ["nope.zarr", "nope.h5", "nope.tif"])
def test_missing_file(tmp_path, name):
    suffix = {"nope.zarr": "/raw", "nope.h5": ":/raw", "nope.tif": ""}[name]
    message = error_for(f"{tmp_path / name}{suffix}")
    assert str(tmp_path / name) in message and "not found" in message


def test_missing_datasets_list_what_is_there(tmp_path, volume):
    write_volume(tmp_path / "c.zarr/a/raw", volume, voxel_size=(1, 1, 1))
    write_volume(tmp_path / "c.zarr/labels", volume, voxel_size=(1, 1, 1))
    message = error_for(tmp_path / "c.zarr/rwa")
    assert "c.zarr" in message and "a/raw" in message and "labels" in message
    write_volume(tmp_path / "f.h5:/g/raw", volume, voxel_size=(1, 1, 1))
    message = error_for(f"{tmp_path}/f.h5:/raw")
    assert "f.h5" in message and "g/raw" in message


def test_group_uris_are_errors_unless_the_group_is_one_ome_image(tmp_path, volume):
    write_volume(tmp_path / "c.zarr/g/raw", volume, voxel_size=(1, 1, 1))
    write_volume(tmp_path / "c.zarr/g/other", volume, voxel_size=(1, 1, 1))
    write_volume(tmp_path / "f.h5:/g/raw", volume, voxel_size=(1, 1, 1))
    for uri in [f"{tmp_path}/c.zarr/g", f"{tmp_path}/c.zarr", f"{tmp_path}/f.h5:/g"]:
        message = error_for(uri)
        assert "group" in message and uri.split(":")[0] in message and "raw" in message
    write_volume(tmp_path / "one.zarr/image/raw", volume, voxel_size=(1, 1, 1))
    opened = open_volume(f"{tmp_path}/one.zarr/image")  # an OME image group: its one array
    assert opened.uri.endswith("one.zarr/image/raw") and opened.shape == volume.shape


def test_corrupt_files(tmp_path, volume):
    (tmp_path / "bad.h5").write_bytes(b"garbage" * 100)
    assert "bad.h5" in error_for(f"{tmp_path}/bad.h5:/raw")
    write_volume(tmp_path / "c.zarr/raw", volume, voxel_size=(1, 1, 1))
    (tmp_path / "c.zarr/raw/zarr.json").write_text("{not json")
    assert "c.zarr/raw" in error_for(tmp_path / "c.zarr/raw")
    write_volume(tmp_path / "v.tif", volume, voxel_size=(1, 1, 1))
    data = (tmp_path / "v.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) // 2])
    assert "cut.tif" in error_for(tmp_path / "cut.tif")
    (tmp_path / "junk.tif").write_bytes(b"not a tiff at all")
    assert "junk.tif" in error_for(tmp_path / "junk.tif")


def test_wrong_dimensionality(tmp_path, volume):
    write_volume(tmp_path / "two.zarr/raw", volume[0], voxel_size=(4, 4))
    message = error_for(tmp_path / "two.zarr/raw", ndim=3)
    assert "expected a 3-D (z,y,x) volume, got shape (17, 23)" in message and "two.zarr" in message


def test_read_all_guard(tmp_path, volume):
    vol = write_volume(tmp_path / "c.zarr/raw", volume, voxel_size=(1, 1, 1))
    with pytest.raises(MaskTwinsError, match="c.zarr/raw"):
        vol.read_all(max_bytes=volume.nbytes - 1)
    np.testing.assert_array_equal(vol.read_all(max_bytes=volume.nbytes), volume)
    with pytest.raises(IndexError):
        vol.read((slice(0, 6),))


# ----------------------------------------------------------------------------------- atomicity
@pytest.mark.parametrize("uri", ["c.zarr/raw", "f.h5:/raw", "s.tif"])
def test_existing_target_is_untouched_without_overwrite(tmp_path, volume, uri):
    write_volume(tmp_path / uri, volume, voxel_size=(1, 1, 1))
    with pytest.raises(MaskTwinsError, match="already exists"):
        write_volume(tmp_path / uri, volume + 1, voxel_size=(1, 1, 1))
    np.testing.assert_array_equal(open_volume(tmp_path / uri).read_all(), volume)


def failing_after_first_call(original):
    calls = []

    def setitem(self, key, value):
        calls.append(key)
        if len(calls) > 1:
            raise OSError("disk full (simulated)")
        return original(self, key, value)

    return setitem


@pytest.mark.parametrize(
    ("uri", "cls"), [("c.zarr/g/raw", zarr.Array), ("f.h5:/raw", h5py.Dataset)]
)
def test_interrupted_write_leaves_no_partial_dataset(tmp_path, volume, monkeypatch, uri, cls):
    monkeypatch.setattr(cls, "__setitem__", failing_after_first_call(cls.__setitem__))
    with pytest.raises(MaskTwinsError, match="simulated"):
        write_volume(tmp_path / uri, volume, voxel_size=(1, 1, 1), chunks=(2, 17, 23))
    with pytest.raises(MaskTwinsError):
        open_volume(tmp_path / uri)
    monkeypatch.undo()
    write_volume(tmp_path / uri, volume, voxel_size=(1, 1, 1))
    monkeypatch.setattr(cls, "__setitem__", failing_after_first_call(cls.__setitem__))
    with pytest.raises(MaskTwinsError, match="simulated"):
        write_volume(
            tmp_path / uri, volume * 2, voxel_size=(1, 1, 1), chunks=(2, 17, 23), overwrite=True
        )
    monkeypatch.undo()
    np.testing.assert_array_equal(open_volume(tmp_path / uri).read_all(), volume)
    leftovers = [p.name for p in tmp_path.rglob("*") if ".tmp-" in p.name or ".old-" in p.name]
    assert leftovers == []


def test_overwrite_replaces_after_completion(tmp_path, volume):
    for uri in ["c.zarr/raw", "f.h5:/raw", "s.tif"]:
        write_volume(tmp_path / uri, volume, voxel_size=(1, 1, 1))
        vol = write_volume(tmp_path / uri, volume[:, :3], voxel_size=(2, 2, 2), overwrite=True)
        np.testing.assert_array_equal(vol.read_all(), volume[:, :3])
    with h5py.File(tmp_path / "f.h5", "a") as h5file:
        h5file["keep"] = [1, 2, 3]
    write_volume(f"{tmp_path}/f.h5:/raw", volume, voxel_size=(1, 1, 1), overwrite=True)
    np.testing.assert_array_equal(open_volume(f"{tmp_path}/f.h5:/keep")[:], [1, 2, 3])


# ------------------------------------------------------------------------------- create_volume
def test_create_volume_blockwise_reopen_and_mismatch(tmp_path, volume):
    uri = tmp_path / "out.zarr/pred"
    vol = create_volume(uri, SHAPE, np.uint32, chunks=(2, 8, 8), voxel_size=(40, 4, 4))
    assert isinstance(vol, WritableVolume)
    vol.write((slice(0, 2),), volume[:2])
    resumed = create_volume(uri, SHAPE, "uint32", chunks=(2, 8, 8), voxel_size=(40, 4, 4))
    np.testing.assert_array_equal(resumed[:2], volume[:2])  # reopened, not cleared
    resumed[2:, 1:] = volume[2:, 1:]
    expected = volume.copy()
    expected[2:, 0] = 0  # never written: fill value
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(resumed)).read_all(), expected)
    with pytest.raises(MaskTwinsError) as info:
        create_volume(uri, (5, 17, 24), np.float32, chunks=(2, 8, 8), voxel_size=(40, 4, 4))
    message = str(info.value)
    for text in ["out.zarr/pred", "(5, 17, 23)", "uint32", "(5, 17, 24)", "float32"]:
        assert text in message
    fresh = create_volume(uri, (3, 4), np.float32, (2, 2), (4, 4), overwrite=True)
    assert fresh.shape == (3, 4) and fresh.read_all().sum() == 0
    with pytest.raises(MaskTwinsError, match="zarr"):
        create_volume(tmp_path / "x.h5:/raw", SHAPE, np.uint8, (1, 8, 8), (1, 1, 1))
    with pytest.raises(TypeError):
        fresh.write((slice(0, 1), slice(0, 1)), np.ones((1, 1), np.complex64))


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_a_missing_chunk_of_a_volume_written_whole_is_an_error(tmp_path, zarr_format):
    from masktwins_cli.io.volumes import EVERY_CHUNK_ATTR

    data = np.zeros((4, 16, 16), np.uint8)  # all fill value: every chunk must still be stored
    data[0, 0, 0] = 7
    uri = f"{tmp_path}/v.zarr/raw"
    zarr.open_group(f"{tmp_path}/v.zarr", mode="w", zarr_format=zarr_format)
    write_volume(uri, data, (1.0, 1.0, 1.0), chunks=(2, 8, 8))
    volume = open_volume(uri)
    assert np.array_equal(volume[...], data)
    array = zarr.open_array(f"{tmp_path}/v.zarr", path="raw", mode="r")
    assert array.attrs[EVERY_CHUNK_ATTR] is True
    key = array.metadata.encode_chunk_key((1, 1, 0))
    (tmp_path / "v.zarr" / "raw" / key).unlink()
    reopened = open_volume(uri)
    assert np.array_equal(reopened[0:2], data[0:2])  # the chunks that are there still read
    with pytest.raises(MaskTwinsError, match=f"chunk {key} is missing"):
        reopened[...]
    with pytest.raises(MaskTwinsError, match="missing"):
        reopened[3, 9:12, 0:4]


def test_a_foreign_zarr_array_may_skip_fill_value_chunks(tmp_path):
    array = zarr.create_array(str(tmp_path / "f.zarr"), shape=(2, 8, 8), chunks=(1, 4, 4),
                              dtype="uint8", fill_value=0, zarr_format=3)
    array[0] = 5  # chunks of slice 1 are never written: they equal the fill value
    assert np.array_equal(open_volume(f"{tmp_path}/f.zarr")[1], np.zeros((8, 8), np.uint8))
