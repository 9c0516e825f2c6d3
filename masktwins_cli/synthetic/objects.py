"""Organelles: mitochondria (label 1) and dark distractors (vesicles, lysosome-like blobs).

Objects are capsules in world coordinates (see :mod:`shapes`), rasterised per bounding box,
clipped to the interior of one cell (they may not cross a membrane) and painted onto the
clean image by multiplying the local intensity with a transmission pattern. Placement is
greedy: random candidates are drawn until the covered voxel fraction reaches the style's
target or an attempt budget runs out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from masktwins_cli.synthetic.shapes import Capsule, Footprint, Grid, Tissue, random_axis, rasterise
from masktwins_cli.synthetic.styles import DomainStyle

MITO_RADIUS_NM = (32.0, 50.0)
"""Range of mitochondrion radii (half-width) at ``mito_scale = 1``."""
MITO_ASPECT = (1.5, 4.0)
"""Range of mitochondrion aspect ratios (total length / width)."""
MITO_Z_STRETCH = 3.0
"""Mitochondria are this many times more extended along z (they follow the neurites)."""
CRISTAE_PERIOD_NM = 30.0
"""Spacing of the cristae at ``mito_scale = 1``."""
BLOB_RADIUS_NM = (30.0, 60.0)
"""Range of radii of the lysosome-like dark blobs."""
VESICLE_RADIUS_NM = (15.0, 27.0)
"""Range of vesicle radii (3-5 px at 5 nm pixels)."""
DENSITY_JITTER = 0.3
"""Each scene (2D section or 3D volume) scales the style's fractions by U(1 -+ this)."""
MIN_KEPT = 0.85
"""A candidate is rejected if clipping to its cell removes more than 15 % of it."""


@dataclass
class Canvas:
    """Mutable rendering state of one scene, all arrays (z, y, x).

    ``image``: float32 clean intensity; ``labels``: uint8 mitochondria; ``occupied``: bool,
    voxels already used by an object; ``texture``: float32 unit-std grain (for blobs).
    """

    image: np.ndarray
    labels: np.ndarray
    occupied: np.ndarray
    texture: np.ndarray


def clip_to_cell(fp: Footprint, tissue: Tissue, canvas: Canvas,
                 min_voxels: int) -> np.ndarray | None:
    """Keep the part of ``fp`` inside its main cell and off the membranes.

    Returns the kept bool mask (same shape as ``fp.mask``), or None if the object would be
    cut by more than ``1 - MIN_KEPT``, overlaps another object, or keeps < ``min_voxels``.
    """
    ids = tissue.cell_id[fp.box][fp.mask]
    main = np.bincount(ids).argmax()
    margin = 0.5 * tissue.membrane_width_px[fp.box] + 1.0
    keep = fp.mask & (tissue.cell_id[fp.box] == main) & (tissue.membrane_dist_px[fp.box] > margin)
    n_keep = int(keep.sum())
    if n_keep < max(min_voxels, MIN_KEPT * fp.mask.sum()):
        return None
    if canvas.occupied[fp.box][keep].any():
        return None
    return keep


def _random_centre(grid: Grid, z_stretch: float, rng: np.random.Generator,
                   radius_nm: float) -> tuple[float, float, float]:
    """Uniform centre (effective nm) in the grid; planar grids get a small z offset."""
    ext = grid.extent_nm
    z = rng.uniform(0, ext[0])
    if grid.planar:
        z = ext[0] / 2 + rng.uniform(-0.35, 0.35) * radius_nm * z_stretch
    return (z / z_stretch, rng.uniform(0, ext[1]), rng.uniform(0, ext[2]))


def sample_mito(grid: Grid, style: DomainStyle, rng: np.random.Generator) -> Capsule:
    """A random mitochondrion capsule: radius, aspect 1.5-4, random azimuth and tilt."""
    radius = rng.uniform(*MITO_RADIUS_NM) * style.mito_scale
    aspect = rng.uniform(*MITO_ASPECT)
    axis = random_axis(rng, 25.0 if grid.planar else 40.0)
    centre = _random_centre(grid, MITO_Z_STRETCH, rng, radius)
    return Capsule(centre, axis, radius * (aspect - 1), radius, MITO_Z_STRETCH)


def sample_blob(grid: Grid, style: DomainStyle, rng: np.random.Generator) -> Capsule:
    """A random lysosome-like blob: rounded capsule (aspect 1-1.6), z-stretch 2."""
    radius = rng.uniform(*BLOB_RADIUS_NM)
    aspect = rng.uniform(1.0, 1.6)
    centre = _random_centre(grid, 2.0, rng, radius)
    return Capsule(centre, random_axis(rng, 60.0), radius * (aspect - 1), radius, 2.0)


def _gauss(x: np.ndarray, mu: float, sigma: float) -> np.ndarray:
    """Unnormalised Gaussian bump exp(-((x - mu) / sigma)**2 / 2)."""
    return np.exp(-0.5 * ((x - mu) / sigma) ** 2)


def mito_transmission(fp: Footprint, style: DomainStyle, grid: Grid,
                      rng: np.random.Generator) -> np.ndarray:
    """Intensity factor (bz, by, bx) float32 of a mitochondrion: matrix, cristae, outline.

    Dark matrix (``mito_darkness``), lighter cristae bands across the long axis (period
    ``CRISTAE_PERIOD_NM * mito_scale``), and a double outer membrane (two dark lines ~0.8 and
    ~2.3 px inside the surface, ``mito_outline_darkness``).
    """
    period = CRISTAE_PERIOD_NM * style.mito_scale / grid.pixel_nm * rng.uniform(0.8, 1.25)
    phase = rng.uniform(0, 2 * np.pi)
    wobble = 0.25 * period * np.sin(fp.depth_px * rng.uniform(0.2, 0.5) + phase)
    stripes = np.cos(2 * np.pi * (fp.along_px + wobble) / period + phase)
    bands = np.clip((stripes - 0.3) / 0.5, 0, 1) * (fp.depth_px > 3.0)
    contrast = style.cristae_contrast * rng.uniform(0.7, 1.2)
    outline = _gauss(fp.depth_px, 0.8, 0.55) + 0.8 * _gauss(fp.depth_px, 2.3, 0.55)
    dark = style.mito_darkness * rng.uniform(0.85, 1.15)
    factor = 1 - dark * (1 - contrast * bands) - style.mito_outline_darkness * outline
    return np.clip(factor, 0.03, 1).astype(np.float32)


def blob_transmission(fp: Footprint, style: DomainStyle, canvas: Canvas,
                      rng: np.random.Generator) -> np.ndarray:
    """Intensity factor of a lysosome-like blob: dark, coarse granular interior, thin rim.

    A third of the blobs get a lighter core (a dark rounded compartment with a dark rim).
    """
    dark = style.blob_darkness * rng.uniform(0.75, 1.25)
    grain = 1 + 0.45 * canvas.texture[fp.box]
    core = 1.0
    if rng.uniform() < 1 / 3:
        core = 1 - 0.5 * np.clip((fp.depth_px - 3.0) / 2.0, 0, 1)
    factor = 1 - dark * grain * core - 0.2 * _gauss(fp.depth_px, 0.8, 0.6)
    return np.clip(factor, 0.03, 1).astype(np.float32)


def vesicle_transmission(fp: Footprint, style: DomainStyle,
                         rng: np.random.Generator) -> np.ndarray:
    """Intensity factor of a vesicle: a dark membrane ring, or (20 %) a dense-core disc."""
    dark = 0.9 * style.membrane_darkness * rng.uniform(0.8, 1.1)
    if rng.uniform() < 0.2:
        factor = 1 - dark * np.clip(fp.depth_px / 1.5, 0, 1)
    else:
        factor = 0.97 - dark * _gauss(fp.depth_px, 0.8, 0.6)
    return np.clip(factor, 0.03, 1).astype(np.float32)


def _paint(canvas: Canvas, fp: Footprint, keep: np.ndarray, factor: np.ndarray,
           label: bool) -> int:
    """Multiply ``factor`` into the kept voxels, mark them occupied (and labelled)."""
    sub = canvas.image[fp.box]
    sub[keep] *= factor[keep]
    canvas.occupied[fp.box] |= keep
    if label:
        canvas.labels[fp.box][keep] = 1
    return int(keep.sum())


def _jitter(rng: np.random.Generator) -> float:
    """Per-scene density factor, uniform in ``1 +- DENSITY_JITTER``."""
    return float(rng.uniform(1 - DENSITY_JITTER, 1 + DENSITY_JITTER))


def _fill(grid: Grid, target: float, jitter: float, draw: Callable[[float], int]) -> None:
    """Greedily cover ``target * jitter`` of the grid's voxels.

    ``draw(limit)`` tries one candidate, paints it only if it covers at most ``limit``
    voxels, and returns the voxels painted (0 if rejected). The limit keeps the final
    coverage within ~25 % of the goal even for small grids.
    """
    goal = target * jitter * float(np.prod(grid.shape))
    covered, attempts, budget = 0, 0, 200
    while covered < goal and attempts < budget:
        got = draw(1.25 * goal - covered)
        covered += got
        attempts += 1
        budget = min(budget + (2 if got else 0), 4000)


def place_mitochondria(canvas: Canvas, grid: Grid, tissue: Tissue, style: DomainStyle,
                       rng: np.random.Generator) -> None:
    """Add mitochondria (label 1) until ~``style.mito_fraction`` (x scene jitter) is covered."""
    def draw(limit: float) -> int:
        fp = rasterise(grid, sample_mito(grid, style, rng))
        keep = None if fp is None else clip_to_cell(fp, tissue, canvas, 30)
        if keep is None or keep.sum() > limit:
            return 0
        return _paint(canvas, fp, keep, mito_transmission(fp, style, grid, rng), True)
    _fill(grid, style.mito_fraction, _jitter(rng), draw)


def place_blobs(canvas: Canvas, grid: Grid, tissue: Tissue, style: DomainStyle,
                rng: np.random.Generator) -> None:
    """Add dark lysosome-like blobs until ~``style.blob_fraction`` (x scene jitter) is covered."""
    def draw(limit: float) -> int:
        fp = rasterise(grid, sample_blob(grid, style, rng))
        keep = None if fp is None else clip_to_cell(fp, tissue, canvas, 20)
        if keep is None or keep.sum() > limit:
            return 0
        return _paint(canvas, fp, keep, blob_transmission(fp, style, canvas, rng), False)
    _fill(grid, style.blob_fraction, _jitter(rng), draw)


def _vesicle_cluster(canvas: Canvas, grid: Grid, tissue: Tissue, style: DomainStyle,
                     rng: np.random.Generator) -> int:
    """Paint one cluster of 4-16 vesicles around a random centre; returns voxels covered."""
    centre = np.asarray(_random_centre(grid, 1.0, rng, 20.0))
    spread = np.array([0.0 if grid.planar else 60.0, 55.0, 55.0])
    covered = 0
    for _ in range(int(rng.integers(4, 17))):
        radius = rng.uniform(*VESICLE_RADIUS_NM)
        c = tuple(float(v) for v in centre + rng.normal(0, 1, 3) * spread)
        if grid.planar:
            c = (c[0] + rng.uniform(-0.5, 0.5) * radius, c[1], c[2])
        fp = rasterise(grid, Capsule(c, (1.0, 0.0, 0.0), 0.0, radius, 1.0))
        keep = None if fp is None else clip_to_cell(fp, tissue, canvas, 4)
        if keep is not None:
            covered += _paint(canvas, fp, keep, vesicle_transmission(fp, style, rng), False)
    return covered


def place_vesicles(canvas: Canvas, grid: Grid, tissue: Tissue, style: DomainStyle,
                   rng: np.random.Generator) -> None:
    """Add vesicle clusters until ~``style.vesicle_fraction`` (x scene jitter) is covered."""
    _fill(grid, style.vesicle_fraction, _jitter(rng),
          lambda limit: _vesicle_cluster(canvas, grid, tissue, style, rng))
