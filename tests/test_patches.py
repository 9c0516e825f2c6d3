"""Training crops: uniform placement, foreground oversampling and its determinism."""

import numpy as np
import pytest

from masktwins_cli.data import patches
from masktwins_cli.data.normalization import IntensityStats
from masktwins_cli.data.patches import PatchSampler, VolumeCrops, foreground_voxels, start_around
from masktwins_cli.io.volumes import open_volume, write_volume

STATS = IntensityStats(0.0, 1.0)


def _sparse_volume(shape=(3, 64, 80)):
    """Coordinate-coded image and one small foreground box far from the centre."""
    image = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    labels = np.zeros(shape, np.uint8)
    labels[2, 50:53, 5:8] = 1
    return image, labels


def test_start_around_contains_the_voxel_and_covers_every_fitting_start():
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(2000):
        start = start_around((0, 10, 3), (1, 8, 8), (1, 20, 20), rng)
        assert start[0] == 0 and start[1] <= 10 < start[1] + 8 and 0 <= start[2] <= 3
        seen.add(tuple(start))
    assert {s[1] for s in seen} == set(range(3, 11)) and {s[2] for s in seen} == set(range(0, 4))


def test_full_oversampling_puts_foreground_in_every_crop():
    image, labels = _sparse_volume()
    crops = VolumeCrops(image, STATS, labels)
    sampler = PatchSampler(crops, (16, 16), 2, augment=True, foreground_oversample=1.0)
    _, crop_labels = sampler.sample(64, np.random.default_rng(1))
    assert crop_labels.reshape(64, -1).max(axis=1).min() == 1
    uniform = PatchSampler(crops, (16, 16), 2, augment=False)
    _, uniform_labels = uniform.sample(64, np.random.default_rng(1))
    assert uniform_labels.reshape(64, -1).max(axis=1).mean() < 0.3


def test_no_oversampling_draws_exactly_the_uniform_crops():
    image, labels = _sparse_volume()
    crops = VolumeCrops(image, STATS, labels)
    images, _ = PatchSampler(crops, (16, 16), 2, augment=False).sample(5, np.random.default_rng(7))
    rng = np.random.default_rng(7)
    for crop in images[:, 0]:
        z, y, x = (int(rng.integers(0, n - s + 1)) for n, s in zip((3, 64, 80), (1, 16, 16)))
        np.testing.assert_array_equal(crop, image[z, y:y + 16, x:x + 16])


def test_foreground_positions_from_memory_and_from_disk(tmp_path, monkeypatch):
    image, labels = _sparse_volume()
    in_memory = foreground_voxels(VolumeCrops(image, STATS, labels))
    assert len(in_memory) == 9 and {tuple(v) for v in in_memory} == {
        (2, y, x) for y in range(50, 53) for x in range(5, 8)}
    write_volume(str(tmp_path / "v.zarr" / "raw"), image.astype(np.uint16), (1.0, 1.0, 1.0))
    write_volume(str(tmp_path / "v.zarr" / "labels"), labels, (1.0, 1.0, 1.0))
    monkeypatch.setattr(patches, "CACHE_BYTES", 0)  # read crops from disk
    lazy = VolumeCrops(open_volume(str(tmp_path / "v.zarr/raw")), STATS,
                       open_volume(str(tmp_path / "v.zarr/labels")))
    assert not isinstance(lazy.labels, np.ndarray)
    assert {tuple(v) for v in foreground_voxels(lazy)} == {tuple(v) for v in in_memory}
    assert foreground_voxels(VolumeCrops(image, STATS)).shape == (0, 3)


@pytest.mark.parametrize("dims,patch", [(2, (16, 16)), (3, (2, 16, 16))])
def test_oversampled_crops_match_the_volume_at_their_place(dims, patch):
    image, labels = _sparse_volume()
    sampler = PatchSampler(VolumeCrops(image, STATS, labels), patch, dims, augment=False,
                           foreground_oversample=1.0)
    crops, crop_labels = sampler.sample(8, np.random.default_rng(3))
    for crop, crop_label in zip(crops[:, 0], crop_labels):
        first = int(crop.flat[0])
        z, y, x = np.unravel_index(first, image.shape)
        box = (slice(z, z + (1 if dims == 2 else patch[0])), slice(y, y + 16), slice(x, x + 16))
        np.testing.assert_array_equal(crop.reshape(image[box].shape), image[box])
        np.testing.assert_array_equal(crop_label.reshape(labels[box].shape), labels[box])


def test_horizontal_flips_only_mirror_left_right():
    """flips = 'horizontal' (natural images): a crop is itself or its left-right mirror, never
    upside down or turned."""
    image = np.arange(3 * 16 * 16, dtype=np.float32).reshape(3, 16, 16)
    labels = (np.arange(16 * 16).reshape(16, 16) % 2).astype(np.uint8)
    sampler = PatchSampler(VolumeCrops(image[:, None], STATS, labels[None]), (16, 16), 2, augment=True,
                           flips="horizontal")
    crops, targets = sampler.sample(20, np.random.default_rng(0))
    mirrored = [np.array_equal(c, image[:, :, ::-1]) for c in crops]
    assert all(m or np.array_equal(c, image) for m, c in zip(mirrored, crops))
    assert 0 < sum(mirrored) < 20
    for m, t in zip(mirrored, targets):
        assert np.array_equal(t, labels[:, ::-1] if m else labels)
