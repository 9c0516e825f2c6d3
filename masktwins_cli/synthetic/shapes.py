"""Geometry in world coordinates (nm): the voxel grid, the cell tessellation and capsules.

Scenes are defined in continuous world coordinates and sampled on a domain's voxel grid, so
two domains with different voxel sizes (e.g. 40 nm sections at 5 nm pixels versus 30 nm at
6 nm) see the same kind of tissue at different samplings. Voxel ``(k, j, i)`` has its centre
at ``((k + .5) * vz, (j + .5) * vy, (i + .5) * vx)`` nm.

Objects are elongated along z by a per-kind ``z_stretch``: geometry is evaluated at
``z_eff = z / z_stretch``, the way neurites and their organelles run roughly across the
sections, so they persist over several consecutive sections.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from masktwins_cli.synthetic.fields import smooth_field

CELL_Z_STRETCH = 5.0
"""Cells (neurites) are this many times longer along z than across."""
CELL_WARP = 0.12
"""Amplitude of the smooth coordinate warp that bends the Voronoi membranes (x diameter)."""


@dataclass(frozen=True)
class Grid:
    """A voxel grid: ``shape`` (z, y, x) voxels of ``voxel_size`` (z, y, x) nm.

    A grid with ``shape[0] == 1`` is *planar*: one 2D section whose scene is generated on its
    own (cells are 2D Voronoi cells, objects are cut by the section plane).
    """

    shape: tuple[int, int, int]
    voxel_size: tuple[float, float, float]

    @property
    def planar(self) -> bool:
        """True for a single-section grid."""
        return self.shape[0] == 1

    @property
    def extent_nm(self) -> np.ndarray:
        """World size (z, y, x) of the grid in nm, float64 array of 3."""
        return np.asarray(self.shape, float) * np.asarray(self.voxel_size, float)

    @property
    def pixel_nm(self) -> float:
        """In-plane pixel size in nm (the y spacing; y and x are assumed equal)."""
        return float(self.voxel_size[1])

    def centres(self, axis: int, lo: int = 0, hi: int | None = None) -> np.ndarray:
        """World coordinates (nm) of voxel centres ``lo:hi`` along ``axis``, float64."""
        hi = self.shape[axis] if hi is None else hi
        return (np.arange(lo, hi) + 0.5) * self.voxel_size[axis]


@dataclass(frozen=True)
class Tissue:
    """The cell tessellation sampled on a grid.

    ``cell_id``: int32 (z, y, x) index of the cell (Voronoi seed) owning each voxel.
    ``membrane_dist_px``: float32 (z, y, x) distance to the nearest cell boundary, in-plane px.
    ``membrane_width_px``: float32 (z, y, x) local membrane line width (FWHM) in px.
    """

    cell_id: np.ndarray
    membrane_dist_px: np.ndarray
    membrane_width_px: np.ndarray


def _cell_seeds(grid: Grid, diameter_nm: float, rng: np.random.Generator) -> np.ndarray:
    """Uniform random Voronoi seeds (n, 3) in effective nm, with a one-cell margin.

    Seed density gives a mean cell cross-section of ``pi/4 * diameter**2`` (planar) or a mean
    effective cell volume of ``pi/6 * diameter**3`` (3D, z in effective units).
    """
    ext = grid.extent_nm.copy()
    ext[0] /= CELL_Z_STRETCH
    lo = -diameter_nm * np.ones(3)
    hi = ext + diameter_nm
    if grid.planar:
        area = (hi[1] - lo[1]) * (hi[2] - lo[2])
        n = max(4, rng.poisson(area / (np.pi / 4 * diameter_nm**2)))
        seeds = rng.uniform(lo, hi, size=(n, 3))
        seeds[:, 0] = ext[0] / 2
        return seeds
    vol = float(np.prod(hi - lo))
    n = max(8, rng.poisson(vol / (np.pi / 6 * diameter_nm**3)))
    return rng.uniform(lo, hi, size=(n, 3))


def _warped_points(grid: Grid, diameter_nm: float, rng: np.random.Generator) -> np.ndarray:
    """Effective-nm coordinates (N, 3) of all voxel centres, bent by a smooth random warp."""
    zz, yy, xx = np.meshgrid(grid.centres(0) / CELL_Z_STRETCH, grid.centres(1),
                             grid.centres(2), indexing="ij")
    corr = 0.8 * diameter_nm
    corr_px = (corr * CELL_Z_STRETCH / grid.voxel_size[0], corr / grid.voxel_size[1],
               corr / grid.voxel_size[2])
    amp = CELL_WARP * diameter_nm
    pts = [zz, yy + amp * smooth_field(grid.shape, corr_px, rng),
           xx + amp * smooth_field(grid.shape, corr_px, rng)]
    if not grid.planar:
        pts[0] = zz + amp * smooth_field(grid.shape, corr_px, rng)
    return np.stack([p.ravel() for p in pts], axis=1)


def make_tissue(grid: Grid, diameter_nm: float, width_px: float,
                rng: np.random.Generator) -> Tissue:
    """Voronoi-like tessellation of cells with curved membranes on ``grid``.

    Each voxel finds its two nearest seeds (k-d tree); its distance to the boundary is the
    distance to their bisecting plane, ``(d2**2 - d1**2) / (2 |s1 - s2|)``, converted to
    in-plane pixels. ``width_px`` is the mean membrane width (varies +-30 % smoothly).
    """
    seeds = _cell_seeds(grid, diameter_nm, rng)
    pts = _warped_points(grid, diameter_nm, rng)
    dist, idx = cKDTree(seeds).query(pts, k=2, workers=-1)
    sep = np.linalg.norm(seeds[idx[:, 0]] - seeds[idx[:, 1]], axis=1)
    bisector = (dist[:, 1] ** 2 - dist[:, 0] ** 2) / (2 * np.maximum(sep, 1e-6))
    corr = 0.5 * diameter_nm / grid.pixel_nm
    width = width_px * (1 + 0.3 * smooth_field(grid.shape, (corr, corr, corr), rng))
    return Tissue(
        cell_id=idx[:, 0].astype(np.int32).reshape(grid.shape),
        membrane_dist_px=(bisector / grid.pixel_nm).astype(np.float32).reshape(grid.shape),
        membrane_width_px=np.clip(width, 0.6 * width_px, None).astype(np.float32),
    )


def membrane_profile(tissue: Tissue) -> np.ndarray:
    """Membrane darkness profile in [0, 1], float32 (z, y, x): 1 on the boundary.

    A Gaussian across the boundary with full width at half maximum ``membrane_width_px``.
    """
    sigma = tissue.membrane_width_px / 2.355
    return np.exp(-0.5 * (tissue.membrane_dist_px / sigma) ** 2).astype(np.float32)


@dataclass(frozen=True)
class Capsule:
    """A capsule (segment of half-length ``half_length`` swept by a ball of ``radius``).

    ``centre`` is in effective nm (z divided by ``z_stretch``); ``axis`` is a unit (z, y, x)
    vector in effective space. ``half_length = 0`` gives a sphere (an ellipsoid elongated
    along z when ``z_stretch > 1``).
    """

    centre: tuple[float, float, float]
    axis: tuple[float, float, float]
    half_length: float
    radius: float
    z_stretch: float = 1.0


@dataclass(frozen=True)
class Footprint:
    """A rasterised capsule inside its bounding box ``box`` (tuple of 3 slices).

    ``mask``: bool (bz, by, bx) voxels inside. ``depth_px``: float32 distance inside the
    surface in in-plane px (0 on the surface, negative outside). ``along_px``: float32
    unclipped coordinate along the axis, in px (for cristae stripes).
    """

    box: tuple[slice, slice, slice]
    mask: np.ndarray
    depth_px: np.ndarray
    along_px: np.ndarray


def _box(grid: Grid, cap: Capsule) -> tuple[slice, slice, slice] | None:
    """Voxel bounding box of ``cap`` on ``grid`` (clipped), or None if it misses the grid."""
    c = np.asarray(cap.centre, float)
    half = np.abs(np.asarray(cap.axis, float)) * cap.half_length + cap.radius
    c[0], half[0] = c[0] * cap.z_stretch, half[0] * cap.z_stretch
    vs = np.asarray(grid.voxel_size, float)
    lo = np.floor((c - half) / vs - 0.5).astype(int)
    hi = np.ceil((c + half) / vs + 0.5).astype(int) + 1
    lo, hi = np.maximum(lo, 0), np.minimum(hi, grid.shape)
    if np.any(hi <= lo):
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def rasterise(grid: Grid, cap: Capsule) -> Footprint | None:
    """Sample ``cap`` on ``grid``; None if it covers no voxel centre."""
    box = _box(grid, cap)
    if box is None:
        return None
    d = [grid.centres(a, box[a].start, box[a].stop) for a in range(3)]
    d[0] = d[0] / cap.z_stretch
    dz, dy, dx = (d[a] - cap.centre[a] for a in range(3))
    dz, dy, dx = dz[:, None, None], dy[None, :, None], dx[None, None, :]
    uz, uy, ux = cap.axis
    t = dz * uz + dy * uy + dx * ux
    tc = np.clip(t, -cap.half_length, cap.half_length)
    dist = np.sqrt((dz - tc * uz) ** 2 + (dy - tc * uy) ** 2 + (dx - tc * ux) ** 2)
    depth = ((cap.radius - dist) / grid.pixel_nm).astype(np.float32)
    mask = depth >= 0
    if not mask.any():
        return None
    along = np.broadcast_to(t / grid.pixel_nm, mask.shape).astype(np.float32)
    return Footprint(box, mask, depth, along)


def random_axis(rng: np.random.Generator, max_elevation_deg: float) -> tuple[float, float, float]:
    """Unit (z, y, x) vector with uniform azimuth and elevation in +-``max_elevation_deg``."""
    az = rng.uniform(0, 2 * np.pi)
    el = np.deg2rad(rng.uniform(-max_elevation_deg, max_elevation_deg))
    return (float(np.sin(el)), float(np.cos(el) * np.sin(az)), float(np.cos(el) * np.cos(az)))
