"""Synthetic EM mitochondria segmentation: a labelled source domain and a shifted target.

:func:`generate_mito_pair` renders three volumes from one seed (source, target_train,
target_test), each from an independent child generator. :func:`render_volume` renders one
domain volume:

* ``dims=2``: a stack of independent 2D sections, every slice its own random scene (cells,
  mitochondria, distractors) -- what a 2D method needs, and cheaper.
* ``dims=3``: one 3D scene in world coordinates (nm) sampled anisotropically on the style's
  voxel grid; objects extend over several consecutive sections.

The clean scene (cytoplasm texture, membranes, organelles) is then passed through the
style's imaging chain (:mod:`imaging`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from masktwins_cli.errors import MaskTwinsError
from masktwins_cli.synthetic.fields import granular_texture, smooth_field
from masktwins_cli.synthetic.imaging import image_volume
from masktwins_cli.synthetic.objects import (
    Canvas,
    place_blobs,
    place_mitochondria,
    place_vesicles,
)
from masktwins_cli.synthetic.shapes import Grid, make_tissue, membrane_profile
from masktwins_cli.synthetic.styles import SOURCE_STYLE, TARGET_STYLE, DomainStyle

DEFAULT_SHAPES = {2: (24, 256, 256), 3: (48, 160, 160)}
"""Default (z, y, x) shape of each volume; ``target_test`` gets half the z."""
MIN_YX = 32
"""Smallest allowed in-plane size (px)."""
MIN_Z = {2: 1, 3: 4}
"""Smallest allowed number of sections per dimensionality."""
BACKGROUND_CORR_NM = 1000.0
"""Correlation length of the low-frequency cytoplasm shading."""


@dataclass(frozen=True)
class SyntheticVolume:
    """One rendered volume.

    ``raw``: uint8 (z, y, x) EM-like intensities. ``labels``: uint8 (z, y, x), 0 background,
    1 mitochondrion. ``voxel_size``: (z, y, x) in nm.
    """

    raw: np.ndarray
    labels: np.ndarray
    voxel_size: tuple[float, float, float]


@dataclass(frozen=True)
class MitoDomainPair:
    """Source (labelled for training), target_train (labels for the Oracle/metrics only) and
    target_test volumes; ``styles`` = ``{"source": asdict(style), "target": asdict(style)}``."""

    source: SyntheticVolume
    target_train: SyntheticVolume
    target_test: SyntheticVolume
    styles: dict


def _check_dims(dims: int) -> None:
    """Raise MaskTwinsError unless ``dims`` is 2 or 3."""
    if isinstance(dims, bool) or dims not in (2, 3):
        raise MaskTwinsError(f"synthetic dims: expected 2 or 3, got {dims!r}")


def _check_shape(shape, dims: int) -> tuple[int, int, int]:
    """Validate a (z, y, x) shape for ``dims``; returns it as a tuple of ints."""
    ok = isinstance(shape, (tuple, list)) and len(shape) == 3 and all(
        isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in shape)
    if not ok:
        raise MaskTwinsError(f"synthetic shape: expected 3 integers (z, y, x), got {shape!r}")
    z, y, x = (int(n) for n in shape)
    if y < MIN_YX or x < MIN_YX or z < MIN_Z[dims]:
        raise MaskTwinsError(f"synthetic shape {shape!r} too small for dims={dims}: need "
                             f"z >= {MIN_Z[dims]} and y, x >= {MIN_YX}")
    return z, y, x


def _check_seed(seed) -> int:
    """Raise MaskTwinsError unless ``seed`` is a non-negative integer."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise MaskTwinsError(f"synthetic seed: expected an integer >= 0, got {seed!r}")
    return int(seed)


def cytoplasm(grid: Grid, style: DomainStyle, cell_id: np.ndarray,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Clean cytoplasm (float32 (z, y, x)) and its unit-std grain.

    Base level + per-cell offset + low-frequency shading + granular texture; the grain has
    in-plane sigma ``texture_scale_px`` (converted to z voxels via the voxel size).
    """
    r_cell, r_bg, r_tex = rng.spawn(3)
    per_cell = style.cell_level_jitter * r_cell.standard_normal(int(cell_id.max()) + 1)
    vz, vy, _ = grid.voxel_size
    corr = BACKGROUND_CORR_NM / vy
    shading = smooth_field(grid.shape, (corr * vy / vz, corr, corr), r_bg)
    s = style.texture_scale_px
    sigma = (0.0 if grid.planar else s * vy / vz, s, s)
    grain = granular_texture(grid.shape, sigma, r_tex)
    image = (style.cytoplasm_level + per_cell[cell_id] + style.background_amplitude * shading
             + style.texture_amplitude * grain)
    return image.astype(np.float32), grain


def render_scene(grid: Grid, style: DomainStyle,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Clean intensity (float32 (z, y, x), ~[0, 1]) and labels (uint8) of one random scene."""
    r_tissue, r_cyto, r_mito, r_blob, r_ves = rng.spawn(5)
    tissue = make_tissue(grid, style.cell_diameter_nm, style.membrane_width_px, r_tissue)
    image, grain = cytoplasm(grid, style, tissue.cell_id, r_cyto)
    image *= 1 - style.membrane_darkness * membrane_profile(tissue)
    canvas = Canvas(image, np.zeros(grid.shape, np.uint8), np.zeros(grid.shape, bool), grain)
    place_mitochondria(canvas, grid, tissue, style, r_mito)
    place_blobs(canvas, grid, tissue, style, r_blob)
    place_vesicles(canvas, grid, tissue, style, r_ves)
    return canvas.image, canvas.labels


def render_volume(shape, style: DomainStyle, rng: np.random.Generator,
                  dims: int) -> SyntheticVolume:
    """Render one domain volume of ``shape`` (z, y, x) with ``style``.

    ``dims=2``: ``z`` independent 2D sections; ``dims=3``: one anisotropic 3D scene. The
    geometry and the imaging noise use separate child generators of ``rng``, so two styles
    that differ only in imaging parameters give the same geometry for the same ``rng`` seed.
    """
    _check_dims(dims)
    z, y, x = _check_shape(shape, dims)
    if not isinstance(style, DomainStyle):
        raise MaskTwinsError(f"synthetic style: expected a DomainStyle, got {type(style).__name__}")
    r_geom, r_img = rng.spawn(2)
    vs = tuple(float(v) for v in style.voxel_size_nm)
    if dims == 2:
        scenes = [render_scene(Grid((1, y, x), vs), style, r) for r in r_geom.spawn(z)]
        clean = np.concatenate([s[0] for s in scenes])
        labels = np.concatenate([s[1] for s in scenes])
    else:
        clean, labels = render_scene(Grid((z, y, x), vs), style, r_geom)
    return SyntheticVolume(image_volume(clean, style, r_img), labels, vs)


def generate_mito_pair(dims: int, seed: int, shape: tuple[int, int, int] | None = None,
                       source_style: DomainStyle = SOURCE_STYLE,
                       target_style: DomainStyle = TARGET_STYLE) -> MitoDomainPair:
    """Render the source, target_train and target_test volumes for ``seed``.

    ``shape`` (z, y, x) defaults to ``DEFAULT_SHAPES[dims]``; target_test has
    ``ceil(z / 2)`` sections. Deterministic for a given seed; each volume uses its own child
    of ``np.random.default_rng(seed)``.
    """
    _check_dims(dims)
    z, y, x = _check_shape(DEFAULT_SHAPES[dims] if shape is None else shape, dims)
    r_src, r_trn, r_tst = np.random.default_rng(_check_seed(seed)).spawn(3)
    test_shape = (max(MIN_Z[dims], math.ceil(z / 2)), y, x)
    return MitoDomainPair(
        source=render_volume((z, y, x), source_style, r_src, dims),
        target_train=render_volume((z, y, x), target_style, r_trn, dims),
        target_test=render_volume(test_shape, target_style, r_tst, dims),
        styles={"source": asdict(source_style), "target": asdict(target_style)},
    )
