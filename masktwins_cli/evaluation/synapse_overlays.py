"""Synapse detection overlays: PNGs of raw sections with TP / FN / FP points marked.

Each chosen z-section becomes one RGB PNG ``synapses_z{z:04d}.png``: the raw section in grey
(:func:`~masktwins_cli.evaluation.overlays.grey_slice`), and a marker for every point whose voxel
lies within ``depth`` sections of it (|z_point - z| <= depth), at its (y, x) voxel:

* colour: true positive blue ``(0, 0, 255)`` (at the predicted position), false negative red
  ``(255, 0, 0)`` (at the true position), false positive green ``(0, 255, 0)``; opaque;
* shape: pre points a filled disk (pixels with dy^2 + dx^2 <= r^2), post points a hollow ring
  ((r - 1)^2 < dy^2 + dx^2 <= r^2), ``r`` = ``radius`` pixels. Posts are drawn first, pres on top.

Default sections: the z of the points, most points within ``depth`` first, no two chosen within
``depth`` of each other, up to ``max_sections``; evenly spaced sections when there are no points.
Files are written atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MaskTwinsError
from ..synapse.points import point_voxels
from .overlays import FN_COLOUR, FP_COLOUR, TP_COLOUR, default_slices, grey_slice, write_png_atomic

MARKER_RADIUS = 3  # pixels
DEPTH = 2  # sections


def _layers(classes) -> list[tuple[np.ndarray, tuple[int, int, int], bool]]:
    """(points (K, 3), colour, filled) in drawing order: posts (hollow) then pres (filled)."""
    return [(classes.post_fn, FN_COLOUR, False), (classes.post_fp, FP_COLOUR, False),
            (classes.post_tp, TP_COLOUR, False), (classes.pre_fn, FN_COLOUR, True),
            (classes.pre_fp, FP_COLOUR, True), (classes.pre_tp, TP_COLOUR, True)]


def choose_sections(classes, n_sections: int, max_sections: int = 4, depth: int = DEPTH) -> list[int]:
    """Sections with the most points within ``depth`` (module docstring), sorted."""
    z = np.concatenate([point_voxels(points.reshape(-1, 3))[:, 0] for points, _, _ in _layers(classes)])
    z = z[(z >= 0) & (z < n_sections)]
    if z.size == 0:
        return default_slices(n_sections, max_sections)
    candidates = np.unique(z)
    counts = np.array([np.count_nonzero(np.abs(z - c) <= depth) for c in candidates])
    chosen: list[int] = []
    for index in np.lexsort((candidates, -counts)):  # most points first, then lowest z
        if all(abs(int(candidates[index]) - c) > depth for c in chosen):
            chosen.append(int(candidates[index]))
        if len(chosen) == max_sections:
            break
    return sorted(chosen)


def marker_mask(shape: tuple[int, int], centre: tuple[int, int], radius: int, filled: bool) -> np.ndarray:
    """bool (Y, X): a filled disk or a one-pixel ring of ``radius`` around ``centre`` (y, x)."""
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    distance2 = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2
    inside = distance2 <= radius**2
    return inside if filled else inside & (distance2 > (radius - 1) ** 2)


def section_rgb(raw: np.ndarray, classes, z: int, depth: int = DEPTH,
                radius: int = MARKER_RADIUS) -> np.ndarray:
    """(Y, X, 3) uint8: the grey section ``raw`` (Y, X) with the markers of section ``z``."""
    grey = np.clip(np.rint(grey_slice(raw)), 0, 255).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    for points, colour, filled in _layers(classes):
        for pz, py, px in point_voxels(points.reshape(-1, 3)):
            if abs(int(pz) - z) <= depth:
                rgb[marker_mask(grey.shape, (int(py), int(px)), radius, filled)] = colour
    return rgb


def write_synapse_overlays(raw: Any, classes, out_dir: Path, sections: Sequence[int] | None = None,
                           max_sections: int = 4, depth: int = DEPTH,
                           radius: int = MARKER_RADIUS) -> list[Path]:
    """Write one PNG per section of ``raw`` ((Z, Y, X), sliceable by z); return the paths."""
    n_sections = int(raw.shape[0])
    chosen = choose_sections(classes, n_sections, max_sections, depth) if sections is None else [
        int(z) for z in sections]
    for z in chosen:
        if not 0 <= z < n_sections:
            raise MaskTwinsError(f"overlay section {z} is out of range for {n_sections} sections")
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MaskTwinsError(f"cannot create overlay folder {out_dir}: {exc}") from exc
    paths = []
    for z in chosen:
        path = out_dir / f"synapses_z{z:04d}.png"
        write_png_atomic(section_rgb(np.asarray(raw[z]), classes, z, depth, radius), path)
        paths.append(path)
    return paths
