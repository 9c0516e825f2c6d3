"""Tests of the synthetic EM mitochondria generator (masktwins_cli.synthetic)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from masktwins_cli.errors import MaskTwinsError
from masktwins_cli.synthetic import (
    DEFAULT_SHAPES,
    SOURCE_STYLE,
    TARGET_STYLE,
    DomainStyle,
    MitoDomainPair,
    SyntheticVolume,
    describe,
    generate_mito_pair,
    render_volume,
)
from masktwins_cli.synthetic.fields import granular_texture, smooth_field

SHAPE_2D = (4, 96, 96)
SHAPE_3D = (12, 64, 64)


@pytest.fixture(scope="module")
def pair2d() -> MitoDomainPair:
    return generate_mito_pair(2, 0, shape=SHAPE_2D)


@pytest.fixture(scope="module")
def pair3d() -> MitoDomainPair:
    return generate_mito_pair(3, 0, shape=SHAPE_3D)


def _volumes(pair: MitoDomainPair) -> list[SyntheticVolume]:
    return [pair.source, pair.target_train, pair.target_test]


def _quiet(style: DomainStyle) -> DomainStyle:
    """``style`` without imaging noise."""
    return dataclasses.replace(style, gaussian_noise_std=0.0, shot_noise_photons=0.0)


def _render(style: DomainStyle, seed: int, shape=(4, 128, 128), dims: int = 2):
    return render_volume(shape, style, np.random.default_rng(seed), dims)


def _hf_energy(raw: np.ndarray) -> float:
    """Mean squared in-plane Laplacian relative to the variance (high-frequency energy)."""
    r = raw.astype(float)
    lap = np.stack([ndimage.laplace(s) for s in r])
    return float((lap**2).mean() / r.var())


def _mean_area_2d(labels: np.ndarray) -> float:
    """Mean area (px) of the 2D connected components of every section."""
    areas = []
    for section in labels:
        cc, _ = ndimage.label(section)
        areas.extend(np.bincount(cc.ravel())[1:])
    return float(np.mean(areas))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


# --- API, dtypes, determinism ---------------------------------------------------------------


def test_pair_shapes_dtypes_and_ranges(pair2d, pair3d):
    for pair, shape in ((pair2d, SHAPE_2D), (pair3d, SHAPE_3D)):
        assert pair.source.raw.shape == shape
        assert pair.target_train.raw.shape == shape
        assert pair.target_test.raw.shape == ((shape[0] + 1) // 2, *shape[1:])
        for vol in _volumes(pair):
            assert vol.raw.dtype == np.uint8 and vol.labels.dtype == np.uint8
            assert vol.raw.shape == vol.labels.shape
            assert set(np.unique(vol.labels)) <= {0, 1}
            assert vol.raw.min() < 80 and vol.raw.max() > 200
            assert len(vol.voxel_size) == 3 and all(v > 0 for v in vol.voxel_size)
        assert pair.styles == {"source": dataclasses.asdict(SOURCE_STYLE),
                               "target": dataclasses.asdict(TARGET_STYLE)}


def test_default_shape_2d():
    pair = generate_mito_pair(2, 5)
    assert pair.source.raw.shape == DEFAULT_SHAPES[2] == (24, 256, 256)
    assert pair.target_test.raw.shape == (12, 256, 256)
    for vol in _volumes(pair):
        assert 0.02 <= vol.labels.mean() <= 0.15


def test_deterministic_for_a_seed(pair2d, pair3d):
    for dims, shape, ref in ((2, SHAPE_2D, pair2d), (3, SHAPE_3D, pair3d)):
        again = generate_mito_pair(dims, 0, shape=shape)
        for a, b in zip(_volumes(ref), _volumes(again)):
            np.testing.assert_array_equal(a.raw, b.raw)
            np.testing.assert_array_equal(a.labels, b.labels)


def test_different_seeds_and_splits_differ(pair2d):
    other = generate_mito_pair(2, 1, shape=SHAPE_2D)
    for a, b in zip(_volumes(pair2d), _volumes(other)):
        assert not np.array_equal(a.raw, b.raw)
        assert not np.array_equal(a.labels, b.labels)
    assert not np.array_equal(pair2d.target_train.labels[:2], pair2d.target_test.labels)


# --- content -----------------------------------------------------------------------------


def test_foreground_fraction(pair2d, pair3d):
    for pair in (pair2d, pair3d, generate_mito_pair(2, 3, shape=SHAPE_2D)):
        for vol in _volumes(pair):
            assert 0.02 <= vol.labels.mean() <= 0.15


def test_mitochondria_darker_than_cytoplasm(pair2d, pair3d):
    for pair in (pair2d, pair3d):
        for vol in _volumes(pair):
            mito = vol.raw[vol.labels == 1].mean()
            background = np.median(vol.raw[vol.labels == 0])
            assert mito < background - 20


def test_2d_sections_are_independent_scenes():
    for style in (SOURCE_STYLE, TARGET_STYLE):
        labels = _render(style, 5, (8, 128, 128)).labels
        ious = [_iou(labels[k], labels[k + 1]) for k in range(labels.shape[0] - 1)]
        assert np.mean(ious) < 0.2  # chance overlap only (3D volumes: > 0.4)


def test_3d_objects_span_consecutive_sections(pair3d):
    for vol in _volumes(pair3d):
        per_section = vol.labels.reshape(vol.labels.shape[0], -1).sum(1)
        assert len(np.unique(per_section)) > 1, "labels should vary along z"
        ious = [_iou(vol.labels[k], vol.labels[k + 1]) for k in range(vol.labels.shape[0] - 1)]
        assert np.mean(ious) > 0.4
        cc, n = ndimage.label(vol.labels)
        z_extents = [s[0].stop - s[0].start for s in ndimage.find_objects(cc)]
        assert n >= 1 and max(z_extents) >= 3 and np.median(z_extents) > 1


def test_3d_voxel_size_differs_between_domains(pair3d):
    assert pair3d.source.voxel_size == tuple(SOURCE_STYLE.voxel_size_nm)
    assert pair3d.target_train.voxel_size == tuple(TARGET_STYLE.voxel_size_nm)
    assert pair3d.source.voxel_size != pair3d.target_train.voxel_size
    src_z, src_xy = pair3d.source.voxel_size[0], pair3d.source.voxel_size[1]
    assert src_z > src_xy  # anisotropic sections


# --- the domain shift goes in the documented direction ---------------------------------------


def test_target_is_brighter_with_lower_mito_contrast():
    for seed in range(2):
        src, tgt = _render(SOURCE_STYLE, seed), _render(TARGET_STYLE, seed)
        assert tgt.raw.mean() > src.raw.mean() + 5

        def contrast(v):
            return np.median(v.raw[v.labels == 0]) - v.raw[v.labels == 1].mean()

        assert contrast(tgt) < 0.8 * contrast(src)


def test_target_is_blurrier():
    src, tgt = _render(_quiet(SOURCE_STYLE), 0), _render(_quiet(TARGET_STYLE), 0)
    assert _hf_energy(tgt.raw) < 0.6 * _hf_energy(src.raw)
    sharp = _render(_quiet(dataclasses.replace(SOURCE_STYLE, blur_sigma_px=0.5)), 1)
    soft = _render(_quiet(dataclasses.replace(SOURCE_STYLE, blur_sigma_px=1.5)), 1)
    np.testing.assert_array_equal(sharp.labels, soft.labels)  # imaging does not move geometry
    assert _hf_energy(soft.raw) < 0.5 * _hf_energy(sharp.raw)


def test_target_noise_is_stronger_and_signal_dependent():
    def noise_levels(style):
        noisy, clean = _render(style, 2), _render(_quiet(style), 2)
        resid = noisy.raw.astype(float) - clean.raw
        bright = clean.raw > np.percentile(clean.raw, 70)
        dark = clean.raw < np.percentile(clean.raw, 10)
        return resid.std(), resid[bright].std() / resid[dark].std()

    source, target = noise_levels(SOURCE_STYLE), noise_levels(TARGET_STYLE)
    assert 2.0 < target[0] / source[0] < 3.0  # ~2.4x (styles.TARGET_STYLE)
    assert abs(source[1] - 1) < 0.05  # Gaussian: signal independent
    shot_only = noise_levels(dataclasses.replace(TARGET_STYLE, gaussian_noise_std=0.0))
    assert shot_only[1] > 1.05  # Poisson: more noise where brighter


def test_target_mitochondria_are_larger():
    shape = (6, 160, 160)
    src = _mean_area_2d(_render(SOURCE_STYLE, 3, shape).labels)
    tgt = _mean_area_2d(_render(TARGET_STYLE, 3, shape).labels)
    assert tgt > 1.2 * src


def test_target_has_more_dark_distractors():
    def dark_unlabelled(v):
        threshold = v.raw[v.labels == 1].mean()
        return float(((v.raw < threshold) & (v.labels == 0)).mean())

    src, tgt = _render(_quiet(SOURCE_STYLE), 4), _render(_quiet(TARGET_STYLE), 4)
    assert dark_unlabelled(tgt) > dark_unlabelled(src)


def test_texture_scale_controls_grain():
    rng = np.random.default_rng(0)
    fine = granular_texture((1, 128, 128), (0, 0.8, 0.8), rng)
    coarse = granular_texture((1, 128, 128), (0, 1.5, 1.5), rng)
    assert abs(fine.std() - 1) < 1e-3 and abs(coarse.std() - 1) < 1e-3
    assert _hf_energy(coarse) < 0.5 * _hf_energy(fine)
    assert TARGET_STYLE.texture_scale_px > SOURCE_STYLE.texture_scale_px


def test_smooth_field_is_smooth_and_standardised():
    field = smooth_field((3, 64, 80), (2.0, 16.0, 16.0), np.random.default_rng(0))
    assert field.shape == (3, 64, 80) and field.dtype == np.float32
    assert abs(float(field.mean())) < 1e-4 and abs(float(field.std()) - 1) < 1e-3
    assert np.abs(np.diff(field, axis=2)).mean() < 0.3


def test_describe_lists_the_documented_shift():
    diff = describe()
    assert diff["gamma"]["target"] < 1 <= diff["gamma"]["source"]
    assert diff["blur_sigma_px"]["ratio"] > 1
    assert diff["texture_scale_px"]["ratio"] > 1
    assert diff["blob_fraction"]["ratio"] > 1
    assert diff["shot_noise_photons"]["source"] == 0 < diff["shot_noise_photons"]["target"]
    assert diff["voxel_size_nm"]["source"] != diff["voxel_size_nm"]["target"]
    assert 1.2 < diff["mito_size_px_ratio"] < 1.5
    assert all("doc" in v for k, v in diff.items() if k != "mito_size_px_ratio")
    assert describe(SOURCE_STYLE, SOURCE_STYLE) == {"mito_size_px_ratio": 1.0}


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("dims", [1, 4, 0, True, "2"])
def test_bad_dims(dims):
    with pytest.raises(MaskTwinsError):
        generate_mito_pair(dims, 0, shape=SHAPE_2D)


@pytest.mark.parametrize(
    ("dims", "shape"),
    [(2, (4, 16, 96)), (2, (4, 96, 31)), (2, (0, 96, 96)), (2, (96, 96)), (3, (2, 64, 64)),
     (2, (4.5, 96, 96)), (2, "abc")],
)
def test_bad_shapes(dims, shape):
    with pytest.raises(MaskTwinsError):
        generate_mito_pair(dims, 0, shape=shape)
    with pytest.raises(MaskTwinsError):
        render_volume(shape, SOURCE_STYLE, np.random.default_rng(0), dims)


@pytest.mark.parametrize("seed", [-1, "1", 1.5, None])
def test_bad_seed(seed):
    with pytest.raises(MaskTwinsError):
        generate_mito_pair(2, seed, shape=SHAPE_2D)


@pytest.mark.parametrize(
    "changes",
    [{"gamma": 0.0}, {"mito_fraction": 0.9}, {"blur_sigma_px": -1.0},
     {"voxel_size_nm": (40.0, 0.0, 5.0)}, {"mito_darkness": 1.5}, {"texture_scale_px": np.nan}],
)
def test_bad_style(changes):
    with pytest.raises(MaskTwinsError):
        dataclasses.replace(SOURCE_STYLE, **changes)
