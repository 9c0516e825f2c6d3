"""A tiny WASP-SYN-layout folder built in the test (imported by the synapse CLI tests).

Layout (the challenge's names, offsets in the names, coordinates of labels global)::

    ROOT/train_sample3_vol0/img_zyx_40-64_100-140_200-248.h5    'main' (24, 40, 48) uint16
    ROOT/train_sample3_vol0/syns_zyx_40-64_100-140_200-248.h5   'pre' (3, 3), 'post' (4, 4)
    ROOT/test_sample1_vol0/img_zyx_8-32_16-56_24-72.h5          unlabeled

The image voxels encode their coordinates (value = z * 40 * 48 + y * 48 + x), so an axis swap
or an offset slip fails; the shape is anisotropic and the values vary along z.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

SHAPE = (24, 40, 48)
OFFSET = (40, 100, 200)
TARGET_OFFSET = (8, 16, 24)
LABELED = "train_sample3_vol0"
UNLABELED = "test_sample1_vol0"

# local voxel coordinates (z, y, x); pre rows 0..2, posts link to a pre row
PRE = np.array([[5.0, 8.0, 9.0], [12.0, 25.0, 30.0], [20.0, 10.0, 40.0]])
POST = np.array([[0, 7.0, 8.0, 13.0], [0, 3.0, 9.0, 5.0], [1, 14.0, 28.0, 33.0],
                 [2, 18.0, 14.0, 40.0]])


def range_name(prefix: str, offset, shape=SHAPE) -> str:
    """``img_zyx_40-64_100-140_200-248.h5`` for ``offset`` and ``shape``."""
    ranges = "_".join(f"{o}-{o + s}" for o, s in zip(offset, shape))
    return f"{prefix}_zyx_{ranges}.h5"


def coordinate_image(shape=SHAPE) -> np.ndarray:
    """uint16 (z, y, x) volume whose voxels encode their coordinates."""
    z, y, x = np.indices(shape)
    return (z * shape[1] * shape[2] + y * shape[2] + x).astype(np.uint16)


def write_image(path: Path, array: np.ndarray, dataset: str = "main") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as h5file:
        h5file.create_dataset(dataset, data=array)
    return path


def write_labels(path: Path, pre: np.ndarray, post: np.ndarray, offset=OFFSET) -> Path:
    """WASP-SYN label file: local ``pre``/``post`` shifted to global coordinates by ``offset``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shift = np.asarray(offset, dtype=np.float64)
    post = np.asarray(post, dtype=np.float64).reshape(-1, 4).copy()
    post[:, 1:] += shift
    with h5py.File(path, "w") as h5file:
        h5file.create_dataset("pre", data=np.asarray(pre, dtype=np.float64).reshape(-1, 3) + shift)
        h5file.create_dataset("post", data=post)
    return path


def make_layout(root: Path, unlabeled: bool = True) -> dict[str, Path]:
    """The layout of the module docstring under ``root``; returns the files by role."""
    files = {
        "image": write_image(root / LABELED / range_name("img", OFFSET), coordinate_image()),
        "labels": write_labels(root / LABELED / range_name("syns", OFFSET), PRE, POST),
    }
    if unlabeled:
        files["target"] = write_image(root / UNLABELED / range_name("img", TARGET_OFFSET),
                                      coordinate_image()[::-1].copy())
    return files
