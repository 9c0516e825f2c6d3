"""Tests for masktwins_cli.evaluation.overlays."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from masktwins_cli.errors import MaskTwinsError
from masktwins_cli.evaluation import overlays
from masktwins_cli.evaluation.overlays import default_slices, write_overlays

# One 2x2 slice on a constant raw image (drawn mid-grey 128):
#   truth = 1 1    prob = 0.2 0.9    -> (0,0) FN, (0,1) TP
#           0 0           0.7 0.1    -> (1,0) FP, (1,1) TN
# FN: 0.4*128 + 0.6*(255, 0, 0) = (204.2, 51.2, 51.2)  -> (204, 51, 51)
# FP: 0.4*128 + 0.6*(0, 255, 0) = (51.2, 204.2, 51.2)  -> (51, 204, 51)
# TP: 0.7*128 + 0.3*(0, 0, 255) = (89.6, 89.6, 166.1)  -> (90, 90, 166)
# TN: (128, 128, 128)
TRUTH = np.array([[1, 1], [0, 0]], dtype=bool)
PROB = np.array([[0.2, 0.9], [0.7, 0.1]], dtype=np.float32)
RAW = np.full((2, 2), 7, dtype=np.uint16)


def _read(path):
    with Image.open(path) as im:
        assert im.mode == "RGB"
        return np.asarray(im)


def test_known_colours_2d(tmp_path):
    paths = write_overlays(RAW, PROB, TRUTH, tmp_path / "new" / "dir")
    assert [p.name for p in paths] == ["overlay_z0000.png"]
    rgb = _read(paths[0])
    assert rgb.shape == (2, 2, 3)
    assert tuple(rgb[0, 0]) == (204, 51, 51)  # FN
    assert tuple(rgb[0, 1]) == (90, 90, 166)  # TP
    assert tuple(rgb[1, 0]) == (51, 204, 51)  # FP
    assert tuple(rgb[1, 1]) == (128, 128, 128)  # TN


def test_threshold_changes_classes(tmp_path):
    # at 0.8 the FP pixel (0.7) becomes TN
    (path,) = write_overlays(RAW, PROB, TRUTH, tmp_path, threshold=0.8)
    assert tuple(_read(path)[1, 0]) == (128, 128, 128)


def test_grey_uses_percentiles(tmp_path):
    # raw 0..99: 1st percentile 0.99, 99th 98.01 -> 0 maps to black, 99 to white (clipped)
    raw = np.arange(100, dtype=np.float64).reshape(10, 10)
    prob = np.zeros((10, 10))
    truth = np.zeros((10, 10), dtype=bool)
    (path,) = write_overlays(raw, prob, truth, tmp_path)
    rgb = _read(path)
    assert tuple(rgb[0, 0]) == (0, 0, 0)
    assert tuple(rgb[9, 9]) == (255, 255, 255)
    expected_mid = round((50 - 0.99) / (98.01 - 0.99) * 255)
    assert tuple(rgb[5, 0]) == (expected_mid,) * 3


def test_3d_names_and_default_slices(tmp_path):
    z = 20
    raw = np.random.default_rng(0).random((z, 4, 5))
    prob = np.zeros((z, 4, 5), dtype=np.float32)
    truth = np.zeros((z, 4, 5), dtype=np.uint8)
    paths = write_overlays(raw, prob, truth, tmp_path)
    # linspace(0, 19, 8) = 0, 2.71, 5.43, 8.14, 10.86, 13.57, 16.29, 19 -> rounded
    expected = [0, 3, 5, 8, 11, 14, 16, 19]
    assert [p.name for p in paths] == [f"overlay_z{i:04d}.png" for i in expected]
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in paths]  # no temp files


def test_default_slices():
    assert default_slices(3) == [0, 1, 2]
    assert default_slices(1) == [0]
    assert default_slices(9, max_slices=1) == [4]
    assert default_slices(100, max_slices=2) == [0, 99]
    with pytest.raises(MaskTwinsError, match="max_slices"):
        default_slices(5, max_slices=0)


def test_explicit_slices_and_per_slice_content(tmp_path):
    raw = np.ones((3, 2, 2))
    prob = np.zeros((3, 2, 2))
    truth = np.zeros((3, 2, 2), dtype=bool)
    truth[2, 0, 0] = True  # a FN only on the last slice
    paths = write_overlays(raw, prob, truth, tmp_path, slices=[-1, 0, 2])
    assert [p.name for p in paths] == ["overlay_z0002.png", "overlay_z0000.png"]
    assert tuple(_read(paths[0])[0, 0]) == (204, 51, 51)
    assert tuple(_read(paths[1])[0, 0]) == (128, 128, 128)


def test_validation(tmp_path):
    with pytest.raises(MaskTwinsError, match="out of range"):
        write_overlays(
            np.zeros((3, 2, 2)), np.zeros((3, 2, 2)), np.zeros((3, 2, 2)), tmp_path, slices=[3]
        )
    with pytest.raises(MaskTwinsError, match=r"\(3, 2, 2\).*\(3, 2, 3\)"):
        write_overlays(np.zeros((3, 2, 2)), np.zeros((3, 2, 3)), np.zeros((3, 2, 2)), tmp_path)
    with pytest.raises(MaskTwinsError, match="threshold"):
        write_overlays(RAW, PROB, TRUTH, tmp_path, threshold=1.0)
    with pytest.raises(MaskTwinsError, match="binary"):
        write_overlays(RAW, PROB, TRUTH.astype(np.uint8) * 255, tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(MaskTwinsError, match="overlay folder"):
        write_overlays(RAW, PROB, TRUTH, blocker)


def test_failed_write_leaves_no_files(tmp_path, monkeypatch):
    def boom(self, fp, *args, **kwargs):
        fp.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(overlays.Image.Image, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        write_overlays(RAW, PROB, TRUTH, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_overwrites_existing(tmp_path):
    (tmp_path / "overlay_z0000.png").write_bytes(b"old")
    (path,) = write_overlays(RAW, PROB, TRUTH, tmp_path)
    assert tuple(_read(path)[1, 1]) == (128, 128, 128)
    assert [p.name for p in tmp_path.iterdir()] == ["overlay_z0000.png"]
