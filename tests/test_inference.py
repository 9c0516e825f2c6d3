"""Blockwise inference: blocks agree with one whole-volume pass; every input format works."""

import numpy as np
import pytest
import zarr

from masktwins_cli.config.recipe import load_recipe
from masktwins_cli.errors import MaskTwinsError
from masktwins_cli.inference.blocks import BlockPlan, block_starts
from masktwins_cli.inference.predict import infer_volume
from masktwins_cli.io.checkpoints import load_checkpoint, save_checkpoint
from masktwins_cli.io.volumes import open_volume, write_volume
from masktwins_cli.training.run import train
from tiny_data import blob_volume, write_pair, write_recipe


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("infer")
    data = write_pair(root / "data", shape=(6, 64, 64))
    recipe = load_recipe(write_recipe(root / "r.toml", data, root / "run",
                                      train={"iterations": 3}, method={"adapt": False}))
    return root, train(recipe).last_checkpoint


def test_block_grid_and_the_windows_a_block_reads():
    assert list(block_starts((5, 10), (2, 4))) == [(0, 0), (0, 4), (0, 8), (2, 0), (2, 4),
                                                   (2, 8), (4, 0), (4, 4), (4, 8)]
    # 2-D model, windows 16 x 16 with stride 12 (overlap 0.25) over y = 40: starts 0, 12, 24
    plan = BlockPlan.create((3, 40, 40), (1, 20, 20), (16, 16), 0.25, 2, (1, 20, 20))
    assert plan.window == (1, 16, 16) and plan.stride == (1, 12, 12) and plan.count == 12
    work = plan.work(plan.count - 1)  # block z 2, y 20-40, x 20-40
    assert work.box == (slice(2, 3), slice(20, 40), slice(20, 40))
    assert work.read == (slice(2, 3), slice(12, 40), slice(12, 40))  # windows at 12 and 24
    assert work.pad == ((0, 0), (0, 0), (0, 0))
    assert work.starts == ((0,), (0, 12), (0, 12))
    assert work.inner == (slice(0, 1), slice(8, 28), slice(8, 28))
    # 3-D model on an axis shorter than the window: one window, reflection-padded on both sides
    small = BlockPlan.create((5, 64, 64), (8, 64, 64), (8, 32, 32), 0.25, 3)
    work = small.work(0)
    assert work.read[0] == slice(0, 5) and work.pad[0] == (1, 2) and work.starts[0] == (0,)
    assert work.inner[0] == slice(1, 6)


def test_z_blocks_of_a_2d_model_equal_one_pass(trained):
    root, ckpt = trained
    raw = str(root / "data" / "target.zarr" / "raw")
    whole = infer_volume(ckpt, raw, str(root / "whole.zarr"),
                         overrides=["infer.block_size=[6,64,64]"])
    blocks = infer_volume(ckpt, raw, str(root / "blocks.zarr"),
                          overrides=["infer.block_size=[1,64,64]"])
    assert whole.blocks == 1 and blocks.blocks == 6
    a = open_volume(whole.output).read_all()
    b = open_volume(blocks.output).read_all()
    np.testing.assert_allclose(a, b, atol=1e-6)  # 2-D slices are independent


def test_yx_blocks_equal_one_pass_whatever_the_block_size(trained):
    root, ckpt = trained
    raw = str(root / "data" / "target.zarr" / "raw")
    whole = open_volume(infer_volume(ckpt, raw, str(root / "w2.zarr"),
                                     overrides=["infer.block_size=[6,64,64]"]).output).read_all()
    for size in (16, 24):
        tiled = infer_volume(ckpt, raw, str(root / f"t{size}.zarr"),
                             overrides=[f"infer.block_size=[6,{size},{size}]"])
        assert tiled.blocks == (64 // size + (64 % size > 0)) ** 2
        # every block blends the global grid's windows: only float summation order differs
        np.testing.assert_allclose(open_volume(tiled.output).read_all(), whole, atol=1e-6)


@pytest.mark.parametrize("uri", ["vol.h5:/raw", "vol.tif", "vol.zarr/raw"])
def test_input_formats_and_voxel_size_carried(trained, tmp_path, uri):
    _, ckpt = trained
    raw, _ = blob_volume((3, 32, 32), seed=5)
    source = str(tmp_path / uri)
    write_volume(source, raw, (30.0, 6.0, 6.0))
    out = infer_volume(ckpt, source, str(tmp_path / "pred.zarr" / "fg"))
    prob = open_volume(out.output)
    assert prob.shape == (3, 32, 32)
    assert prob.voxel_size == pytest.approx((30.0, 6.0, 6.0))
    assert prob.chunks[0] == 1  # a 2-D model's output is chunked by slice
    attrs = zarr.open_array(str(tmp_path / "pred.zarr"), path="fg", mode="r").attrs["masktwins"]
    assert attrs["input"] == source and attrs["recipe"]["model"]["spatial_dims"] == 2
    assert "fg" in out.output and not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_2d_image_input(trained, tmp_path):
    _, ckpt = trained
    raw, _ = blob_volume((1, 48, 48), seed=6)
    write_volume(str(tmp_path / "img.zarr" / "raw"), raw[0], (6.0, 6.0))
    out = infer_volume(ckpt, str(tmp_path / "img.zarr" / "raw"), str(tmp_path / "p.zarr"))
    assert open_volume(out.output).shape == (48, 48)


def test_nan_inside_the_volume_is_a_user_error_and_leaves_no_output(trained, tmp_path):
    _, ckpt = trained
    raw, _ = blob_volume((3, 32, 32), seed=7)
    image = raw.astype(np.float32)
    image[1, 17, 9] = np.nan  # off the strided sample used for the statistics
    write_volume(str(tmp_path / "nan.zarr" / "raw"), image, (30.0, 6.0, 6.0))
    with pytest.raises(MaskTwinsError, match="NaN"):
        infer_volume(ckpt, str(tmp_path / "nan.zarr" / "raw"), str(tmp_path / "p.zarr"))
    assert not (tmp_path / "p.zarr").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["nan.zarr"]


def test_checkpoint_with_a_foreign_recipe_names_the_checkpoint(trained, tmp_path):
    _, ckpt = trained
    payload = load_checkpoint(ckpt)
    payload["recipe"]["model"]["width_multiplier"] = 2  # a key this version does not know
    bad = save_checkpoint(tmp_path / "future.pt", {k: v for k, v in payload.items()
                                                   if k not in ("format", "version")})
    with pytest.raises(MaskTwinsError, match="future.pt.*model.width_multiplier"):
        infer_volume(bad, "unused.zarr/raw", str(tmp_path / "p.zarr"))
