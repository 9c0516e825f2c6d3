"""Synthetic synapse volumes (masktwins_cli.synthetic.synapses) and their writer on disk."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from scipy import ndimage

from masktwins_cli.errors import MaskTwinsError
from masktwins_cli.io.volumes import open_volume
from masktwins_cli.prepare.synthetic_synapses import write_synapse_pair
from masktwins_cli.synapse.points import read_points_csv
from masktwins_cli.synthetic import (
    SYNAPSE_SOURCE_STYLE,
    SYNAPSE_TARGET_STYLE,
    SynapseStyle,
    describe_synapse_styles,
    generate_synapse_pair,
    synapse_volume,
)
from masktwins_cli.synthetic.synapse_sites import MARGIN_PX, MAX_POST_DISTANCE, MIN_POINT_GAP

SHAPE = (64, 72, 80)  # not cubic: an axis mix-up changes the shape


def render(style: SynapseStyle, seed: int, shape=SHAPE):
    return synapse_volume(shape, style, np.random.default_rng(seed))


def quiet(style: SynapseStyle) -> SynapseStyle:
    """``style`` without imaging noise."""
    domain = dataclasses.replace(style.domain, gaussian_noise_std=0.0, shot_noise_photons=0.0)
    return dataclasses.replace(style, domain=domain)


@pytest.fixture(scope="module")
def volumes() -> dict:
    """Quiet and noisy source/target renderings of two seeds (same geometry per seed/style)."""
    out = {}
    for name, style in (("source", SYNAPSE_SOURCE_STYLE), ("target", SYNAPSE_TARGET_STYLE)):
        for seed in (0, 1):
            out[name, seed] = render(style, seed)
            out[name, seed, "quiet"] = render(quiet(style), seed)
    return out


def ball_mean(raw: np.ndarray, centre: np.ndarray, radius: float) -> float:
    """Mean intensity of the voxels within ``radius`` of ``centre``."""
    grid = np.indices(raw.shape).reshape(3, -1).T
    inside = np.linalg.norm(grid - centre, axis=1) <= radius
    return float(raw.reshape(-1)[inside].mean())


def random_points(shape, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(MARGIN_PX, np.asarray(shape) - MARGIN_PX, size=(count, 3))


def dots_near(peaks: np.ndarray, centre: np.ndarray, radius: float = 12) -> int:
    """Number of ``peaks`` (K, 3) within ``radius`` voxels of ``centre``."""
    return int((np.linalg.norm(peaks - centre, axis=1) <= radius).sum())


def hf_energy(raw: np.ndarray) -> float:
    """Mean squared 3D Laplacian relative to the variance (high-frequency energy)."""
    r = raw.astype(float)
    return float((ndimage.laplace(r) ** 2).mean() / r.var())


# --- API and determinism -----------------------------------------------------------------------


def test_shapes_dtypes_and_determinism(volumes):
    raw, points = volumes["source", 0]
    assert raw.shape == SHAPE and raw.dtype == np.uint8
    assert raw.min() < 60 and raw.max() > 200
    again_raw, again_points = render(SYNAPSE_SOURCE_STYLE, 0)
    np.testing.assert_array_equal(raw, again_raw)
    np.testing.assert_array_equal(points.pre, again_points.pre)
    np.testing.assert_array_equal(points.post, again_points.post)
    np.testing.assert_array_equal(points.post_pre, again_points.post_pre)
    other_raw, other_points = volumes["source", 1]
    assert not np.array_equal(raw, other_raw)
    assert not np.array_equal(points.pre, other_points.pre[: points.n_pre])


def test_imaging_does_not_move_geometry(volumes):
    for name in ("source", "target"):
        noisy, quiet_ = volumes[name, 0][1], volumes[name, 0, "quiet"][1]
        np.testing.assert_array_equal(noisy.pre, quiet_.pre)
        np.testing.assert_array_equal(noisy.post, quiet_.post)


# --- the labels --------------------------------------------------------------------------------


def test_points_inside_linked_apart_and_polyadic(volumes):
    posts_per_pre = []
    for name in ("source", "target"):
        for seed in (0, 1):
            raw, points = volumes[name, seed]
            assert points.n_pre >= 1 and points.n_post >= points.n_pre
            every = np.concatenate([points.pre, points.post])
            assert np.array_equal(every, np.round(every))
            assert every.min() >= MARGIN_PX
            assert np.all(every <= np.asarray(raw.shape) - 1 - MARGIN_PX)
            assert set(points.post_pre) == set(range(points.n_pre))  # each pre has >= 1 post
            gaps = np.abs(every[:, None] - every[None]).max(axis=2) + 1000 * np.eye(len(every))
            assert gaps.min() >= MIN_POINT_GAP
            distance = np.linalg.norm(points.post - points.pre[points.post_pre], axis=1)
            assert np.all((distance >= MIN_POINT_GAP) & (distance <= MAX_POST_DISTANCE))
            posts_per_pre += list(np.bincount(points.post_pre))
    assert max(posts_per_pre) >= 2 and min(posts_per_pre) == 1
    assert max(posts_per_pre) <= SYNAPSE_SOURCE_STYLE.max_posts


def test_density_scales_with_volume():
    _, small = render(SYNAPSE_SOURCE_STYLE, 3, (48, 48, 48))
    _, large = render(SYNAPSE_SOURCE_STYLE, 3, (96, 96, 96))
    assert large.n_pre > small.n_pre and large.n_pre >= 4


# --- the anatomy -------------------------------------------------------------------------------


def test_pre_side_is_dark_and_dotted(volumes):
    for name, style in (("source", SYNAPSE_SOURCE_STYLE), ("target", SYNAPSE_TARGET_STYLE)):
        raw, points = volumes[name, 0, "quiet"]
        background = [ball_mean(raw, p, 3) for p in random_points(raw.shape, 40, 0)]
        near_pre = [ball_mean(raw, p, 3) for p in points.pre]
        assert np.mean(near_pre) < np.median(background) - 15
        # dark dots (vesicles): many more small dark blobs (peaks of the Laplacian of Gaussian,
        # positive on dark spots) within 12 voxels of a pre point than around random points
        log = ndimage.gaussian_laplace(raw.astype(float), style.vesicle_radius_px / 1.6)
        peaks = np.argwhere((log == ndimage.maximum_filter(log, 5)) & (log > np.percentile(log, 98)))

        background_dots = np.mean([dots_near(peaks, p) for p in random_points(raw.shape, 40, 1)])
        assert np.mean([dots_near(peaks, p) for p in points.pre]) > 1.8 * background_dots


def test_post_density_is_dark_behind_a_bright_cleft(volumes):
    for name in ("source", "target"):
        raw, points = volumes[name, 0, "quiet"]
        cytoplasm = np.median(raw)
        post_means = [ball_mean(raw, q, 1) for q in points.post]
        assert np.mean(post_means) < cytoplasm - 25
        clefts = 0
        for q, k in zip(points.post, points.post_pre):
            line = np.linspace(points.pre[k], q, 25)
            profile = ndimage.map_coordinates(raw.astype(float), line.T, order=1)
            clefts += profile[5:-3].max() > max(profile[0], profile[-1]) + 15
        assert clefts >= 0.7 * points.n_post


# --- the domain shift --------------------------------------------------------------------------


def test_target_noise_is_stronger_and_signal_dependent(volumes):
    def residual(name):
        noisy, clean = volumes[name, 0][0].astype(float), volumes[name, 0, "quiet"][0]
        resid = noisy - clean
        bright, dark = clean > np.percentile(clean, 70), clean < np.percentile(clean, 10)
        return resid.std(), resid[bright].std() / resid[dark].std()

    (source_std, source_ratio), (target_std, target_ratio) = residual("source"), residual("target")
    assert 1.4 < target_std / source_std < 2.2
    assert abs(source_ratio - 1) < 0.1  # Gaussian read noise only
    assert target_ratio > 1.1  # Poisson shot noise grows with intensity


def test_target_is_blurrier_brighter_and_lower_contrast(volumes):
    source, target = volumes["source", 0, "quiet"][0], volumes["target", 0, "quiet"][0]
    assert hf_energy(target) < 0.5 * hf_energy(source)
    assert target.mean() > source.mean() + 5
    spread = [np.percentile(v, 50) - np.percentile(v, 2) for v in (source, target)]
    assert spread[1] < 0.85 * spread[0]
    sharp = render(quiet(SYNAPSE_SOURCE_STYLE), 5, (48, 48, 48))
    soft_domain = dataclasses.replace(SYNAPSE_SOURCE_STYLE.domain, blur_sigma_px=1.2)
    soft = render(quiet(dataclasses.replace(SYNAPSE_SOURCE_STYLE, domain=soft_domain)), 5, (48, 48, 48))
    np.testing.assert_array_equal(sharp[1].pre, soft[1].pre)
    assert hf_energy(soft[0]) < 0.5 * hf_energy(sharp[0])


def test_describe_lists_the_documented_shift():
    diff = describe_synapse_styles()
    assert diff["domain.blur_sigma_px"]["ratio"] > 1.3
    assert diff["domain.gamma"]["target"] < 1 == diff["domain.gamma"]["source"]
    assert diff["domain.shot_noise_photons"]["source"] == 0 < diff["domain.shot_noise_photons"]["target"]
    assert diff["domain.texture_scale_px"]["ratio"] > 1.5
    for size in ("vesicle_radius_px", "psd_thickness_px", "contact_radius_px", "cleft_width_px"):
        assert diff[size]["ratio"] > 1.1, size
    assert all(entry["doc"] for entry in diff.values())
    assert "domain.voxel_size_nm" not in diff  # both 8 nm isotropic
    assert describe_synapse_styles(SYNAPSE_SOURCE_STYLE, SYNAPSE_SOURCE_STYLE) == {}


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(16, 64, 64), (64, 64), (64.0, 64, 64), "64,64,64"])
def test_bad_shape(shape):
    with pytest.raises(MaskTwinsError, match="shape"):
        synapse_volume(shape, SYNAPSE_SOURCE_STYLE, np.random.default_rng(0))


def test_bad_styles():
    with pytest.raises(MaskTwinsError, match="SynapseStyle"):
        synapse_volume((32, 32, 32), SYNAPSE_SOURCE_STYLE.domain, np.random.default_rng(0))
    anisotropic = dataclasses.replace(SYNAPSE_SOURCE_STYLE.domain, voxel_size_nm=(40.0, 8.0, 8.0))
    with pytest.raises(MaskTwinsError, match="isotropic"):
        SynapseStyle(domain=anisotropic)
    with pytest.raises(MaskTwinsError, match="psd_darkness"):
        SynapseStyle(psd_darkness=1.5)
    with pytest.raises(MaskTwinsError, match="max_posts"):
        SynapseStyle(max_posts=0)
    with pytest.raises(MaskTwinsError, match="seed"):
        generate_synapse_pair(-1, (32, 32, 32))


# --- on disk -----------------------------------------------------------------------------------


def test_write_synapse_pair_round_trips(tmp_path):
    shape = (40, 48, 56)
    meta = write_synapse_pair(tmp_path, seed=4, shape=shape)
    pair = generate_synapse_pair(4, shape)
    assert json.loads((tmp_path / "dataset.json").read_text()) == json.loads(json.dumps(meta))
    assert meta["styles"]["target"]["domain"]["gamma"] == SYNAPSE_TARGET_STYLE.domain.gamma
    for name in ("source", "target_train", "target_test"):
        raw, points = getattr(pair, name)
        volume = open_volume(tmp_path / f"{name}.zarr" / "raw")
        assert volume.shape == shape and tuple(volume.voxel_size) == (8.0, 8.0, 8.0)
        np.testing.assert_array_equal(volume[:], raw)
        table = read_points_csv(tmp_path / f"{name}_points.csv", shape=shape)
        for field in ("pre", "post", "post_pre"):
            np.testing.assert_array_equal(getattr(table, field), getattr(points, field))
        assert meta["points"][name] == {"pre": points.n_pre, "post": points.n_post}
        assert meta["volumes"][f"{name}/raw"] == str(tmp_path / f"{name}.zarr" / "raw")
    with pytest.raises(MaskTwinsError, match="already holds"):
        write_synapse_pair(tmp_path, seed=4, shape=shape)
    write_synapse_pair(tmp_path, seed=5, shape=shape, overwrite=True)


def test_larger_test_volume_keeps_the_other_volumes(tmp_path):
    """test_shape sizes only target_test; source and target_train stay those of the default call."""
    shape, big = (32, 40, 48), (32, 80, 96)
    plain = generate_synapse_pair(2, shape)
    larger = generate_synapse_pair(2, shape, test_shape=big)
    for name in ("source", "target_train"):
        np.testing.assert_array_equal(getattr(larger, name)[0], getattr(plain, name)[0])
    assert larger.target_test[0].shape == big
    meta = write_synapse_pair(tmp_path, seed=2, shape=shape, test_shape=big)
    assert meta["shapes"] == {"source": list(shape), "target_train": list(shape),
                              "target_test": list(big)}
    assert read_points_csv(tmp_path / "target_test_points.csv", shape=big).n_pre == \
        larger.target_test[1].n_pre
    with pytest.raises(MaskTwinsError, match="shape"):
        generate_synapse_pair(2, shape, test_shape=(8, 80, 96))
