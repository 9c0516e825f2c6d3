"""Batch augmentation on the training device, built on MONAI's transforms (recipe ``[augment]``).

Three groups, each with its own switches (see :class:`masktwins_cli.config.schema.AugmentSection`
for where each comes from):

- **geometric** (:meth:`Augmenter.geometric`): arbitrary in-plane rotation, in-plane scaling
  (resize), elastic deformation, and in 3-D section misalignment. Image and labels get the same
  warp (labels by nearest neighbour), and the target batch is warped once, before the teacher
  and the student see it, so pseudo-labels stay aligned with the student's input. Outside the
  crop the warp reflects (image and labels alike).
- **intensity** (:meth:`Augmenter.intensity`): brightness/contrast, gamma, Gaussian blur,
  Gaussian noise, and in 3-D missing sections. Source crops only: the teacher's input is never
  augmented in intensity.
- **strong target** (:meth:`Augmenter.strong_target`): the released code's DACS augmentation
  (brightness/contrast jitter, Gaussian blur) on the student's copy of the target batch, before
  it is masked.

Flips and 90-degree turns stay in the crop sampler (``data.augment``). Tensors are (B, C,
*spatial) float images, already normalised (0 = the volume's mean, so a blank section or a
masked voxel is average tissue); labels are (B, *spatial) int64 class indices or (B, C,
*spatial) float channel targets. Every random choice comes from the ``numpy.random.Generator``
passed in (MONAI's own random state is re-seeded from it), so a run is reproducible and resumes
exactly; with every switch off nothing is drawn and batches are returned unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from monai.transforms import AdjustContrast, Affined, GaussianSmooth, Rand2DElasticd, Rand3DElasticd

from ..config.schema import AugmentSection

SEED_RANGE = 2**31 - 1


def _plain(tensor) -> torch.Tensor:
    """MONAI returns MetaTensors; training wants plain tensors."""
    return tensor.as_tensor() if hasattr(tensor, "as_tensor") else tensor


def _draw(rng: np.random.Generator, prob: float) -> bool:
    """True with probability ``prob``; draws nothing when ``prob`` is 0."""
    return prob > 0 and bool(rng.random() < prob)


def _uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high))


def shift_sections(volume: torch.Tensor, start: int, dy: int, dx: int) -> torch.Tensor:
    """Section misalignment: slices ``start:`` of a (C, z, y, x) volume moved by (dy, dx) voxels
    in-plane, edges repeated (the tissue of the later sections slid against the earlier ones)."""
    out = volume.clone()
    y = torch.arange(volume.shape[-2], device=volume.device)
    x = torch.arange(volume.shape[-1], device=volume.device)
    ys = (y - dy).clamp(0, volume.shape[-2] - 1)
    xs = (x - dx).clamp(0, volume.shape[-1] - 1)
    out[:, start:] = volume[:, start:][:, :, ys][:, :, :, xs]
    return out


def brightness_contrast(image: torch.Tensor, contrast: float, brightness: float) -> torch.Tensor:
    """``image * contrast + brightness`` (normalised units: brightness in standard deviations)."""
    return image * contrast + brightness


@dataclass(frozen=True)
class Augmenter:
    """The recipe's ``[augment]`` section as callable batch transforms; ``spatial_dims`` 2 or 3."""

    settings: AugmentSection
    spatial_dims: int

    # ---- which groups are on -------------------------------------------------------------
    @property
    def geometric_on(self) -> bool:
        s = self.settings
        return (s.rotate_prob > 0 or s.scale_prob > 0 or s.elastic_prob > 0
                or (self.spatial_dims == 3 and s.misalign_prob > 0))

    @property
    def intensity_on(self) -> bool:
        s = self.settings
        return (s.contrast_prob > 0 or s.gamma_prob > 0 or s.blur_prob > 0 or s.noise_prob > 0
                or (self.spatial_dims == 3 and s.missing_section_prob > 0))

    @property
    def strong_on(self) -> bool:
        return bool(self.settings.strong_target)

    # ---- geometric -----------------------------------------------------------------------
    def geometric(self, images: torch.Tensor, labels: torch.Tensor | None,
                  rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Warp each sample of ``images`` (B, C, *sp) and ``labels`` alike; returns new tensors
        (the inputs are not modified). Labels keep their dtype."""
        if not self.geometric_on:
            return images, labels
        warped, warped_labels = [], []
        for i in range(images.shape[0]):
            label = None if labels is None else self._label_channels(labels[i])
            image, label = self._warp_one(images[i], label, rng)
            warped.append(image)
            if labels is not None:
                warped_labels.append(label[0] if labels.dim() == images.dim() - 1 else label)
        out_labels = None
        if labels is not None:
            out_labels = torch.stack(warped_labels).to(labels.dtype)
        return torch.stack(warped).to(images.dtype), out_labels

    def _label_channels(self, label: torch.Tensor) -> torch.Tensor:
        """One sample's labels as float (C, *sp): class indices get a channel axis."""
        return (label[None] if label.dim() == self.spatial_dims else label).float()

    def _warp_one(self, image: torch.Tensor, label: torch.Tensor | None,
                  rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        s = self.settings
        data = {"image": image.float()}
        if label is not None:
            data["label"] = label
        keys = tuple(data)
        modes = ("bilinear", "nearest")[:len(keys)]
        angle = math.radians(_uniform(rng, -s.rotate_degrees, s.rotate_degrees)) \
            if _draw(rng, s.rotate_prob) else 0.0
        zoom = (_uniform(rng, 1 - s.scale_range, 1 + s.scale_range),
                _uniform(rng, 1 - s.scale_range, 1 + s.scale_range)) \
            if _draw(rng, s.scale_prob) else None
        elastic = _draw(rng, s.elastic_prob)
        if angle or zoom or elastic:  # one resampling for rotation, zoom and deformation
            rotate = (angle,) if self.spatial_dims == 2 else (angle, 0.0, 0.0)  # about z: in-plane
            scale = zoom or (1.0, 1.0)
            scale = scale if self.spatial_dims == 2 else (1.0, *scale)
            if elastic:
                data = self._elastic(keys, modes, rotate, scale, image.device, rng)(data)
            else:  # grids are built on the batch's device (no host round trip on a GPU)
                data = Affined(keys, rotate_params=rotate, scale_params=scale, mode=modes,
                               padding_mode="reflection", device=image.device)(data)
        image = _plain(data["image"])
        label = _plain(data["label"]) if label is not None else None
        if self.spatial_dims == 3 and image.shape[1] > 1 and _draw(rng, s.misalign_prob):
            start = int(rng.integers(1, image.shape[1]))
            dy, dx = (int(rng.integers(-s.misalign_pixels, s.misalign_pixels + 1)) for _ in "yx")
            image = shift_sections(image, start, dy, dx)
            label = None if label is None else shift_sections(label, start, dy, dx)
        return image, label

    def _elastic(self, keys, modes, rotate, scale, device: torch.device, rng: np.random.Generator):
        """MONAI's elastic transform with the rotation and zoom already drawn pinned in it, so the
        whole warp is one resampling (image and labels share its random state)."""
        s = self.settings
        pinned = {"rotate_range": tuple((a, a) for a in rotate),
                  "scale_range": tuple((f - 1.0, f - 1.0) for f in scale),
                  "magnitude_range": (s.elastic_magnitude / 2, s.elastic_magnitude),
                  "prob": 1.0, "mode": modes, "padding_mode": "reflection", "device": device}
        if self.spatial_dims == 2:
            transform = Rand2DElasticd(keys, spacing=(s.elastic_spacing,) * 2, **pinned)
        else:  # a dense field smoothed with sigma = spacing / 4 voxels, on all three axes
            transform = Rand3DElasticd(keys, sigma_range=(s.elastic_spacing / 4,) * 2, **pinned)
        transform.set_random_state(int(rng.integers(SEED_RANGE)))
        return transform

    # ---- intensity -------------------------------------------------------------------------
    def intensity(self, images: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Brightness/contrast, gamma, blur, noise (and missing sections in 3-D) per sample of
        (B, C, *sp) normalised images; a new tensor."""
        if not self.intensity_on:
            return images
        s = self.settings
        out = []
        for image in images:
            if _draw(rng, s.contrast_prob):
                image = brightness_contrast(image, _uniform(rng, 1 - s.contrast, 1 + s.contrast),
                                            _uniform(rng, -s.brightness, s.brightness))
            if _draw(rng, s.gamma_prob):
                image = _plain(AdjustContrast(_uniform(rng, *s.gamma_range), retain_stats=True)(image))
            if _draw(rng, s.blur_prob):
                image = _plain(GaussianSmooth(_uniform(rng, *s.blur_sigma))(image))
            if _draw(rng, s.noise_prob):
                noise = torch.Generator(device=image.device).manual_seed(int(rng.integers(SEED_RANGE)))
                image = image + s.noise_std * torch.randn(image.shape, generator=noise,
                                                          device=image.device, dtype=image.dtype)
            if self.spatial_dims == 3 and _draw(rng, s.missing_section_prob):
                image = image.clone()
                image[:, int(rng.integers(image.shape[1]))] = 0.0  # the volume's mean
            out.append(image)
        return torch.stack(out).to(images.dtype)

    # ---- strong target (student only) -------------------------------------------------------
    def strong_target(self, images: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """The student's copy of the target batch (B, C, *sp): brightness/contrast jitter and
        Gaussian blur as in the released code (DACS); the teacher keeps ``images``."""
        if not self.strong_on:
            return images
        s = self.settings
        out = []
        for image in images:
            if _draw(rng, s.strong_jitter_prob):
                image = brightness_contrast(image, _uniform(rng, 1 - s.strong_jitter, 1 + s.strong_jitter),
                                            _uniform(rng, -s.strong_jitter, s.strong_jitter))
            if _draw(rng, s.strong_blur_prob):
                image = _plain(GaussianSmooth(_uniform(rng, *s.strong_blur_sigma))(image))
            out.append(image)
        return torch.stack(out).to(images.dtype)
