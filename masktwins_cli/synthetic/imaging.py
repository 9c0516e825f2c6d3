"""The imaging chain: section jitter -> PSF blur -> contrast curve -> noise -> uint8.

Every step is a small pure function of a float32 (z, y, x) intensity volume in ``[0, 1]``;
:func:`image_volume` chains them with the parameters of a :class:`DomainStyle`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from masktwins_cli.synthetic.styles import DomainStyle


def section_jitter(volume: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """Multiply each z section by its own gain ``1 + N(0, std)`` (float32, same shape)."""
    gains = 1 + std * rng.standard_normal(volume.shape[0])
    return (volume * gains[:, None, None]).astype(np.float32)


def blur(volume: np.ndarray, sigma_px: float) -> np.ndarray:
    """In-plane Gaussian PSF of ``sigma_px`` pixels, sections blurred independently."""
    if sigma_px <= 0:
        return volume
    return ndimage.gaussian_filter(volume, (0, sigma_px, sigma_px), mode="reflect")


def contrast_curve(volume: np.ndarray, gamma: float, gain: float, offset: float) -> np.ndarray:
    """``offset + gain * clip(x, 0, 1) ** gamma`` (float32). gamma < 1 lifts the darks."""
    return (offset + gain * np.clip(volume, 0, 1) ** gamma).astype(np.float32)


def add_noise(volume: np.ndarray, gaussian_std: float, photons: float,
              rng: np.random.Generator) -> np.ndarray:
    """Shot noise (Poisson with ``photons`` expected counts at intensity 1; 0 = none) plus
    additive Gaussian noise of ``gaussian_std``. Returns float32 of the same shape."""
    out = volume
    if photons > 0:
        counts = rng.poisson(np.clip(volume, 0, None) * photons)
        out = (counts / photons).astype(np.float32)
    if gaussian_std > 0:
        out = out + gaussian_std * rng.standard_normal(volume.shape, dtype=np.float32)
    return out.astype(np.float32, copy=False)


def to_uint8(volume: np.ndarray) -> np.ndarray:
    """Clip to [0, 1] and quantise to uint8 (0-255)."""
    return np.round(np.clip(volume, 0, 1) * 255).astype(np.uint8)


def image_volume(clean: np.ndarray, style: DomainStyle, rng: np.random.Generator) -> np.ndarray:
    """Image a clean float32 (z, y, x) volume with ``style``'s microscope; returns uint8."""
    vol = section_jitter(clean, style.section_jitter, rng)
    vol = blur(vol, style.blur_sigma_px)
    vol = contrast_curve(vol, style.gamma, style.contrast_gain, style.contrast_offset)
    vol = add_noise(vol, style.gaussian_noise_std, style.shot_noise_photons, rng)
    return to_uint8(vol)
