"""Random training crops from volumes, with labels, normalisation and augmentation.

Volumes are (z, y, x) (a 2-D image counts as one slice), or channel-first (c, z, y, x) for
multi-channel images. Image crops always carry the channel axis: a 2-D model gets (c, y, x)
crops from a random slice; a 3-D model gets (c, z, y, x) crops. Small volumes are held in
memory; larger ones are read crop by crop through the volume interface. All randomness comes
from the ``numpy.random.Generator`` passed to :meth:`PatchSampler.sample`.

Labels are either a class-index volume (z, y, x) (segmentation) or channel-first 0/1 targets
(C, z, y, x) held in memory (synapse cube targets, ``channel_targets=True``); the sampler crops,
flips and turns them together with the image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import MaskTwinsError
from ..io.layout import channel_count, spatial_shape
from .normalization import IntensityStats, normalize, sample_step
from .rare_classes import RareClassSampler, pixel_of_class

CACHE_BYTES = 2 * 1024**3


def as_zyx_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """(y, x) -> (1, y, x); (z, y, x) unchanged."""
    return (1, *shape) if len(shape) == 2 else tuple(shape)


def as_zyx(array: np.ndarray) -> np.ndarray:
    """A (y, x) image becomes a one-slice (1, y, x) volume; (z, y, x) is returned unchanged."""
    return array[None] if array.ndim == 2 else array


def check_labels(labels: np.ndarray, num_classes: int, name: str,
                 ignore_label: int | None = None) -> None:
    """Labels must be integers in [0, num_classes), or ``ignore_label``."""
    if labels.dtype.kind not in "biu":
        raise MaskTwinsError(f"{name}: labels have dtype {labels.dtype}; expected integer class indices")
    counted = labels if ignore_label is None else labels[labels != ignore_label]
    if counted.size and (counted.min() < 0 or counted.max() >= num_classes):
        found = np.unique(counted)
        found = found[(found < 0) | (found >= num_classes)]
        shown = ", ".join(str(v) for v in found[:10]) + (" ..." if found.size > 10 else "")
        ignored = "" if ignore_label is None else f" or {ignore_label} (data.ignore_label)"
        raise MaskTwinsError(f"{name}: label values {shown} outside the classes 0..{num_classes - 1} "
                             f"(model.num_classes){ignored}")


class VolumeCrops:
    """Crops of one image volume and (optionally) its label volume.

    Args:
        raw: image volume (numpy array or masktwins Volume), (z, y, x), (y, x) or channel-first
            (c, z, y, x).
        stats: normalisation statistics of ``raw``.
        labels: label volume of ``raw``'s spatial shape, or None; with ``channel_targets`` a
            numpy array (C, z, y, x) of 0/1 targets for a (z, y, x) image.
        num_classes: for checking the labels.
        names: (raw name, label name) for error messages.
        channel_targets: labels are channel-first 0/1 targets (crops come back float32).
        ignore_label: a label value that is no class (allowed in the labels, never foreground).
    """

    def __init__(self, raw, stats: IntensityStats, labels=None, num_classes: int = 2,
                 names: tuple[str, str] = ("raw", "labels"), channel_targets: bool = False,
                 ignore_label: int | None = None):
        self.names = names
        self.stats = stats
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.channel_targets = channel_targets and labels is not None
        spatial = None if labels is None else tuple(labels.shape)[1 if self.channel_targets else 0:]
        if labels is not None and spatial != spatial_shape(tuple(raw.shape)):
            raise MaskTwinsError(f"{names[1]}: shape {spatial} differs from the image "
                                 f"{names[0]} {spatial_shape(tuple(raw.shape))}")
        self.channels = channel_count(tuple(raw.shape))
        self.voxel_size = getattr(raw, "voxel_size", None)  # nm (z, y, x); None for arrays
        self.raw = self._cache(raw)
        if self.channel_targets:
            self.labels = np.asarray(labels)
        else:
            self.labels = None if labels is None else self._cache(labels)
        if isinstance(self.labels, np.ndarray) and not self.channel_targets:
            check_labels(self.labels, num_classes, names[1], ignore_label)
        self.shape = as_zyx_shape(spatial_shape(tuple(raw.shape)))  # spatial, (z, y, x)

    @staticmethod
    def _cache(volume):
        if isinstance(volume, np.ndarray):
            return as_zyx(volume)
        nbytes = int(np.prod(volume.shape)) * np.dtype(volume.dtype).itemsize
        return as_zyx(volume.read_all()) if nbytes <= CACHE_BYTES else volume

    def label_plane(self, z: int) -> np.ndarray:
        """The (y, x) class labels of slice ``z``."""
        return self._read(self.labels, (slice(z, z + 1), slice(None), slice(None)))[0]

    def _read(self, volume, box):
        if len(volume.shape) == 4:
            return np.asarray(volume[(slice(None), *box)])
        if isinstance(volume, np.ndarray) or len(volume.shape) == 3:
            return np.asarray(volume[box])
        return np.asarray(volume[box[1:]])[None]

    def crop(self, start: Sequence[int], size: Sequence[int]) -> tuple[np.ndarray, np.ndarray | None]:
        """Normalised image crop, float32 (c, *size), and label crop (int64 ``size``, or float32
        (C, *size) channel targets, or None); ``size`` is (z, y, x)."""
        box = tuple(slice(s, s + n) for s, n in zip(start, size))
        image = self._read(self.raw, box)
        image = image if image.ndim == 4 else image[None]
        if not np.all(np.isfinite(image)):
            raise MaskTwinsError(f"{self.names[0]}: NaN or infinite values near voxel {tuple(start)}")
        image = normalize(image, self.stats)
        if self.labels is None:
            return image, None
        if self.channel_targets:
            return image, self.labels[(slice(None), *box)].astype(np.float32)
        labels = self._read(self.labels, box)
        if not isinstance(self.labels, np.ndarray):
            check_labels(labels, self.num_classes, self.names[1], self.ignore_label)
        return image, labels.astype(np.int64)


def crop_size_zyx(patch_size: Sequence[int], spatial_dims: int) -> tuple[int, int, int]:
    """The (z, y, x) read size of one crop: one slice for a 2-D model."""
    return (1, *patch_size) if spatial_dims == 2 else tuple(patch_size)


def check_fits(shape: Sequence[int], size: Sequence[int], name: str) -> None:
    """The crop must fit in the volume along every axis."""
    for axis, (n, s) in enumerate(zip(shape, size)):
        if s > n:
            raise MaskTwinsError(f"{name}: {'zyx'[axis]} size {n} is smaller than the crop size {s} "
                                 "(data.patch_size)")


def augment_pair(image: np.ndarray, labels: np.ndarray | None, spatial_dims: int,
                 rng: np.random.Generator, flips: str = "all") -> tuple[np.ndarray, np.ndarray | None]:
    """Random flips on every spatial axis and a random 90-degree turn in the (y, x) plane
    (``flips = 'all'``), or a random left-right flip only (``'horizontal'``).

    ``image`` and ``labels`` end in the crop's spatial axes ((y, x) or (z, y, x)), with or
    without leading channels; only the last ``spatial_dims`` axes move.
    """
    if flips == "horizontal":
        if rng.random() < 0.5:
            image = np.flip(image, -1)
            labels = None if labels is None else np.flip(labels, -1)
        return image, labels
    for axis in range(-spatial_dims, 0):
        if rng.random() < 0.5:
            image = np.flip(image, axis)
            labels = None if labels is None else np.flip(labels, axis)
    if image.shape[-1] == image.shape[-2]:
        turns = int(rng.integers(4))
        image = np.rot90(image, turns, axes=(-2, -1))
        labels = None if labels is None else np.rot90(labels, turns, axes=(-2, -1))
    return image, labels


def foreground_voxels(crops: VolumeCrops, max_voxels: int = 4_000_000) -> np.ndarray:
    """(N, 3) int64 (z, y, x) positions of labeled foreground (label > 0, not the ignore label)
    voxels of ``crops``.

    Labels held in memory give every foreground voxel; a label volume read from disk is scanned
    on a regular sub-grid of about ``max_voxels`` voxels (positions are then multiples of the
    grid step, which is fine for choosing crops).
    """
    if crops.labels is None:
        return np.zeros((0, 3), np.int64)
    if crops.channel_targets:
        return np.argwhere(crops.labels.max(axis=0) > 0).astype(np.int64)
    if isinstance(crops.labels, np.ndarray):
        return np.argwhere(_foreground(crops.labels, crops.ignore_label)).astype(np.int64)
    step = sample_step(crops.shape, max_voxels)
    sample = as_zyx(np.asarray(crops.labels[tuple(slice(None, None, step) for _ in crops.labels.shape)]))
    return np.argwhere(_foreground(sample, crops.ignore_label)).astype(np.int64) * step


def _foreground(labels: np.ndarray, ignore_label: int | None) -> np.ndarray:
    """label > 0 and not ``ignore_label``."""
    return (labels > 0) if ignore_label is None else (labels > 0) & (labels != ignore_label)


def start_around(voxel: Sequence[int], size: Sequence[int], shape: Sequence[int],
                 rng: np.random.Generator) -> list[int]:
    """A crop start (z, y, x) whose crop of ``size`` contains ``voxel``, uniformly among the
    starts that fit inside ``shape``."""
    starts = []
    for v, s, n in zip(voxel, size, shape):
        low, high = max(0, int(v) - s + 1), min(int(v), n - s)
        starts.append(int(rng.integers(low, high + 1)))
    return starts


class PatchSampler:
    """Draw batches of random crops from one :class:`VolumeCrops`.

    ``sample`` returns images (B, c, *patch) float32 and labels (B, *patch) int64, or
    (B, C, *patch) float32 for channel targets (or None).
    ``foreground_oversample`` is the probability that a crop is placed around a random labeled
    foreground voxel instead of uniformly (nnU-Net's oversampling, for rare classes); with 0 no
    extra random numbers are drawn. ``rare`` (a :class:`~.rare_classes.RareClassSampler`)
    places every crop around a pixel of a class it draws (DAFormer's rare-class sampling).
    ``flips``: see :func:`augment_pair`.
    """

    def __init__(self, crops: VolumeCrops, patch_size: Sequence[int], spatial_dims: int,
                 augment: bool = True, intensity_augment: float = 0.0,
                 foreground_oversample: float = 0.0, rare: RareClassSampler | None = None,
                 flips: str = "all"):
        self.crops = crops
        self.spatial_dims = spatial_dims
        self.size = crop_size_zyx(patch_size, spatial_dims)
        self.augment = augment
        self.intensity_augment = intensity_augment
        self.foreground_oversample = foreground_oversample
        self.rare = rare
        self.flips = flips
        check_fits(crops.shape, self.size, crops.names[0])
        self.foreground = (foreground_voxels(crops) if foreground_oversample > 0
                           else np.zeros((0, 3), np.int64))

    def _start(self, rng: np.random.Generator) -> list[int]:
        if self.rare is not None:
            cls, z = self.rare.draw(rng)
            y, x = pixel_of_class(self.crops.label_plane(z), cls, rng)
            return start_around((z, y, x), self.size, self.crops.shape, rng)
        if self.foreground_oversample > 0 and rng.random() < self.foreground_oversample \
                and len(self.foreground):
            voxel = self.foreground[int(rng.integers(len(self.foreground)))]
            return start_around(voxel, self.size, self.crops.shape, rng)
        return [int(rng.integers(0, n - s + 1)) for n, s in zip(self.crops.shape, self.size)]

    def one_crop(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
        start = self._start(rng)
        image, labels = self.crops.crop(start, self.size)
        if self.spatial_dims == 2:
            image, labels = image[:, 0], None if labels is None else labels[..., 0, :, :]
        if self.augment:
            image, labels = augment_pair(image, labels, self.spatial_dims, rng, self.flips)
        if self.intensity_augment > 0:
            s = self.intensity_augment
            image = image * np.float32(rng.uniform(1 - s, 1 + s)) + np.float32(rng.uniform(-s, s))
        return np.ascontiguousarray(image), None if labels is None else np.ascontiguousarray(labels)

    def sample(self, batch: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
        return stack_crops([self.one_crop(rng) for _ in range(batch)])


def stack_crops(pairs: list[tuple[np.ndarray, np.ndarray | None]]
                ) -> tuple[np.ndarray, np.ndarray | None]:  # fmt: skip
    """(image (c, *patch), labels) crops -> images (B, c, *patch) float32 and labels (B, *patch)
    int64, (B, C, *patch) float32 for channel targets (float crops), or None."""
    images = np.stack([p[0] for p in pairs]).astype(np.float32, copy=False)
    if pairs[0][1] is None:
        return images, None
    channel_targets = pairs[0][1].dtype.kind == "f"
    return images, np.stack([p[1] for p in pairs]).astype(np.float32 if channel_targets else np.int64)


class SamplerMix:
    """Crops from several volumes: each crop first picks a volume's :class:`PatchSampler`
    (probabilities proportional to ``weights``), then a place in it.

    With one volume no volume is drawn, so the random stream (and every batch) is that of the
    sampler alone.
    """

    def __init__(self, samplers: Sequence[PatchSampler], weights: Sequence[float]):
        if not samplers or len(samplers) != len(weights):
            raise ValueError("one weight per sampler, at least one sampler")
        total = float(sum(weights))
        if not total > 0:
            raise ValueError(f"weights {list(weights)} must have a positive sum")
        self.samplers = list(samplers)
        self.probabilities = np.asarray(weights, np.float64) / total

    def pick(self, rng: np.random.Generator) -> int:
        """The index of the volume of the next crop."""
        if len(self.samplers) == 1:
            return 0
        return int(rng.choice(len(self.samplers), p=self.probabilities))

    def sample(self, batch: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
        """As :meth:`PatchSampler.sample`, each crop from a volume drawn by weight."""
        if len(self.samplers) == 1:
            return self.samplers[0].sample(batch, rng)
        return stack_crops([self.samplers[self.pick(rng)].one_crop(rng) for _ in range(batch)])
