"""The infer engine: global-grid windows equal MONAI, flip TTA, the read/compute/write pipeline
and ROI masks."""

import threading

import numpy as np
import pytest
import torch
from cli_helpers import assert_user_error, invoke
from monai.inferers import sliding_window_inference

from masktwins_cli.config.recipe import load_recipe
from masktwins_cli.errors import MaskTwinsError
from masktwins_cli.inference.blocks import BlockPlan
from masktwins_cli.inference.pipeline import predict_blocks
from masktwins_cli.inference.predict import infer_volume
from masktwins_cli.io.volumes import open_volume, write_volume
from masktwins_cli.runtime.windows import flips_for, predict_block
from masktwins_cli.training.run import train
from tiny_data import write_pair, write_recipe


def small_net(spatial_dims: int) -> torch.nn.Module:
    torch.manual_seed(0)
    conv = torch.nn.Conv3d if spatial_dims == 3 else torch.nn.Conv2d
    return torch.nn.Sequential(conv(1, 2, 3, padding=1), torch.nn.Tanh(),
                               conv(2, 2, 3, padding=1)).eval()


@pytest.mark.parametrize("shape, dims, window", [
    ((20, 37, 41), 3, (8, 16, 16)),
    ((5, 7, 41), 3, (8, 16, 16)),   # z and y shorter than the window: reflection padding
    ((3, 50, 45), 2, (16, 16)),
    ((2, 10, 45), 2, (16, 16)),
])
def test_windows_equal_monai_sliding_window_inference(shape, dims, window):
    net = small_net(dims)
    volume = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    ours = predict_block(net, volume, dims, window, 0.25, 3, "gaussian", torch.device("cpu"))
    tensor = torch.from_numpy(volume)
    with torch.no_grad():
        reference = sliding_window_inference(
            tensor[None, None] if dims == 3 else tensor[:, None], window, 3,
            lambda x: torch.softmax(net(x), 1), overlap=0.25, mode="gaussian", sigma_scale=0.125,
            padding_mode="reflect")
    reference = reference[0] if dims == 3 else reference.permute(1, 0, 2, 3)
    np.testing.assert_allclose(ours, reference.numpy(), atol=1e-6)


def test_raw_voxels_of_any_byte_order_are_normalised_on_the_device():
    from masktwins_cli.runtime.windows import WindowSettings, predict_box

    net = small_net(2)
    raw = np.random.default_rng(2).integers(0, 4000, (2, 16, 16)).astype(">u2")
    settings = WindowSettings(2, (16, 16), 0.25, 2, "gaussian")
    inner = (slice(0, 2), slice(0, 16), slice(0, 16))
    positions = [(0, 0, 0), (1, 0, 0)]
    big = predict_box(net, raw, ((0, 0),) * 3, positions, inner, settings, torch.device("cpu"),
                      2000.0, 1000.0)
    floats = (raw.astype(np.float32) - 2000.0) / 1000.0
    expected = predict_block(net, floats, 2, (16, 16), 0.25, 2, "gaussian", torch.device("cpu"))
    np.testing.assert_allclose(big, expected, atol=1e-6)


@pytest.mark.parametrize("dims", [2, 3])
def test_flip_tta_is_the_mean_over_every_flip(dims):
    assert len(flips_for(dims, True)) == 2 ** dims and flips_for(dims, False) == [()]
    net = small_net(dims)
    shape = (4, 16, 16) if dims == 3 else (1, 16, 16)
    volume = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    window = shape if dims == 3 else shape[1:]  # one window: TTA is the only averaging
    plain = predict_block(net, volume, dims, window, 0.25, 2, "constant", torch.device("cpu"))
    tta = predict_block(net, volume, dims, window, 0.25, 2, "constant", torch.device("cpu"), tta=True)
    x = torch.from_numpy(volume)[None, None] if dims == 3 else torch.from_numpy(volume)[:, None]
    axes = list(range(2, 2 + dims))
    views = []
    with torch.no_grad():
        for mask in range(2 ** dims):
            flip = [a for i, a in enumerate(axes) if mask >> i & 1]
            probs = torch.softmax(net(torch.flip(x, flip)), 1)
            views.append(torch.flip(probs, flip))
    expected = torch.stack(views).mean(0)
    expected = expected[0] if dims == 3 else expected.permute(1, 0, 2, 3)
    np.testing.assert_allclose(tta, expected.numpy(), atol=1e-6)
    assert np.abs(tta - plain).max() > 1e-3  # the random network is not flip-invariant


class ArrayVolume:
    """An in-memory (z, y, x) volume with the read/write interface of ZyxView."""

    def __init__(self, data: np.ndarray, on_read=None):
        self.data, self.on_read = data, on_read

    def read(self, box):
        if self.on_read:
            self.on_read(box)
        return self.data[box].copy()

    def write(self, box, values):
        self.data[box] = values


def test_the_next_block_is_read_while_one_is_predicted():
    plan = BlockPlan.create((6, 8, 8), (1, 8, 8), (8, 8), 0.0, 2, (1, 8, 8))
    read_started = [threading.Event() for _ in range(plan.count)]
    source = ArrayVolume(np.arange(6 * 64, dtype=np.float32).reshape(6, 8, 8),
                         on_read=lambda box: read_started[box[0].start].set())
    sink = ArrayVolume(np.zeros((6, 8, 8), np.float32))
    overlapped, recorded = [], []

    def predict(raw, work, keep):
        following = work.index + 1
        if following < plan.count:  # the reader fetches the next block meanwhile
            overlapped.append(read_started[following].wait(timeout=10))
        return raw * 2

    counts = predict_blocks(predict, plan, source, sink, "mem", on_written=lambda i, box:
                            recorded.append(i))
    assert counts == (6, 0, 0) and all(overlapped) and recorded == list(range(6))
    np.testing.assert_array_equal(sink.data, source.data * 2)


def test_blocks_in_flight_stay_bounded_by_the_prefetch_depth():
    plan = BlockPlan.create((12, 4, 4), (1, 4, 4), (4, 4), 0.0, 2, (1, 4, 4))
    read, written, most = [], [], [0]
    lock = threading.Lock()

    def on_read(box):
        with lock:
            read.append(box[0].start)
            most[0] = max(most[0], len(read) - len(written))

    def on_written(index, box):
        with lock:
            written.append(index)

    source = ArrayVolume(np.ones((12, 4, 4), np.float32), on_read)
    sink = ArrayVolume(np.zeros((12, 4, 4), np.float32))
    predict_blocks(lambda raw, work, keep: raw, plan, source, sink, "mem", on_written=on_written,
                   prefetch=2)
    # at most 2 read ahead + 1 predicting + 2 waiting for the writer
    assert written == list(range(12)) and most[0] <= 5


def test_a_bad_block_stops_the_pipeline_after_recording_the_blocks_handed_over():
    plan = BlockPlan.create((6, 4, 4), (1, 4, 4), (4, 4), 0.0, 2, (1, 4, 4))
    data = np.ones((6, 4, 4), np.float32)
    data[4, 1, 1] = np.nan
    recorded = []
    sink = ArrayVolume(np.zeros_like(data))
    message = r"mem: NaN or infinite values in the block at voxel \(4, 0, 0\)"
    with pytest.raises(MaskTwinsError, match=message):
        predict_blocks(lambda raw, work, keep: raw, plan, ArrayVolume(data), sink, "mem",
                       on_written=lambda i, box: recorded.append(i))
    assert recorded == [0, 1, 2, 3]


def test_a_failing_writer_is_raised_in_the_caller():
    plan = BlockPlan.create((4, 4, 4), (1, 4, 4), (4, 4), 0.0, 2, (1, 4, 4))

    def broken(index, box):
        if index == 1:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        predict_blocks(lambda raw, work, keep: raw, plan, ArrayVolume(np.ones((4, 4, 4), np.float32)),
                       ArrayVolume(np.zeros((4, 4, 4), np.float32)), "mem", on_written=broken)


# ------------------------------------------------------------------ ROI mask and TTA in infer
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("roi")
    data = write_pair(root / "data", shape=(4, 64, 64))
    recipe = load_recipe(write_recipe(root / "r.toml", data, root / "run",
                                      train={"iterations": 2}, method={"adapt": False}))
    return root, str(data / "target.zarr" / "raw"), train(recipe).last_checkpoint


BLOCKS = "infer.block_size=[1,32,32]"  # 4 slices x 4 tiles = 16 blocks


def test_a_mask_skips_empty_blocks_and_keeps_the_values_inside(trained, tmp_path):
    root, raw, ckpt = trained
    full = open_volume(infer_volume(ckpt, raw, str(tmp_path / "full.zarr/p"),
                                    overrides=[BLOCKS]).output).read_all()
    coarse = np.zeros((4, 16, 16), np.uint8)  # a quarter-resolution mask in y and x
    coarse[1:3, 2:7, 3:6] = 1                 # input y 8-28, x 12-24: one tile of slices 1, 2
    coarse[3, 10:, 10:] = 1                   # input y, x 40-64 in slice 3
    mask_uri = write_volume(str(tmp_path / "mask.zarr/m"), coarse, (1, 1, 1)).uri
    result = infer_volume(ckpt, raw, str(tmp_path / "masked.zarr/p"),
                          overrides=[BLOCKS, f'infer.mask="{mask_uri}"'])
    assert (result.predicted, result.outside) == (3, 13)
    masked = open_volume(result.output).read_all()
    inside = np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2).astype(bool)
    np.testing.assert_allclose(masked[inside], full[inside], atol=1e-6)
    assert not masked[~inside].any()


def test_the_cli_takes_mask_and_tta_and_refuses_a_mask_of_another_shape(trained, tmp_path):
    root, raw, ckpt = trained
    mask = write_volume(str(tmp_path / "m.zarr/m"), np.ones((4, 64, 64), bool), (1, 1, 1)).uri
    plain = invoke("infer", ckpt, raw, "-o", tmp_path / "a.zarr/p", "--set", BLOCKS)
    tta = invoke("infer", ckpt, raw, "-o", tmp_path / "b.zarr/p", "--set", BLOCKS, "--mask", mask,
                 "--tta")
    assert plain.exit_code == 0 and tta.exit_code == 0, tta.output
    a, b = (open_volume(str(tmp_path / f"{n}.zarr/p")).read_all() for n in "ab")
    assert a.shape == b.shape and 0 < np.abs(a - b).max() < 0.5
    big = write_volume(str(tmp_path / "big.zarr/m"), np.ones((4, 65, 64), np.uint8), (1, 1, 1)).uri
    error = assert_user_error(invoke("infer", ckpt, raw, "-o", tmp_path / "c.zarr/p", "--mask", big),
                              "big.zarr")
    assert "larger than the input" in error and not (tmp_path / "c.zarr").exists()
    flat = write_volume(str(tmp_path / "flat.zarr/m"), np.ones((64, 64), np.uint8), (1, 1)).uri
    assert "2-D" in assert_user_error(invoke("infer", ckpt, raw, "-o", tmp_path / "d.zarr/p",
                                             "--mask", flat), "flat.zarr")
