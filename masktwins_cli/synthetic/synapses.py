"""Synthetic isotropic EM volumes with synapses and their pre/post point labels (WASP-SYN-like).

:func:`synapse_volume` renders one volume of a :class:`SynapseStyle`: a 3D cell tessellation
(:func:`~.shapes.make_tissue`, neurites along a random axis) with textured cytoplasm, synapses
placed on its membranes (:mod:`.synapse_sites`) and unlabelled distractors, then the style's
imaging chain with an isotropic 3D blur. A synapse is drawn as, from pre to post:

* a **vesicle cloud**: many small dark round vesicles (dark ring, lighter lumen) packed behind
  the active zone, denser close to the membrane;
* a **T-bar**: a small dark pre-synaptic dense projection at the active zone, around the pre point;
* the **cleft**: the cell membrane split into two dark lines with a thin bright gap between;
* the **post-synaptic density (PSD)**: a dark lens on the post side of each contact, around its
  post point. Polyadic synapses have one pre and 1..``max_posts`` contacts.

Distractors: mitochondria, lysosome-like blobs and free vesicle clusters (:mod:`.objects`), plus
*decoy* junctions -- split membranes with a symmetric density on both sides and no vesicles.
:func:`generate_synapse_pair` renders the source / target_train / target_test trio for a seed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from masktwins_cli.errors import MaskTwinsError
from masktwins_cli.synapse.points import SynapsePoints
from masktwins_cli.synthetic.imaging import add_noise, contrast_curve, section_jitter, to_uint8
from masktwins_cli.synthetic.mito import cytoplasm
from masktwins_cli.synthetic.objects import Canvas, place_blobs, place_mitochondria, place_vesicles
from masktwins_cli.synthetic.shapes import Grid, Tissue, make_tissue, membrane_profile
from masktwins_cli.synthetic.styles import DomainStyle
from masktwins_cli.synthetic.synapse_sites import (
    Contact,
    Synapse,
    cube_slices,
    membrane_offset,
    place_synapses,
)
from masktwins_cli.synthetic.synapse_styles import (
    SYNAPSE_SOURCE_STYLE,
    SYNAPSE_TARGET_STYLE,
    SynapseStyle,
)

MIN_SIZE = 32
"""Smallest allowed size (voxels) along every axis."""
DEFAULT_SYNAPSE_SHAPE = (128, 128, 128)
"""Default (z, y, x) shape of each volume of a synapse pair."""


@dataclass(frozen=True)
class SynapseDomainPair:
    """Source, target_train and target_test volumes: each ``(raw uint8 (z, y, x), SynapsePoints)``;
    ``styles`` = ``{"source": asdict(style), "target": asdict(style)}``."""

    source: tuple[np.ndarray, SynapsePoints]
    target_train: tuple[np.ndarray, SynapsePoints]
    target_test: tuple[np.ndarray, SynapsePoints]
    styles: dict


@dataclass(frozen=True)
class _Frame:
    """A contact's neighbourhood: ``box`` (3 slices) and, over it, float32 arrays ``s`` (signed
    distance to the cleft centre, negative on the pre side, voxels), ``r`` (distance from the
    contact axis, voxels) and ``w`` (disc weight in [0, 1], 0 outside the two cells)."""

    box: tuple[slice, ...]
    s: np.ndarray
    r: np.ndarray
    w: np.ndarray


def _offsets(box: tuple[slice, ...], centre: np.ndarray) -> list[np.ndarray]:
    """Broadcastable per-axis offsets (voxels) of the box's voxels from ``centre``."""
    axes = [np.arange(b.start, b.stop, dtype=np.float32) - np.float32(c) for b, c in zip(box, centre)]
    return [axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]]


def contact_frame(tissue: Tissue, contact: Contact, style: SynapseStyle) -> _Frame:
    """The frame of ``contact``: the signed distance follows the (curved) tissue membrane, the
    disc weight falls off over ~1.5 voxels at ``contact.radius`` and vanishes where the signed
    distance disagrees with the distance to the contact plane (other membranes in the box)."""
    half = int(np.ceil(contact.radius + style.psd_thickness_px + style.cleft_width_px + 3))
    box = cube_slices(contact.centre, half, tissue.cell_id.shape)
    ids, dist = tissue.cell_id[box], tissue.membrane_dist_px[box]
    pre_side, post_side = ids == contact.cell, ids == contact.partner
    s = np.where(pre_side, -dist, dist).astype(np.float32)
    dz, dy, dx = _offsets(box, contact.centre)
    nz, ny, nx = (np.float32(v) for v in contact.normal)
    along = dz * nz + dy * ny + dx * nx
    r = np.sqrt(np.maximum(dz**2 + dy**2 + dx**2 - along**2, 0)).astype(np.float32)
    w = (np.clip((contact.radius - r) / 1.5 + 0.5, 0, 1) * np.clip(2.5 - np.abs(along - s), 0, 1)
         * (pre_side | post_side))
    return _Frame(box, s, r, w.astype(np.float32))


def split_membrane(membrane: np.ndarray, frame: _Frame, style: SynapseStyle) -> None:
    """Replace the single membrane line by two lines ``membrane_offset`` either side of the cleft
    centre (in place on the (z, y, x) membrane profile in [0, 1])."""
    h = membrane_offset(style)
    s, w = frame.s, frame.w
    gap = w * np.exp(-0.5 * (s / (0.35 * style.cleft_width_px)) ** 2)
    lines = w * np.maximum(np.exp(-0.5 * ((s + h) / 0.55) ** 2), np.exp(-0.5 * ((s - h) / 0.55) ** 2))
    membrane[frame.box] = np.maximum(membrane[frame.box] * (1 - gap), lines)


def paint_contact(canvas: Canvas, frame: _Frame, contact: Contact, style: SynapseStyle,
                  decoy: bool) -> None:
    """Bright cleft and dark lens-shaped PSD on the post side; a decoy junction gets a thinner
    density on both sides and no bright cleft. Marks the painted voxels occupied."""
    u = (np.abs(frame.s) if decoy else frame.s) - membrane_offset(style)
    lens = np.sqrt(np.clip(1 - (frame.r / contact.radius) ** 2, 0.15, 1))
    thickness = style.psd_thickness_px * (0.6 if decoy else 1.0) * lens
    density = frame.w * np.clip(u + 0.8, 0, 1) * np.clip(thickness - u + 0.5, 0, 1)
    darkness = style.psd_darkness * (0.8 if decoy else 1.0)
    grain = 1 + 0.3 * canvas.texture[frame.box]
    cleft = 0.0 if decoy else frame.w * np.exp(-0.5 * (frame.s / (0.3 * style.cleft_width_px)) ** 2)
    sub = canvas.image[frame.box]
    sub *= np.clip(1 - darkness * density * grain, 0.03, 1)
    sub += style.cleft_brightness * cleft
    canvas.occupied[frame.box] |= (density > 0.2) | (np.asarray(cleft) > 0.3)


def paint_tbar(canvas: Canvas, tissue: Tissue, synapse: Synapse, style: SynapseStyle) -> None:
    """Dark ellipsoid (semi-axes 2.5 voxels along the normal, 2 across) at the active zone of the
    first contact, inside the pre cell; marks it occupied."""
    first = synapse.contacts[0]
    centre = first.centre - (membrane_offset(style) + 2.0) * first.normal
    box = cube_slices(centre, 5, tissue.cell_id.shape)
    dz, dy, dx = _offsets(box, centre)
    along = dz * first.normal[0] + dy * first.normal[1] + dx * first.normal[2]
    across2 = np.maximum(dz**2 + dy**2 + dx**2 - along**2, 0)
    q = np.sqrt((along / 2.5) ** 2 + across2 / 4.0)
    density = np.clip((1 - q) / 0.3 + 0.5, 0, 1) * (tissue.cell_id[box] == first.cell)
    grain = 1 + 0.3 * canvas.texture[box]
    canvas.image[box] *= np.clip(1 - style.tbar_darkness * density * grain, 0.03, 1)
    canvas.occupied[box] |= density > 0.2


def paint_vesicle(canvas: Canvas, tissue: Tissue, centre: np.ndarray, radius: float, cell: int,
                  darkness: float) -> None:
    """One vesicle: a dark membrane ring ~0.55 voxels inside its surface and a lumen at ~45 % of
    the ring's darkening, clipped to ``cell``; marks it occupied."""
    box = cube_slices(centre, int(np.ceil(radius + 1.5)), tissue.cell_id.shape)
    dz, dy, dx = _offsets(box, centre)
    depth = radius - np.sqrt(dz**2 + dy**2 + dx**2)
    ring = np.exp(-0.5 * ((depth - 0.55) / 0.5) ** 2)
    factor = np.clip(1 - darkness * (0.75 * ring + 0.45 * np.clip(depth, 0, 1)), 0.03, 1)
    inside = tissue.cell_id[box] == cell
    canvas.image[box] *= np.where(inside, factor, 1).astype(np.float32)
    canvas.occupied[box] |= inside & (depth >= -0.5)


def vesicle_centres(tissue: Tissue, occupied: np.ndarray, synapse: Synapse, style: SynapseStyle,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Centres (K, 3) and radii (K,) of a cloud's vesicles, K <= about ``vesicles_per_synapse``.

    Random points in a ball of ``cloud_radius_px`` behind the first contact are kept when inside
    the pre cell, clear of its membrane and of painted structures, with probability
    ``exp(-distance to membrane / cloud radius)`` (denser near the membrane), then accepted in
    order unless they overlap an accepted vesicle (random sequential packing).
    """
    first = synapse.contacts[0]
    rc = style.cloud_radius_px
    goal = int(round(style.vesicles_per_synapse * rng.uniform(0.75, 1.25)))
    centre = first.centre - (membrane_offset(style) + 0.6 * rc) * first.normal
    draws = rng.uniform(-rc, rc, size=(100 * goal, 3))
    draws = centre + draws[np.linalg.norm(draws, axis=1) <= rc]
    radii = style.vesicle_radius_px * rng.uniform(0.85, 1.15, len(draws))
    chance = rng.uniform(size=len(draws))
    index = np.round(draws).astype(int)
    keep = np.all((index >= 0) & (index < np.asarray(tissue.cell_id.shape)), axis=1)
    draws, radii, chance, index = draws[keep], radii[keep], chance[keep], index[keep]
    voxels = tuple(index.T)
    gap = tissue.membrane_dist_px[voxels] - radii
    keep = ((tissue.cell_id[voxels] == first.cell) & (gap >= 0.6) & ~occupied[voxels]
            & (chance <= np.exp(-np.maximum(gap, 0) / rc)))
    centres, sizes, count = np.empty((goal, 3)), np.empty(goal), 0
    for point, radius in zip(draws[keep], radii[keep]):
        if count == goal:
            break
        if count and np.any(np.linalg.norm(centres[:count] - point, axis=1) < sizes[:count] + radius + 0.2):
            continue
        centres[count], sizes[count] = point, radius
        count += 1
    return centres[:count], sizes[:count]


def render_scene(grid: Grid, style: SynapseStyle,
                 rng: np.random.Generator) -> tuple[np.ndarray, list[Synapse]]:
    """Clean intensity (float32 (z, y, x) of ``grid``, ~[0, 1]) and the synapses placed in it."""
    r_tissue, r_cyto, r_sites, r_ves, r_mito, r_blob, r_free = rng.spawn(7)
    domain = style.domain
    tissue = make_tissue(grid, domain.cell_diameter_nm, domain.membrane_width_px, r_tissue)
    image, grain = cytoplasm(grid, domain, tissue.cell_id, r_cyto)
    volume_um3 = float(np.prod(grid.extent_nm)) / 1e9
    n_synapses = max(1, int(r_sites.poisson(style.synapses_per_um3 * volume_um3)))
    n_decoys = int(r_sites.poisson(style.decoys_per_um3 * volume_um3))
    synapses, decoys = place_synapses(tissue, style, n_synapses, n_decoys, r_sites)
    contacts = [(c, False) for s in synapses for c in s.contacts] + [(c, True) for c in decoys]
    frames = [contact_frame(tissue, c, style) for c, _ in contacts]
    membrane = membrane_profile(tissue)
    for frame in frames:
        split_membrane(membrane, frame, style)
    image *= 1 - domain.membrane_darkness * membrane
    canvas = Canvas(image, np.zeros(grid.shape, np.uint8), np.zeros(grid.shape, bool), grain)
    for (contact, decoy), frame in zip(contacts, frames):
        paint_contact(canvas, frame, contact, style, decoy)
    for synapse in synapses:
        paint_tbar(canvas, tissue, synapse, style)
    for synapse, r in zip(synapses, r_ves.spawn(len(synapses))):
        for centre, radius in zip(*vesicle_centres(tissue, canvas.occupied, synapse, style, r)):
            darkness = style.vesicle_darkness * r.uniform(0.85, 1.1)
            paint_vesicle(canvas, tissue, centre, radius, synapse.contacts[0].cell, darkness)
    place_mitochondria(canvas, grid, tissue, domain, r_mito)
    place_blobs(canvas, grid, tissue, domain, r_blob)
    place_vesicles(canvas, grid, tissue, domain, r_free)
    return canvas.image, synapses


def image_isotropic(clean: np.ndarray, domain: DomainStyle, rng: np.random.Generator) -> np.ndarray:
    """The imaging chain of :mod:`.imaging` with a 3D (isotropic) Gaussian blur; returns uint8.

    Per-section gain jitter along z (milling/cutting) -> blur ``blur_sigma_px`` on every axis ->
    contrast curve -> Poisson + Gaussian noise -> uint8.
    """
    volume = section_jitter(clean, domain.section_jitter, rng)
    if domain.blur_sigma_px > 0:
        volume = ndimage.gaussian_filter(volume, domain.blur_sigma_px, mode="reflect", truncate=3.0)
    volume = contrast_curve(volume, domain.gamma, domain.contrast_gain, domain.contrast_offset)
    volume = add_noise(volume, domain.gaussian_noise_std, domain.shot_noise_photons, rng)
    return to_uint8(volume)


def _points(synapses: list[Synapse], axes: np.ndarray) -> SynapsePoints:
    """The point table of ``synapses``, coordinates reordered by ``axes`` (render -> output)."""
    pre = np.array([s.pre for s in synapses], np.float64).reshape(-1, 3)
    post = np.array([c.post for s in synapses for c in s.contacts], np.float64).reshape(-1, 3)
    links = np.array([i for i, s in enumerate(synapses) for _ in s.contacts], np.int64)
    return SynapsePoints(pre[:, axes], post[:, axes], links)


def check_synapse_shape(shape) -> tuple[int, int, int]:
    """Validate a (z, y, x) shape (3 integers >= MIN_SIZE); returns it as ints."""
    ok = isinstance(shape, (tuple, list)) and len(shape) == 3 and all(
        isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in shape)
    if not ok or min(int(n) for n in shape) < MIN_SIZE:
        raise MaskTwinsError(f"synthetic synapse shape: expected 3 integers (z, y, x) >= {MIN_SIZE}, "
                             f"got {shape!r}")
    return tuple(int(n) for n in shape)


def synapse_volume(shape_zyx, style: SynapseStyle,
                   rng: np.random.Generator) -> tuple[np.ndarray, SynapsePoints]:
    """Render one EM-like volume with synapses: ``(raw uint8 (z, y, x), SynapsePoints)``.

    Points are integer-valued (z, y, x) voxel coordinates (pre: in the T-bar behind the cleft;
    post: in the PSD), at least 4 voxels from every face and 3 voxels (Chebyshev) from each
    other. The neurites run along a random axis. Geometry and imaging use separate child
    generators of ``rng``: two styles that differ only in imaging give the same geometry and
    points. Deterministic for a given generator state.
    """
    shape = check_synapse_shape(shape_zyx)
    if not isinstance(style, SynapseStyle):
        raise MaskTwinsError(f"synthetic synapse style: expected a SynapseStyle, got "
                             f"{type(style).__name__}")
    r_geom, r_img = rng.spawn(2)
    order = r_geom.permutation(3)  # render axis i is output axis order[i]
    grid = Grid(tuple(shape[a] for a in order), tuple(float(v) for v in style.domain.voxel_size_nm))
    clean, synapses = render_scene(grid, style, r_geom)
    back = np.argsort(order)
    return image_isotropic(np.ascontiguousarray(clean.transpose(back)), style.domain, r_img), \
        _points(synapses, back)


def generate_synapse_pair(seed: int, shape=None, source_style: SynapseStyle = SYNAPSE_SOURCE_STYLE,
                          target_style: SynapseStyle = SYNAPSE_TARGET_STYLE,
                          test_shape=None) -> SynapseDomainPair:
    """Render source, target_train and target_test from independent children of
    ``default_rng(seed)``: the first two of ``shape`` (default :data:`DEFAULT_SYNAPSE_SHAPE`),
    target_test of ``test_shape`` (default ``shape``; a larger test volume holds more synapses,
    so its F1 scores are less coarse)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise MaskTwinsError(f"synthetic seed: expected an integer >= 0, got {seed!r}")
    shape = check_synapse_shape(DEFAULT_SYNAPSE_SHAPE if shape is None else shape)
    test_shape = shape if test_shape is None else check_synapse_shape(test_shape)
    r_src, r_trn, r_tst = np.random.default_rng(int(seed)).spawn(3)
    return SynapseDomainPair(
        source=synapse_volume(shape, source_style, r_src),
        target_train=synapse_volume(shape, target_style, r_trn),
        target_test=synapse_volume(test_shape, target_style, r_tst),
        styles={"source": asdict(source_style), "target": asdict(target_style)},
    )
