"""``masktwins prepare stack`` and the presets (vnc3, cdeep3m, lucchi, mitoem) on tiny files.

Raw values encode their coordinates (``(z*7 + y*3 + x) % 251``) and stacks are 12 x 10 in (y, x),
so a wrong slice order or swapped axes shows up as a value mismatch.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
import zarr
from cli_helpers import assert_user_error, invoke, snapshot
from PIL import Image

from masktwins_cli.errors import MaskTwinsError
from masktwins_cli.io.volumes import open_volume, write_volume
from masktwins_cli.prepare.real import prepare_preset, prepare_stack
from masktwins_cli.prepare.stacks import natural_key, resample, resampled_shape

SHAPE = (3, 12, 10)
REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def coords(shape=SHAPE, scale: int = 1, offset: int = 0, dtype=np.uint8) -> np.ndarray:
    z, y, x = np.indices(shape)
    return (((z * 7 + y * 3 + x) % 251) * scale + offset).astype(dtype)


def classes(shape=SHAPE, values=(0, 1, 2)) -> np.ndarray:
    z, y, x = np.indices(shape)
    return np.asarray(values, np.uint8)[(z + y + 2 * x) % len(values)]


def save_png(path: Path, plane: np.ndarray, palette: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if palette:  # mode 'P': the stored values are palette indices; colours must not leak in
        img = Image.frombytes("P", plane.shape[::-1], np.ascontiguousarray(plane, np.uint8).tobytes())
        img.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [200] * (253 * 3))
    else:
        img = Image.fromarray(plane)
    img.save(path)
    return path


def save_slices(folder: Path, stack: np.ndarray, names=None, suffix=".png", **kwargs) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    names = names or [f"s{z}" for z in range(len(stack))]
    for name, plane in zip(names, stack):
        if suffix == ".png":
            save_png(folder / f"{name}.png", plane, **kwargs)
        else:
            tifffile.imwrite(folder / f"{name}{suffix}", plane)
    return folder


def read(uri) -> np.ndarray:
    return open_volume(str(uri))[...]


def voxel(uri) -> tuple:
    return tuple(round(v, 6) for v in open_volume(str(uri)).voxel_size)


# ------------------------------------------------------------------------------- round trips
def test_natural_sort_key():
    names = ["s10.png", "S2.png", "s1.png", "img2_b.tif", "img10_a.tif"]
    assert sorted(names, key=natural_key) == ["img2_b.tif", "img10_a.tif", "s1.png", "S2.png", "s10.png"]


def test_png_folder_natural_order_and_palette_labels(tmp_path):
    raw, labels = coords(), classes()
    order = [2, 0, 1]  # write s10 first, then s1, then s2
    for z in order:
        name = ["s1", "s2", "s10"][z]
        save_png(tmp_path / "im" / f"{name}.png", raw[z])
        save_png(tmp_path / "lab" / f"{name}.png", labels[z], palette=True)
    result = prepare_stack(tmp_path / "out.zarr", tmp_path / "im", tmp_path / "lab")
    np.testing.assert_array_equal(read(tmp_path / "out.zarr/raw"), raw)
    out_labels = read(tmp_path / "out.zarr/labels")
    assert out_labels.dtype == np.uint8
    np.testing.assert_array_equal(out_labels, labels)
    stack = result.stacks[0]
    assert voxel(tmp_path / "out.zarr/raw") == (1.0, 1.0, 1.0) and stack.voxel_from == "unknown"
    assert "voxel size" in stack.notes[0] and "--voxel-size" in stack.notes[0]
    assert stack.foreground == pytest.approx(np.count_nonzero(labels) / labels.size)
    assert open_volume(str(tmp_path / "out.zarr/raw")).chunks == (1, 12, 10)


def test_tiff_slices_glob_and_voxel_size_option(tmp_path):
    raw = coords()
    save_slices(tmp_path / "raw", raw, suffix=".tif")
    save_slices(tmp_path / "raw", raw[:1] * 0, names=["ignored"], suffix=".png")  # not matched
    save_slices(tmp_path / "lab", classes(values=(0, 191, 223)))
    prepare_stack(tmp_path / "o.zarr", f"{tmp_path}/raw/*.tif", tmp_path / "lab",
                  label_map=((191, 1), (223, 2)), voxel_size=(50, 4.6, 4.6))
    np.testing.assert_array_equal(read(tmp_path / "o.zarr/raw"), raw)
    np.testing.assert_array_equal(read(tmp_path / "o.zarr/labels"), classes())
    assert voxel(tmp_path / "o.zarr/labels") == (50.0, 4.6, 4.6)
    attrs = zarr.open_group(str(tmp_path / "o.zarr"), mode="r").attrs.asdict()
    paths = [d["path"] for image in attrs["ome"]["multiscales"] for d in image["datasets"]]
    assert paths == ["raw"]  # the image; the labels are an OME-Zarr label image of it:
    labels = zarr.open_group(str(tmp_path / "o.zarr"), path="labels", mode="r").attrs.asdict()
    assert labels["ome"]["labels"] == ["classes"]
    assert open_volume(str(tmp_path / "o.zarr/labels")).uri.endswith("o.zarr/labels/classes/0")
    assert attrs["masktwins_prepare"]["label_decoding"] == "191->1, 223->2, others 0"


def test_16bit_png_and_label_value(tmp_path):
    raw = coords(scale=300, offset=1000, dtype=np.uint16)
    save_slices(tmp_path / "raw", raw)
    save_slices(tmp_path / "lab", classes(values=(0, 191, 255)))
    prepare_stack(tmp_path / "o.zarr", tmp_path / "raw", tmp_path / "lab", label_value=191)
    out = read(tmp_path / "o.zarr/raw")
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, raw)
    np.testing.assert_array_equal(read(tmp_path / "o.zarr/labels"), classes() == 1)


def test_multipage_tiff_with_metadata(tmp_path):
    raw, labels = coords(), classes()
    write_volume(tmp_path / "raw.tif", raw, (40.0, 4.0, 4.0))
    tifffile.imwrite(tmp_path / "labels.tif", labels, photometric="minisblack")
    result = prepare_stack(tmp_path / "o.zarr", tmp_path / "raw.tif", tmp_path / "labels.tif")
    np.testing.assert_array_equal(read(tmp_path / "o.zarr/raw"), raw)
    np.testing.assert_array_equal(read(tmp_path / "o.zarr/labels"), labels)
    assert voxel(tmp_path / "o.zarr/raw") == (40.0, 4.0, 4.0)
    assert result.stacks[0].voxel_from == "source metadata" and not result.stacks[0].notes


def test_hdf5_and_zarr_sources(tmp_path):
    raw, labels = coords(), classes()
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f.create_dataset("volumes/raw", data=raw).attrs["resolution"] = [30, 8, 8]
        f.create_dataset("volumes/labels", data=labels.astype(np.uint64))
    prepare_stack(tmp_path / "h.zarr", f"{tmp_path}/d.h5:/volumes/raw", f"{tmp_path}/d.h5:/volumes/labels")
    np.testing.assert_array_equal(read(tmp_path / "h.zarr/raw"), raw)
    np.testing.assert_array_equal(read(tmp_path / "h.zarr/labels"), labels)
    assert voxel(tmp_path / "h.zarr/raw") == (30.0, 8.0, 8.0)
    write_volume(tmp_path / "src.zarr/raw", raw, (20.0, 6.0, 6.0))
    write_volume(tmp_path / "src.zarr/seg", labels.astype(np.int32) * 100, (20.0, 6.0, 6.0))
    prepare_stack(tmp_path / "z.zarr", tmp_path / "src.zarr/raw", tmp_path / "src.zarr/seg",
                  label_map=((100, 1), (200, 1)))
    np.testing.assert_array_equal(read(tmp_path / "z.zarr/raw"), raw)
    np.testing.assert_array_equal(read(tmp_path / "z.zarr/labels"), labels > 0)
    assert voxel(tmp_path / "z.zarr/labels") == (20.0, 6.0, 6.0)


def test_grey_rgb_png_is_accepted(tmp_path):
    raw = coords()
    save_slices(tmp_path / "raw", np.repeat(raw[..., None], 3, axis=-1))
    prepare_stack(tmp_path / "o.zarr", tmp_path / "raw")
    np.testing.assert_array_equal(read(tmp_path / "o.zarr/raw"), raw)
    assert not (tmp_path / "o.zarr/labels").exists()


def test_resampling_shapes_and_nearest_labels(tmp_path):
    raw, labels = coords((4, 12, 10)), classes((4, 12, 10), values=(0, 3, 7))
    write_volume(tmp_path / "src.zarr/raw", raw, (40.0, 4.0, 4.0))
    write_volume(tmp_path / "src.zarr/labels", labels, (40.0, 4.0, 4.0))
    result = prepare_stack(tmp_path / "o.zarr", tmp_path / "src.zarr/raw", tmp_path / "src.zarr/labels",
                           label_map=((3, 1), (7, 2)), resample_to=(20, 8, 5))
    expected = resampled_shape((4, 12, 10), (40, 4, 4), (20, 8, 5))
    assert expected == (8, 6, 8) and result.stacks[0].shape == expected
    out_raw, out_labels = read(tmp_path / "o.zarr/raw"), read(tmp_path / "o.zarr/labels")
    assert out_raw.shape == out_labels.shape == expected and out_raw.dtype == np.uint8
    assert set(np.unique(out_labels)) <= {0, 1, 2}
    assert voxel(tmp_path / "o.zarr/raw") == (20.0, 8.0, 5.0)
    block = np.arange(12, dtype=np.uint8).reshape(1, 3, 4)
    np.testing.assert_array_equal(resample(block, (1, 6, 8), order=0), block.repeat(2, 1).repeat(2, 2))
    flat = np.full((3, 9, 7), 100, np.uint8)
    assert np.all(resample(flat, (5, 4, 3), order=1) == 100)


# ------------------------------------------------------------------------------------ errors
def _error(tmp_path, *texts, **kwargs):
    before = snapshot(tmp_path)
    with pytest.raises(MaskTwinsError) as err:
        prepare_stack(tmp_path / "out.zarr", **kwargs)
    message = str(err.value)
    assert "\n" not in message
    for text in texts:
        assert str(text) in message, message
    assert snapshot(tmp_path) == before  # nothing written
    return message


def test_errors_empty_inputs(tmp_path):
    (tmp_path / "empty").mkdir()
    _error(tmp_path, "no files match", images=f"{tmp_path}/empty/*.png")
    _error(tmp_path, "empty", "no TIFF or PNG slices", images=tmp_path / "empty")
    _error(tmp_path, "nothing", "no such file", images=tmp_path / "nothing")


def test_errors_counts_and_shapes(tmp_path):
    save_slices(tmp_path / "raw", coords())
    save_slices(tmp_path / "lab2", classes()[:2])
    _error(tmp_path, "3 images", "2 labels", tmp_path / "raw", tmp_path / "lab2",
           images=tmp_path / "raw", labels=tmp_path / "lab2")
    save_slices(tmp_path / "small", classes((3, 6, 10)))
    _error(tmp_path, "12x10", "6x10", images=tmp_path / "raw", labels=tmp_path / "small")
    save_slices(tmp_path / "mixed", coords())
    save_png(tmp_path / "mixed" / "s1.png", np.zeros((12, 9), np.uint8))
    _error(tmp_path, "mixed/s1.png", "12x9", "12x10", "mixed/s0.png", images=tmp_path / "mixed")


def test_errors_unreadable_and_colour_images(tmp_path):
    save_slices(tmp_path / "raw", coords())
    (tmp_path / "raw" / "s1.png").write_bytes(b"not a png at all")
    _error(tmp_path, "s1.png", "cannot read image file", images=tmp_path / "raw")
    good = (tmp_path / "raw" / "s0.png").read_bytes()
    (tmp_path / "raw" / "s1.png").write_bytes(good[: len(good) - 40])  # header fine, data truncated
    _error(tmp_path, "s1.png", images=tmp_path / "raw")
    colour = np.zeros((2, 12, 10, 3), np.uint8)
    colour[..., 0] = 200
    save_slices(tmp_path / "rgb", colour)
    _error(tmp_path, "rgb/s0.png", "colour", images=tmp_path / "rgb")


def test_errors_labels_and_options(tmp_path):
    save_slices(tmp_path / "raw", coords())
    save_slices(tmp_path / "lab", classes(values=(0, 191, 223)))
    _error(tmp_path, "hold values 191, 223,", "--label-value", "--label-map", "lab/s0.png",
           images=tmp_path / "raw", labels=tmp_path / "lab")
    _error(tmp_path, "not both", images=tmp_path / "raw", labels=tmp_path / "lab", label_value=1,
           label_map=((1, 1),))
    _error(tmp_path, "--voxel-size", images=tmp_path / "raw", voxel_size=(50, 4))
    _error(tmp_path, "--resample-to", "--voxel-size", images=tmp_path / "raw", resample_to=(1, 2, 2))


def test_existing_output_and_overwrite(tmp_path):
    save_slices(tmp_path / "raw", coords())
    save_slices(tmp_path / "lab", classes())
    prepare_stack(tmp_path / "out.zarr", tmp_path / "raw", tmp_path / "lab")
    _error(tmp_path, "out.zarr", "--overwrite", images=tmp_path / "raw")
    # overwrite with raw only: the old labels must not survive next to the new raw
    prepare_stack(tmp_path / "out.zarr", tmp_path / "raw", overwrite=True, voxel_size=(1, 2, 2))
    assert not (tmp_path / "out.zarr" / "labels").exists()
    assert voxel(tmp_path / "out.zarr/raw") == (1.0, 2.0, 2.0)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("images, labels", [("{out}/raw", "{out}/labels"), ("{out}/raw", None),
                                             ("{out}", None)])
def test_an_output_that_is_its_own_input_is_refused_before_anything_is_deleted(tmp_path, images,
                                                                               labels):
    save_slices(tmp_path / "raw", coords())
    save_slices(tmp_path / "lab", classes())
    out = tmp_path / "x.zarr"
    prepare_stack(out, tmp_path / "raw", tmp_path / "lab")
    before = snapshot(tmp_path)
    kwargs = {"images": images.format(out=out)}
    if labels:
        kwargs["labels"] = labels.format(out=out)
    with pytest.raises(MaskTwinsError, match="inside the output"):
        prepare_stack(out, overwrite=True, **kwargs)
    assert snapshot(tmp_path) == before
    assert (out / "labels").exists()


# --------------------------------------------------------------------------------------- CLI
def test_cli_stack(tmp_path):
    save_slices(tmp_path / "raw", coords())
    save_slices(tmp_path / "lab", classes(values=(0, 191, 223)))
    out = tmp_path / "cli.zarr"
    result = invoke("prepare", "stack", out, "--images", tmp_path / "raw", "--labels", tmp_path / "lab",
                    "--label-value", 223, "--voxel-size", "50,4.6,4.6")
    assert result.exit_code == 0, result.output
    assert "3x12x10 uint8" in result.stdout and "50x4.6x4.6" in result.stdout
    np.testing.assert_array_equal(read(out / "labels"), classes() == 2)
    assert_user_error(invoke("prepare", "stack", out, "--images", tmp_path / "raw"), out, "--overwrite")
    assert_user_error(invoke("prepare", "stack", tmp_path / "x.zarr", "--images", tmp_path / "raw",
                             "--labels", tmp_path / "lab"), "191", "--label-value")
    assert_user_error(invoke("prepare", "vnc3", tmp_path / "nowhere", tmp_path / "v.zarr"), "nowhere")


# ------------------------------------------------------------------------------------ presets
def test_preset_vnc3(tmp_path):
    root, merged = tmp_path / "vnc3", classes(values=(0, 32, 191, 223, 255))
    save_slices(root / "stack1" / "raw", coords(), names=["00", "01", "02"], suffix=".tif")
    save_slices(root / "stack1" / "labels", merged, names=[f"labels{z:08d}" for z in range(3)])
    save_slices(root / "stack2" / "raw", coords(offset=1), names=["00", "01", "02"], suffix=".tif")
    result = invoke("prepare", "vnc3", root, tmp_path / "v.zarr")
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(read(tmp_path / "v.zarr/raw"), coords())
    np.testing.assert_array_equal(read(tmp_path / "v.zarr/labels"), merged == 191)
    assert voxel(tmp_path / "v.zarr/labels") == (50.0, 4.6, 4.6)
    prepare_preset("vnc3", root, tmp_path / "v2.zarr", stack="stack2")
    np.testing.assert_array_equal(read(tmp_path / "v2.zarr/raw"), coords(offset=1))
    assert not (tmp_path / "v2.zarr" / "labels").exists()


def _cdeep3m_tree(root: Path) -> None:
    for split, depth, first in (("training", 3, 10), ("validation", 2, 30)):
        numbers = range(first, first + depth)
        save_slices(root / split / "images", coords((depth, 12, 10)), [f"images.{z:03d}" for z in numbers])
        save_slices(root / split / "labels", classes((depth, 12, 10), (0, 1)),
                    [f"mitos_3D.{z:03d}" for z in numbers], palette=True)
    save_slices(root / "testset", coords((2, 12, 10)), ["images.081", "images.082"])


def test_preset_cdeep3m(tmp_path):
    root, out = tmp_path / "cdeep3m", tmp_path / "out"
    _cdeep3m_tree(root)
    result = prepare_preset("cdeep3m", root, out, voxel_size=(30, 10, 10))
    assert [s.out.name for s in result.stacks] == ["training.zarr", "validation.zarr", "testset.zarr"]
    np.testing.assert_array_equal(read(out / "training.zarr/raw"), coords())
    np.testing.assert_array_equal(read(out / "validation.zarr/labels"), classes((2, 12, 10), (0, 1)))
    assert not (out / "testset.zarr" / "labels").exists()
    assert voxel(out / "testset.zarr/raw") == (30.0, 10.0, 10.0)


def test_preset_failure_leaves_nothing(tmp_path):
    root, out = tmp_path / "cdeep3m", tmp_path / "out"
    _cdeep3m_tree(root)
    (root / "validation" / "labels" / "mitos_3D.031.png").unlink()
    with pytest.raises(MaskTwinsError, match="2 images .* 1 labels"):
        prepare_preset("cdeep3m", root, out)
    assert not out.exists()
    save_png(root / "validation" / "labels" / "mitos_3D.031.png", np.zeros((12, 10), np.uint8))
    good = (root / "testset" / "images.082.png").read_bytes()
    (root / "testset" / "images.082.png").write_bytes(good[:-40])  # found only when pixels are read
    with pytest.raises(MaskTwinsError, match="images.082.png"):
        prepare_preset("cdeep3m", root, out)
    assert not out.exists()  # training and validation were staged, then removed


def test_preset_lucchi_variants(tmp_path):
    mask = classes(values=(0, 255))
    root = tmp_path / "epfl"
    for split, offset in (("training", 0), ("testing", 5)):
        root.mkdir(exist_ok=True)
        tifffile.imwrite(root / f"{split}.tif", coords(offset=offset), photometric="minisblack")
        tifffile.imwrite(root / f"{split}_groundtruth.tif", mask, photometric="minisblack")
    prepare_preset("lucchi", root, tmp_path / "a")
    np.testing.assert_array_equal(read(tmp_path / "a/testing.zarr/raw"), coords(offset=5))
    np.testing.assert_array_equal(read(tmp_path / "a/training.zarr/labels"), mask == 255)
    assert voxel(tmp_path / "a/training.zarr/raw") == (5.0, 5.0, 5.0)
    plus, deep = tmp_path / "Lucchi++", (11, 6, 5)  # 11 slices: 10.png must come after 9.png
    rgba = np.zeros((*deep, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[..., :3] = classes(deep, (0, 255))[..., None]
    for split in ("Train", "Test"):
        save_slices(plus / f"{split}_In", coords(deep), [f"mask{z:04d}" for z in range(11)])
        save_slices(plus / f"{split}_Out", rgba, [str(z) for z in range(11)])
    prepare_preset("lucchi", plus, tmp_path / "b")
    np.testing.assert_array_equal(read(tmp_path / "b/training.zarr/raw"), coords(deep))
    np.testing.assert_array_equal(read(tmp_path / "b/testing.zarr/labels"), classes(deep, (0, 1)))
    (root / "testing_groundtruth.tif").unlink()
    with pytest.raises(MaskTwinsError, match="testing_groundtruth.tif"):
        prepare_preset("lucchi", root, tmp_path / "c")


def test_preset_mitoem_layouts(tmp_path):
    root, raw = tmp_path / "MitoEM-R", coords((6, 12, 10))
    ids = (classes((6, 12, 10), (0, 0, 3)).astype(np.uint16) * 1000 + np.arange(6)[:, None, None]) * (
        classes((6, 12, 10), (0, 0, 1)) > 0)
    save_slices(root / "im", raw, [f"im{z:04d}" for z in range(6)])
    save_slices(root / "mito_train", ids[:3], [f"seg{z:04d}" for z in range(3)], suffix=".tif")
    save_slices(root / "mito-val-v2", ids[3:5], [f"seg{z:04d}" for z in range(3, 5)], suffix=".tif")
    result = invoke("prepare", "mitoem", root, tmp_path / "out", "--tissue", "rat")
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(read(tmp_path / "out/rat_train.zarr/raw"), raw[:3])
    np.testing.assert_array_equal(read(tmp_path / "out/rat_val.zarr/raw"), raw[3:5])
    np.testing.assert_array_equal(read(tmp_path / "out/rat_val.zarr/labels"), ids[3:5] > 0)
    assert voxel(tmp_path / "out/rat_train.zarr/raw") == (30.0, 8.0, 8.0)
    split = tmp_path / "split"
    for name, part in (("train", slice(0, 3)), ("val", slice(3, 5))):
        save_slices(split / name / "im", raw[part], [f"im{z}" for z in range(3)])
        save_slices(split / name / "mito", ids[part], [f"seg{z}" for z in range(3)], suffix=".tif")
    prepare_preset("mitoem", split, tmp_path / "out", tissue="human")
    np.testing.assert_array_equal(read(tmp_path / "out/human_train.zarr/labels"), ids[:3] > 0)
    (root / "im" / "im0004.png").unlink()
    with pytest.raises(MaskTwinsError, match="seg0004.tif has no image slice im0004.png"):
        prepare_preset("mitoem", root, tmp_path / "o2", tissue="rat")
    assert_user_error(invoke("prepare", "mitoem", root, tmp_path / "o3", "--tissue", "mouse"), "mouse")


# --------------------------------------------------------------------------------- real data
@pytest.mark.realdata
@pytest.mark.skipif(not REAL_DATA.is_dir(), reason=f"real EM data not present at {REAL_DATA}")
def test_real_cdeep3m_and_vnc3(tmp_path):
    cdeep = prepare_preset("cdeep3m", REAL_DATA / "cdeep3m", tmp_path / "cd")
    training = cdeep.stacks[0]
    assert training.shape == (20, 1024, 1024) and training.dtype == "uint8"
    assert 0.06 < training.foreground < 0.11
    assert set(np.unique(read(tmp_path / "cd/validation.zarr/labels"))) == {0, 1}
    assert cdeep.stacks[2].shape == (5, 1024, 1024) and cdeep.stacks[2].labels is None
    vnc = prepare_preset("vnc3", REAL_DATA / "vnc3", tmp_path / "vnc3.zarr").stacks[0]
    assert vnc.shape == (20, 1024, 1024) and vnc.voxel_size == (50.0, 4.6, 4.6)
    assert vnc.foreground == pytest.approx(0.054, abs=0.005)
