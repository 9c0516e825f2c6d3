"""Random scalar fields on a voxel grid: smooth shading/warps and granular texture.

All functions take an explicit :class:`numpy.random.Generator`, return ``float32`` arrays
with zero mean and unit standard deviation, and are vectorised (no per-voxel loops).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _standardise(field: np.ndarray) -> np.ndarray:
    """Shift/scale ``field`` to zero mean and unit std (a constant field becomes zeros)."""
    field = field - field.mean()
    std = float(field.std())
    return (field / std if std > 0 else field).astype(np.float32, copy=False)


def _bspline_matrix(n_out: int, n_coarse: int) -> np.ndarray:
    """(n_out, n_coarse) cubic B-spline interpolation weights from a coarse to a fine axis.

    Output sample ``i`` sits at coarse position ``1 + (i + 0.5) / n_out * (n_coarse - 3)``,
    so every output has four coarse neighbours (the outermost nodes act as margin).
    """
    pos = 1 + (np.arange(n_out) + 0.5) / n_out * (n_coarse - 3)
    base = np.floor(pos).astype(int)
    frac = pos - base
    weights = (
        (1 - frac) ** 3 / 6,
        (3 * frac**3 - 6 * frac**2 + 4) / 6,
        (-3 * frac**3 + 3 * frac**2 + 3 * frac + 1) / 6,
        frac**3 / 6,
    )
    mat = np.zeros((n_out, n_coarse))
    rows = np.arange(n_out)
    for k, w in enumerate(weights):
        np.add.at(mat, (rows, np.clip(base - 1 + k, 0, n_coarse - 1)), w)
    return mat


def smooth_field(shape: tuple[int, ...], corr_px: tuple[float, ...],
                 rng: np.random.Generator) -> np.ndarray:
    """Smooth random field with correlation length ``corr_px`` (per axis, in voxels).

    White noise on a coarse grid (one node per ``corr_px``) is upsampled to ``shape`` with
    separable cubic B-spline weights (a small matrix product per axis), which is much cheaper
    than a wide Gaussian filter or ``ndimage.zoom`` on the full grid. Axes with ``shape == 1``
    stay singleton. Returns a float32 array of ``shape`` (zero mean, unit std).
    """
    coarse = [1 if n == 1 else int(np.ceil(n / max(c, 1e-3))) + 4
              for n, c in zip(shape, corr_px)]
    field = rng.standard_normal(coarse)
    for axis, (n, c) in enumerate(zip(shape, coarse)):
        if n == 1:
            continue
        mat = _bspline_matrix(n, c)
        field = np.moveaxis(np.tensordot(mat, field, axes=(1, axis)), 0, axis)
    return _standardise(field)


def granular_texture(shape: tuple[int, ...], sigma_px: tuple[float, ...],
                     rng: np.random.Generator) -> np.ndarray:
    """Fine cytoplasm grain: white noise Gaussian-filtered with ``sigma_px`` (per axis, voxels).

    Returns a float32 array of ``shape`` with zero mean and unit std; the grain size (blob
    diameter in voxels) is about ``2 * sigma_px``.
    """
    noise = rng.standard_normal(shape, dtype=np.float32)
    return _standardise(ndimage.gaussian_filter(noise, sigma_px, mode="reflect", truncate=3.0))
