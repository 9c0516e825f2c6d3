"""Multi-channel (colour) images: reading colour slices, per-channel normalisation, crops,
masks, sliding windows and infer on channel-first (c, z, y, x) volumes."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
from cli_helpers import invoke
from PIL import Image

from masktwins_cli.data.normalization import IntensityStats, image_stats, normalize
from masktwins_cli.data.patches import PatchSampler, VolumeCrops
from masktwins_cli.errors import MaskTwinsError
from masktwins_cli.io.volumes import open_volume, write_volume
from masktwins_cli.method.masking import complementary_block_masks, masked_views
from masktwins_cli.prepare.stacks import read_slice
from masktwins_cli.runtime.windows import WindowSettings, predict_array, predict_box

RNG = np.random.default_rng(0)


# ----------------------------------------------------------------------------- colour slices
def test_colour_slices_become_three_channels(tmp_path):
    rgb = RNG.integers(0, 255, (6, 5, 3), dtype=np.uint8)
    Image.fromarray(rgb, "RGB").save(tmp_path / "rgb.png")
    rgba = np.concatenate([rgb, np.full((6, 5, 1), 7, np.uint8)], axis=-1)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    grey = RNG.integers(0, 255, (6, 5), dtype=np.uint8)
    Image.fromarray(grey, "L").save(tmp_path / "grey.png")
    palette = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), "P")
    palette.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    palette.save(tmp_path / "palette.png")
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")

    channel_first = np.moveaxis(rgb, -1, 0)
    assert np.array_equal(read_slice(tmp_path / "rgb.png", rgb=True), channel_first)
    assert np.array_equal(read_slice(tmp_path / "rgba.png", rgb=True), channel_first)  # alpha out
    assert np.array_equal(read_slice(tmp_path / "rgb.tif", rgb=True), channel_first)
    assert np.array_equal(read_slice(tmp_path / "grey.png", rgb=True), np.stack([grey] * 3))
    colours = read_slice(tmp_path / "palette.png", rgb=True)  # the palette's colours, not indices
    assert colours.shape == (3, 2, 2) and tuple(colours[:, 0, 0]) == (10, 20, 30)
    assert tuple(colours[:, 0, 1]) == (200, 100, 50)
    with pytest.raises(MaskTwinsError, match="colour"):  # without --rgb colour is refused
        read_slice(tmp_path / "rgb.png")


def test_prepare_stack_rgb_refuses_a_volume_input(tmp_path):
    uri = f"{tmp_path}/in.zarr/raw"
    write_volume(uri, np.zeros((2, 8, 8), np.uint8), (1.0, 1.0, 1.0))
    result = invoke("prepare", "stack", f"{tmp_path}/out.zarr", "--images", uri, "--rgb")
    assert result.exit_code == 2 and "--rgb" in result.output
    assert not (tmp_path / "out.zarr").exists()


# ----------------------------------------------------------------------------- normalisation
def test_statistics_per_channel_and_fixed():
    image = np.stack([RNG.normal(m, s, (2, 16, 16)) for m, s in ((10, 2), (100, 20), (-5, 1))])
    stats = image_stats(image, "zscore")
    assert stats.channels == 3
    assert np.allclose(stats.shift, image.reshape(3, -1).mean(axis=1))
    normalised = normalize(image, stats)
    assert np.allclose(normalised.reshape(3, -1).mean(axis=1), 0, atol=1e-5)
    assert np.allclose(normalised.reshape(3, -1).std(axis=1), 1, atol=1e-4)
    fixed = image_stats(image, "fixed", "rgb", ((1.0, 2.0, 3.0), (2.0, 4.0, 8.0)))
    assert fixed == IntensityStats((1.0, 2.0, 3.0), (2.0, 4.0, 8.0))
    assert np.allclose(normalize(image, fixed)[2], (image[2] - 3.0) / 8.0)
    one = image_stats(image[:1], "zscore")  # one channel: plain floats, as for (z, y, x)
    assert isinstance(one.shift, float) and one == image_stats(image[0], "zscore")
    with pytest.raises(MaskTwinsError, match="3 channel"):
        image_stats(image, "fixed", "rgb", ((1.0,), (2.0,)))
    image[1, 0, 0, 0] = np.nan
    with pytest.raises(MaskTwinsError, match="channel 1"):
        image_stats(image, "zscore", "rgb")


# ------------------------------------------------------------------------------------ crops
@pytest.mark.parametrize("dims", [2, 3])
def test_crops_keep_channels_aligned_with_each_other_and_the_labels(dims):
    base = RNG.random((4, 24, 24)).astype(np.float32)
    image = np.stack([base, 2 * base, base + 10])  # channels tied to each other
    labels = (base > 0.5).astype(np.uint8)
    crops = VolumeCrops(image, IntensityStats((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)), labels)
    assert crops.channels == 3 and crops.shape == (4, 24, 24)
    patch = (16, 16) if dims == 2 else (4, 16, 16)
    sampler = PatchSampler(crops, patch, dims, augment=True)
    images, targets = sampler.sample(6, np.random.default_rng(3))
    assert images.shape == (6, 3, *patch) and targets.shape == (6, *patch)
    assert np.allclose(images[:, 1], 2 * images[:, 0], atol=1e-6)
    assert np.allclose(images[:, 2], images[:, 0] + 10, atol=1e-5)
    assert np.array_equal(targets, (images[:, 0] > 0.5).astype(np.int64))


def test_one_channel_crops_are_unchanged_by_the_channel_axis():
    """A (z, y, x) volume and its (1, z, y, x) form give the same batches."""
    image = RNG.random((3, 20, 20)).astype(np.float32)
    stats = IntensityStats(0.5, 0.25)
    draws = []
    for volume in (image, image[None]):
        sampler = PatchSampler(VolumeCrops(volume, stats), (16, 16), 2, intensity_augment=0.1)
        draws.append(sampler.sample(4, np.random.default_rng(7))[0])
    assert draws[0].shape == (4, 1, 16, 16) and np.array_equal(draws[0], draws[1])


def test_a_mask_hides_every_channel_of_a_block_alike():
    images = torch.randn(2, 3, 16, 16)
    gen = torch.Generator().manual_seed(0)
    masks = complementary_block_masks(2, (16, 16), (4, 4), 0.5, 2, gen)
    views = masked_views(images, masks)
    hidden = views[0] == 0
    assert torch.equal(hidden[:, 0], hidden[:, 1]) and torch.equal(hidden[:, 0], hidden[:, 2])
    assert torch.equal(views[0] + views[1], images)  # the twins complete each other


# ---------------------------------------------------------------------------------- windows
class ChannelMix(torch.nn.Module):
    """A 1x1 convolution from 3 channels to 2 classes (a stand-in network)."""

    def __init__(self, dims: int):
        super().__init__()
        conv = torch.nn.Conv2d if dims == 2 else torch.nn.Conv3d
        self.conv = conv(3, 2, 3, padding=1)
        torch.manual_seed(0)
        torch.nn.init.normal_(self.conv.weight)

    def forward(self, x):
        return self.conv(x)


@pytest.mark.parametrize("dims", [2, 3])
def test_windows_normalise_each_channel_on_the_device(dims):
    raw = RNG.integers(0, 255, (3, 4, 20, 20)).astype(np.uint8)
    stats = IntensityStats((100.0, 50.0, 10.0), (20.0, 5.0, 2.0))
    window = (8, 8) if dims == 2 else (4, 8, 8)
    settings = WindowSettings(dims, window, 0.25, 2, "gaussian", amp=False)
    model = ChannelMix(dims).eval()
    whole = predict_array(model, normalize(raw, stats), settings, torch.device("cpu"))
    _, pad, starts, inner = settings.grid(raw.shape[1:]).layout(tuple(slice(0, n) for n in raw.shape[1:]))
    import itertools

    boxed = predict_box(model, raw, pad, list(itertools.product(*starts)), inner, settings,
                        torch.device("cpu"), stats.shift, stats.scale)
    assert whole.shape == (2, 4, 20, 20)
    assert np.allclose(whole, boxed, atol=1e-5)


def test_infer_reads_a_colour_volume_block_by_block(tmp_path, tiny_trained_run):
    """A 3-channel checkpoint predicts a (3, z, y, x) volume: the output is (z, y, x) and equals
    predicting the whole normalised volume at once, whatever the block size."""
    from masktwins_cli.config.recipe import recipe_from_dict, recipe_to_dict
    from masktwins_cli.io.checkpoints import load_checkpoint, save_checkpoint
    from masktwins_cli.runtime.networks import build_from_recipe
    from masktwins_cli.runtime.windows import recipe_window_settings

    payload = load_checkpoint(tiny_trained_run / "last.pt")
    values = payload["recipe"]
    values["model"]["in_channels"] = 3
    recipe = recipe_from_dict(values)
    torch.manual_seed(0)
    network = build_from_recipe(recipe)
    save_checkpoint(tmp_path / "rgb.pt", {**payload, "recipe": recipe_to_dict(recipe),
                                          "model": network.state_dict(),
                                          "teacher": network.state_dict()})
    raw = np.stack([RNG.integers(0, 255, (3, 40, 40)) * k for k in (1, 2, 3)]).astype(np.uint16)
    write_volume(f"{tmp_path}/in.zarr/raw", raw, (1.0, 1.0, 1.0))
    for name, block in (("whole", []), ("blocks", [1, 16, 16])):
        result = invoke("infer", tmp_path / "rgb.pt", f"{tmp_path}/in.zarr/raw", "-o",
                        f"{tmp_path}/out.zarr/{name}", "--device", "cpu", "--set",
                        f"infer.block_size={block}")
        assert result.exit_code == 0, result.output
    whole, blocks = (open_volume(f"{tmp_path}/out.zarr/{n}").read_all() for n in ("whole", "blocks"))
    assert whole.shape == (3, 40, 40) and np.allclose(whole, blocks, atol=1e-5)
    network.eval()
    expected = predict_array(network, normalize(raw, image_stats(raw, "zscore")),
                             recipe_window_settings(recipe), torch.device("cpu"))[0]
    assert np.allclose(whole, expected, atol=1e-5)
    grey = f"{tmp_path}/grey.zarr/raw"
    write_volume(grey, raw[0], (1.0, 1.0, 1.0))
    result = invoke("infer", tmp_path / "rgb.pt", grey, "-o", f"{tmp_path}/g.zarr/p",
                    "--device", "cpu")
    assert result.exit_code == 2 and "model.in_channels = 3" in result.output
    assert not (tmp_path / "g.zarr").exists()
