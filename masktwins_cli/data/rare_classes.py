"""Rare-class sampling (DAFormer, Hoyer et al. 2022): source crops are placed so that rare
classes are seen more often.

Per class c, f_c is its share of the labelled source pixels; a crop first draws a class with
probability softmax((1 - f_c) / T) (temperature T: DAFormer's 0.01 favours the rare classes
strongly, a large T tends to uniform), then a slice (z) holding at least ``min_pixels`` of it
(DAFormer: 3000), then a pixel of that class in the slice, and the crop is placed around it.
(DAFormer instead re-draws random crops of the chosen image, up to 10 times, until one holds
enough of the class; centring on a pixel of the class reaches the same goal in one draw.)

Class statistics per slice come from ``prepare`` (the ``class_pixels`` it records) or from one
pass over the labels.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from ..errors import MaskTwinsError


def count_class_pixels(planes: Iterable[np.ndarray], num_classes: int) -> np.ndarray:
    """(Z, K) int64 pixels of each class 0..K-1 per (y, x) label slice of ``planes`` (read one
    at a time); other values (the ignore label) are not counted."""
    rows = []
    for plane in planes:
        plane = np.asarray(plane).ravel()
        plane = plane[(plane >= 0) & (plane < num_classes)].astype(np.int64)
        rows.append(np.bincount(plane, minlength=num_classes)[:num_classes])
    return np.stack(rows)


def recorded_class_pixels(labels_uri: str, depth: int, num_classes: int) -> np.ndarray | None:
    """The per-slice class counts ``prepare`` recorded for a zarr label volume (the container's
    ``masktwins_prepare.class_pixels``), if they fit (``depth`` rows, at least ``num_classes``
    columns); else None."""
    from ..io.backends import parse_uri

    try:
        import zarr

        location = parse_uri(labels_uri)
        if location.kind != "zarr":
            return None
        attrs = zarr.open_group(str(location.container), mode="r").attrs.get("masktwins_prepare", {})
        pixels = np.asarray(attrs.get("class_pixels"), np.int64)
    except Exception:  # no record, another layout: count instead
        return None
    if pixels.ndim != 2 or pixels.shape[0] != depth or pixels.shape[1] < num_classes:
        return None
    return pixels[:, :num_classes]


def class_probabilities(class_pixels: np.ndarray, temperature: float) -> np.ndarray:
    """(K,) softmax((1 - f_c) / T) over the classes that occur (0 for the others)."""
    totals = class_pixels.sum(axis=0).astype(np.float64)
    present = totals > 0
    if not present.any():
        raise MaskTwinsError("rare-class sampling: the source labels hold no labelled pixel")
    share = totals / totals.sum()
    logits = np.where(present, (1.0 - share) / temperature, -np.inf)
    weights = np.exp(logits - logits[present].max())
    return weights / weights.sum()


class RareClassSampler:
    """Draws (class, slice) pairs for rare-class sampling from per-slice class counts."""

    def __init__(self, class_pixels: np.ndarray, temperature: float, min_pixels: int = 3000):
        class_pixels = np.asarray(class_pixels, np.int64)
        self.slices = [np.flatnonzero(class_pixels[:, c] >= min_pixels)
                       for c in range(class_pixels.shape[1])]
        usable = np.array([len(s) > 0 for s in self.slices])
        if not usable.any():  # tiny volumes: any slice that holds the class at all
            self.slices = [np.flatnonzero(class_pixels[:, c] > 0) for c in range(class_pixels.shape[1])]
            usable = np.array([len(s) > 0 for s in self.slices])
        probabilities = class_probabilities(class_pixels, temperature) * usable
        self.probabilities = probabilities / probabilities.sum()

    def draw(self, rng: np.random.Generator) -> tuple[int, int]:
        """(class, slice index)."""
        cls = int(rng.choice(len(self.probabilities), p=self.probabilities))
        return cls, int(self.slices[cls][int(rng.integers(len(self.slices[cls])))])


def pixel_of_class(plane: np.ndarray, cls: int, rng: np.random.Generator) -> Sequence[int]:
    """A random (y, x) pixel of class ``cls`` in a (y, x) label slice."""
    where = np.argwhere(plane == cls)
    return where[int(rng.integers(len(where)))]
