"""Sliding-window prediction on a global window grid, blended with a Gaussian importance map.

Windows sit on one grid over the whole volume, the grid of MONAI's ``sliding_window_inference``
(stride ``int(window * (1 - overlap))``, the last window of an axis pulled back to end at the
border, an axis shorter than the window padded by reflection on both sides). A block is
predicted from exactly the grid windows that touch it, and only its own voxels are accumulated,
so every voxel gets the same windows and weights whatever the block size: blockwise output
equals whole-volume output up to float summation order, and a block costs no wasted windows
beyond the ones straddling its borders.

A 2-D model runs on (1, y, x) windows of a (z, y, x) volume (slices never mix). Images are
channel-first (c, z, y, x) here (a one-channel volume may leave the channel axis out). Probabilities
(softmax over classes, or a sigmoid per channel for synapse models), not logits, are blended;
with flip test-time augmentation each window's probability is the mean over every flip of its
spatial axes.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from monai.data.utils import compute_importance_map
from torch import nn

from ..config.schema import Recipe
from .device import autocast_for

GAUSSIAN_SIGMA_SCALE = 0.125  # sigma = 0.125 x window, MONAI's default


def axis_starts(size: int, window: int, stride: int) -> list[int]:
    """Window starts along one axis of ``size`` voxels (MONAI's grid). An axis shorter than the
    window has one window starting at -(window - size) // 2 (reflection-padded)."""
    if size <= window:
        return [-((window - size) // 2)]
    count = next(d for d in itertools.count() if d * stride + window >= size) + 1
    return [min(d * stride, size - window) for d in range(count)]


@dataclass(frozen=True)
class WindowGrid:
    """The global window grid over a (z, y, x) volume, in voxels. ``window`` and ``stride`` are
    (z, y, x); a 2-D model has window and stride 1 along z."""

    shape: tuple[int, int, int]
    window: tuple[int, int, int]
    stride: tuple[int, int, int]

    @classmethod
    def create(cls, shape_zyx: Sequence[int], window: Sequence[int], overlap: float,
               spatial_dims: int) -> WindowGrid:
        """``window``: (y, x) for a 2-D model, (z, y, x) for a 3-D one; ``overlap`` in [0, 1)."""
        window3 = (1, *window) if spatial_dims == 2 else tuple(window)
        if len(window3) != 3:
            raise ValueError(f"window {tuple(window)} does not fit a {spatial_dims}-D model")
        stride = tuple(max(1, int(w * (1 - overlap))) if n > w else w
                       for w, n in zip(window3, shape_zyx))
        return cls(tuple(int(n) for n in shape_zyx), tuple(int(w) for w in window3), stride)

    def starts(self, axis: int) -> list[int]:
        return axis_starts(self.shape[axis], self.window[axis], self.stride[axis])

    def touching(self, box: Sequence[slice]) -> list[list[int]]:
        """Per axis, the starts of the windows that cover at least one voxel of ``box``."""
        return [[s for s in self.starts(axis) if s < b.stop and s + self.window[axis] > b.start]
                for axis, b in enumerate(box)]

    def span(self, box: Sequence[slice]) -> tuple[slice, ...]:
        """The box covered by the windows touching ``box`` (may reach outside the volume only
        along an axis shorter than the window): what a block must read, before padding."""
        return tuple(slice(min(starts), max(starts) + w)
                     for starts, w in zip(self.touching(box), self.window))


    def layout(self, box: Sequence[slice]) -> tuple[tuple[slice, ...], tuple[tuple[int, int], ...],
                                                  tuple[tuple[int, ...], ...], tuple[slice, ...]]:
        """What predicting ``box`` takes: the voxels to read (inside the volume), their
        (before, after) reflection padding, the window starts per axis and ``box`` itself, the
        last two relative to the padded read."""
        span = self.span(box)
        read, pad = read_and_pad_box(span, self.shape)
        starts = tuple(tuple(s - b.start for s in axis) for axis, b in zip(self.touching(box), span))
        inner = tuple(slice(b.start - s.start, b.stop - s.start) for b, s in zip(box, span))
        return read, pad, starts, inner


def read_and_pad_box(span: Sequence[slice], shape: Sequence[int],
                     ) -> tuple[tuple[slice, ...], tuple[tuple[int, int], ...]]:
    """The part of ``span`` inside the volume, and the (before, after) reflection padding that
    grows it back to ``span``."""
    read = tuple(slice(max(0, s.start), min(n, s.stop)) for s, n in zip(span, shape))
    pad = tuple((r.start - s.start, s.stop - r.stop) for s, r in zip(span, read))
    return read, pad


def importance_map(window: Sequence[int], blend: str, device: torch.device) -> torch.Tensor:
    """(z, y, x) float32 window weights: Gaussian (sigma 0.125 x window, clamped at 1e-3 of the
    peak like MONAI) or constant."""
    return compute_importance_map(tuple(window), mode=blend, sigma_scale=GAUSSIAN_SIGMA_SCALE,
                                  device=device, dtype=torch.float32)


def flips_for(spatial_dims: int, tta: bool) -> list[tuple[int, ...]]:
    """Tensor dims to flip for each test-time view of a (B, C, *spatial) batch: [()] without
    TTA, else every subset of the spatial axes (4 views in 2-D, 8 in 3-D)."""
    if not tta:
        return [()]
    axes = range(2, 2 + spatial_dims)
    return [dims for k in range(spatial_dims + 1) for dims in itertools.combinations(axes, k)]


@dataclass(frozen=True)
class WindowSettings:
    """How windows are predicted and blended: ``window`` (y, x) or (z, y, x) voxels, ``overlap``
    in [0, 1), ``batch_size`` windows per forward pass, ``blend`` gaussian or constant,
    ``activation`` softmax or sigmoid, ``channels`` the output channels kept (None: all),
    ``amp`` bf16 autocast on CUDA, ``tta`` flip test-time augmentation."""

    spatial_dims: int
    window: tuple[int, ...]
    overlap: float = 0.25
    batch_size: int = 4
    blend: str = "gaussian"
    activation: str = "softmax"
    channels: tuple[int, ...] | None = None
    amp: bool = True
    tta: bool = False

    def grid(self, shape_zyx: Sequence[int]) -> WindowGrid:
        return WindowGrid.create(shape_zyx, self.window, self.overlap, self.spatial_dims)


@torch.no_grad()
def blend_windows(model: nn.Module, data: torch.Tensor, positions: Sequence[Sequence[int]],
                  inner: Sequence[slice], settings: WindowSettings,
                  weights: torch.Tensor | None = None) -> torch.Tensor:
    """Blended probabilities of the ``inner`` box of ``data``.

    Args:
        model: network in eval mode on ``data``'s device; logits (B, C, *spatial).
        data: float32 (c, z, y, x), normalised and padded, on the model's device.
        positions: (z, y, x) window starts in ``data``'s coordinates.
        inner: the (z, y, x) box of ``data`` to return; a voxel no window covers gets 0.
        settings: window size, batch size, blending, activation, channels kept, amp, TTA.
        weights: the (z, y, x) importance map (default: built from ``settings``).

    Returns:
        float32 (C, *inner shape) on ``data``'s device, C = kept channels.
    """
    if settings.activation not in ("softmax", "sigmoid"):
        raise ValueError(f"unknown activation {settings.activation!r}; expected softmax or sigmoid")
    window = (1, *settings.window) if settings.spatial_dims == 2 else tuple(settings.window)
    if weights is None:
        weights = importance_map(window, settings.blend, data.device)
    inner_shape = tuple(s.stop - s.start for s in inner)
    total = weight_sum = None
    positions = [tuple(p) for p in positions]
    flips = flips_for(settings.spatial_dims, settings.tta)
    for first in range(0, len(positions), settings.batch_size):
        chosen = positions[first:first + settings.batch_size]
        batch = torch.stack([data[(slice(None), *(slice(s, s + w) for s, w in zip(p, window)))]
                             for p in chosen])  # (B, c, z, y, x)
        batch = batch[:, :, 0] if settings.spatial_dims == 2 else batch  # (B, c, *spatial)
        probs = sum(_probabilities(model, batch, dims, settings) for dims in flips) / len(flips)
        if settings.channels is not None:
            probs = probs[:, list(settings.channels)]
        if settings.spatial_dims == 2:
            probs = probs[:, :, None]  # (B, C, 1, y, x)
        if total is None:
            total = torch.zeros((probs.shape[1], *inner_shape), dtype=torch.float32, device=data.device)
            weight_sum = torch.zeros(inner_shape, dtype=torch.float32, device=data.device)
        for position, prob in zip(chosen, probs):
            into, take = _overlap(position, window, inner)
            if into is None:
                continue
            weighted = weights[take]
            total[(slice(None), *into)] += prob[(slice(None), *take)].float() * weighted
            weight_sum[into] += weighted
    if total is None:
        raise ValueError("no window covers the requested box")
    return total / weight_sum.clamp_min(torch.finfo(torch.float32).tiny)


def _probabilities(model: nn.Module, batch: torch.Tensor, dims: tuple[int, ...],
                   settings: WindowSettings) -> torch.Tensor:
    """Probabilities of one flipped view, flipped back."""
    view = torch.flip(batch, dims) if dims else batch
    with autocast_for(batch.device, settings.amp):
        logits = model(view)
    probs = torch.sigmoid(logits.float()) if settings.activation == "sigmoid" else \
        torch.softmax(logits.float(), dim=1)
    return torch.flip(probs, dims) if dims else probs


def _overlap(position: Sequence[int], window: Sequence[int], inner: Sequence[slice],
             ) -> tuple[tuple[slice, ...] | None, tuple[slice, ...] | None]:
    """Where a window at ``position`` meets ``inner``: (box in the inner buffer, box in the
    window), or (None, None) when they do not meet."""
    into, take = [], []
    for p, w, box in zip(position, window, inner):
        lo, hi = max(p, box.start), min(p + w, box.stop)
        if lo >= hi:
            return None, None
        into.append(slice(lo - box.start, hi - box.start))
        take.append(slice(lo - p, hi - p))
    return tuple(into), tuple(take)


def predict_box(model: nn.Module, raw: np.ndarray, pad: Sequence[tuple[int, int]],
                positions: Sequence[Sequence[int]], inner: Sequence[slice], settings: WindowSettings,
                device: torch.device, shift: float | Sequence[float] = 0.0,
                scale: float | Sequence[float] = 1.0,
                weights: torch.Tensor | None = None) -> np.ndarray:
    """Probabilities of a box from the raw voxels its windows read.

    Args:
        raw: (z, y, x) or channel-first (c, z, y, x) voxels as read (any real dtype), before
            normalisation and padding.
        pad: (before, after) reflection padding per spatial axis (only along axes shorter than
            the window).
        positions: (z, y, x) window starts relative to the padded array.
        inner: the box to return, relative to the padded array.
        shift, scale: intensity normalisation (raw - shift) / scale, applied on ``device``; one
            value, or one per channel.

    Returns:
        float32 (C, *inner shape) numpy array.
    """
    raw = raw if raw.ndim == 4 else raw[None]
    if any(p != (0, 0) for p in pad):
        raw = np.pad(raw, ((0, 0), *pad), mode="reflect")
    if not raw.dtype.isnative:  # e.g. big-endian TIFF or HDF5: torch takes native order only
        raw = raw.astype(raw.dtype.newbyteorder("="))
    tensor = torch.from_numpy(np.ascontiguousarray(raw))
    if device.type == "cuda":
        tensor = tensor.pin_memory().to(device, non_blocking=True)
    per_channel = (-1, 1, 1, 1)
    shift = torch.as_tensor(shift, dtype=torch.float32, device=tensor.device)
    scale = torch.as_tensor(scale, dtype=torch.float32, device=tensor.device)
    data = (tensor.to(torch.float32) - shift.reshape(per_channel if shift.ndim else ())) / \
        scale.reshape(per_channel if scale.ndim else ())
    return blend_windows(model, data, positions, inner, settings, weights).cpu().numpy()


def recipe_window_settings(recipe: Recipe, window: Sequence[int] | None = None,
                           channels: tuple[int, ...] | None | str = "task",
                           tta: bool | None = None) -> WindowSettings:
    """The sliding-window settings of a recipe, in one place for inference and validation:
    ``window`` (default ``infer.window``, else ``data.patch_size``), ``infer`` overlap, batch
    size and blending, the task's activation (sigmoid channels for synapse, softmax classes
    otherwise), the kept ``channels`` (``"task"``: the foreground class 1 of a segmentation
    model, every channel of a synapse model; None: every channel), ``train.amp`` autocast and
    ``tta`` (default ``infer.tta``)."""
    synapse = recipe.model.task == "synapse"
    dims = recipe.model.spatial_dims
    window = tuple(window or recipe.infer.window or recipe.data.patch_size)[-dims:]
    if channels == "task":
        channels = None if synapse else (1,)
    return WindowSettings(dims, window, recipe.infer.overlap, recipe.infer.batch_size,
                          recipe.infer.blend, "sigmoid" if synapse else "softmax", channels,
                          recipe.train.amp, recipe.infer.tta if tta is None else tta)


def predict_array(model: nn.Module, block: np.ndarray, settings: WindowSettings,
                  device: torch.device) -> np.ndarray:
    """Probabilities (C, z, y, x) of a whole in-memory, normalised float32 (z, y, x) or
    (c, z, y, x) block with ``settings`` (C: the kept channels)."""
    shape = block.shape[-3:]
    _, pad, starts, inner = settings.grid(shape).layout(tuple(slice(0, n) for n in shape))
    return predict_box(model, block, pad, list(itertools.product(*starts)), inner, settings, device)


def predict_block(model: nn.Module, block: np.ndarray, spatial_dims: int, window: Sequence[int],
                  overlap: float, batch_size: int, blend: str, device: torch.device,
                  amp: bool = True, activation: str = "softmax", tta: bool = False) -> np.ndarray:
    """Class (or channel) probabilities of a whole in-memory block.

    Args:
        model: network in eval mode on ``device``; returns logits (B, C, *spatial).
        block: float32 (z, y, x) or (c, z, y, x), already normalised.
        spatial_dims: 2 (slice by slice) or 3.
        window: (y, x) or (z, y, x) window size in voxels.
        activation: ``softmax`` (classes) or ``sigmoid`` (independent channels, e.g. pre/post).

    Returns:
        float32 (C, z, y, x) probabilities in [0, 1].
    """
    settings = WindowSettings(spatial_dims, tuple(window), overlap, batch_size, blend, activation,
                              None, amp, tta)
    return predict_array(model, block, settings, device)
