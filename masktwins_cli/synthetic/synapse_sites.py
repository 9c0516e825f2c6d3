"""Where the synthetic synapses go: contacts on the cell tessellation and their label points.

A synapse sits where a pre cell touches one or more post cells. A *contact* is a voxel on the
boundary between the pre cell and a partner cell, with the local membrane normal (pointing from
the pre into the post cell) estimated from the two cells' voxel centroids around it. The
**pre point** lies ``PRE_DEPTH_PX`` behind the pre membrane of the first contact (at the T-bar /
inner edge of the vesicle cloud, next to the cleft); each **post point** lies in the middle of
its contact's post-synaptic density. Polyadic synapses add contacts on the pre cell's boundary
near the first one (preferably with other partner cells). All coordinates are (z, y, x) voxels of
the array the tissue was sampled on.

Placement guarantees: every point is at least ``MARGIN_PX`` voxels from each face; any two
points of a volume are at least ``MIN_POINT_GAP`` voxels apart along some axis (so 3x3x3 cubes
around them are disjoint); each post is within ``MAX_POST_DISTANCE`` of its pre and inside its
partner cell, with the segment between them crossing only the one membrane; the pre point is
inside the pre cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from masktwins_cli.synthetic.shapes import Tissue
from masktwins_cli.synthetic.synapse_styles import SynapseStyle

MARGIN_PX = 4
"""Minimal distance (voxels) from every label point to each face of the volume."""
MIN_POINT_GAP = 3
"""Minimal Chebyshev distance (voxels) between two label points: disjoint 3x3x3 cubes."""
PRE_DEPTH_PX = 2.5
"""Depth of the pre point behind the pre membrane (voxels, from the membrane line)."""
MAX_POST_DISTANCE = 14.0
"""Largest pre-post distance (voxels) of a placed synapse."""
POLYADIC_SHRINK = 0.75
"""Contact discs of polyadic synapses are this much smaller than ``contact_radius_px``."""
ROOM_FRACTION = 0.8
"""Least fraction of the vesicle cloud's core that must lie in the pre cell."""
BOUNDARY_PX = 0.5
"""A voxel is on a membrane when its distance to the cell boundary is below this (voxels)."""


@dataclass(frozen=True)
class Contact:
    """One synaptic (or decoy) contact between ``cell`` (pre side) and ``partner``.

    ``centre``: (3,) float voxel on the boundary; ``normal``: (3,) unit vector from the pre into
    the partner cell; ``radius``: disc radius (voxels); ``post``: (3,) int voxel of the post
    point, or None for a decoy junction.
    """

    cell: int
    partner: int
    centre: np.ndarray
    normal: np.ndarray
    radius: float
    post: np.ndarray | None


@dataclass(frozen=True)
class Synapse:
    """A pre site: ``pre`` (3,) int voxel of the pre point and its ``contacts`` (one per post)."""

    pre: np.ndarray
    contacts: tuple[Contact, ...]


def membrane_offset(style: SynapseStyle) -> float:
    """Distance (voxels) from the cleft centre to each of the two membrane lines."""
    return style.cleft_width_px / 2 + 0.35


def cube_slices(centre: np.ndarray, half: int, shape: tuple[int, ...]) -> tuple[slice, ...]:
    """Slices of the cube of half-size ``half`` around ``centre``, clipped to ``shape`` (possibly
    empty; ``stop >= start >= 0`` always, so offsets computed from the slices match the view)."""
    out = []
    for v, s in zip(np.round(centre).astype(int), shape):
        start = min(max(0, int(v) - half), s)
        out.append(slice(start, max(start, min(s, int(v) + half + 1))))
    return tuple(out)


def partner_and_normal(cell_id: np.ndarray, voxel: np.ndarray, cell: int,
                       half: int = 3) -> tuple[int, np.ndarray] | None:
    """The most frequent other cell around ``voxel`` and the unit normal from ``cell`` into it.

    The normal joins the centroids of the two cells' voxels in the (2 half + 1)^3 cube; None
    when no other cell is in the cube.
    """
    box = cube_slices(voxel, half, cell_id.shape)
    ids = cell_id[box]
    others = ids[ids != cell]
    if others.size == 0:
        return None
    partner = int(np.bincount(others).argmax())
    grid = np.indices(ids.shape).reshape(3, -1) + np.array([s.start for s in box])[:, None]
    flat = ids.reshape(-1)
    normal = grid[:, flat == partner].mean(1) - grid[:, flat == cell].mean(1)
    length = float(np.linalg.norm(normal))
    return (partner, normal / length) if length > 0 else None


class _Placer:
    """Greedy placement state: the tissue, the style and every point placed so far."""

    def __init__(self, tissue: Tissue, style: SynapseStyle):
        self.tissue, self.style = tissue, style
        self.shape = np.asarray(tissue.cell_id.shape)
        self.points: list[np.ndarray] = []
        self.sites: list[np.ndarray] = []  # contact centres of synapses and decoys

    def inside(self, voxel: np.ndarray) -> bool:
        return bool(np.all(voxel >= MARGIN_PX) and np.all(voxel <= self.shape - 1 - MARGIN_PX))

    def free(self, voxel: np.ndarray, extra: list[np.ndarray]) -> bool:
        """True when ``voxel`` is at least MIN_POINT_GAP (Chebyshev) from every point."""
        return all(np.abs(voxel - p).max() >= MIN_POINT_GAP for p in self.points + extra)

    def crosses_once(self, pre: np.ndarray, post: np.ndarray, cell: int, partner: int) -> bool:
        """True when the segment pre -> post runs through ``cell`` and then ``partner`` only."""
        steps = 2 * int(np.ceil(np.linalg.norm(post - pre))) + 2
        ids = self.tissue.cell_id[tuple(np.round(np.linspace(pre, post, steps)).astype(int).T)]
        return bool(ids[0] == cell and ids[-1] == partner and np.count_nonzero(np.diff(ids)) == 1)

    def far_from_sites(self, centre: np.ndarray) -> bool:
        gap = 1.5 * self.style.cloud_radius_px + 2
        return all(np.linalg.norm(centre - s) >= gap for s in self.sites)

    def contact(self, centre: np.ndarray, cell: int, radius: float, pre: np.ndarray | None,
                taken: list[np.ndarray]) -> Contact | None:
        """The contact at boundary voxel ``centre`` with a valid post point (None if invalid).

        With ``pre`` None the contact is a decoy (no post point, no checks on points).
        """
        found = partner_and_normal(self.tissue.cell_id, centre, cell)
        if found is None:
            return None
        partner, normal = found
        if pre is None:
            return Contact(cell, partner, centre, normal, radius, None)
        depth = membrane_offset(self.style) + self.style.psd_thickness_px / 2
        post = np.round(centre + depth * normal).astype(np.int64)
        ok = (self.inside(post) and self.tissue.cell_id[tuple(post)] == partner
              and self.tissue.membrane_dist_px[tuple(post)] >= 1.5
              and np.dot(pre - centre, normal) < -1.0 and self.free(post, taken)
              and np.linalg.norm(post - pre) <= MAX_POST_DISTANCE
              and self.crosses_once(pre, post, cell, partner))
        return Contact(cell, partner, centre, normal, radius, post) if ok else None

    def pre_point(self, centre: np.ndarray, normal: np.ndarray, cell: int) -> np.ndarray | None:
        """The pre point behind the contact at ``centre``, or None if it is not valid."""
        pre = np.round(centre - (membrane_offset(self.style) + PRE_DEPTH_PX) * normal).astype(np.int64)
        voxel = tuple(pre)
        if (not self.inside(pre) or self.tissue.cell_id[voxel] != cell
                or self.tissue.membrane_dist_px[voxel] < 1.0 or not self.free(pre, [])):
            return None
        return pre

    def roomy(self, centre: np.ndarray, normal: np.ndarray, cell: int) -> bool:
        """True when the pre cell fills >= ROOM_FRACTION of the cube (half-size half the cloud
        radius) around the vesicle cloud's centre, so the cloud is not squeezed into a wedge."""
        rc = self.style.cloud_radius_px
        middle = centre - (membrane_offset(self.style) + 0.6 * rc) * normal
        box = cube_slices(middle, int(rc / 2), tuple(self.shape))
        ids = self.tissue.cell_id[box]
        return ids.size > 0 and float(np.mean(ids == cell)) >= ROOM_FRACTION

    def extra_contacts(self, first: Contact, pre: np.ndarray, wanted: int, taken: list[np.ndarray],
                       rng: np.random.Generator) -> list[Contact]:
        """Up to ``wanted`` more contacts of ``first.cell`` near ``first``, new partners first."""
        radius = POLYADIC_SHRINK * self.style.contact_radius_px
        box = cube_slices(first.centre, int(np.ceil(2.2 * radius)), tuple(self.shape))
        near = ((self.tissue.cell_id[box] == first.cell)
                & (self.tissue.membrane_dist_px[box] < BOUNDARY_PX))
        candidates = np.argwhere(near) + np.array([s.start for s in box])
        candidates = candidates[rng.permutation(len(candidates))[:60]]
        found: list[Contact] = []
        for prefer_new in (True, False):
            for voxel in candidates:
                if len(found) == wanted:
                    return found
                centres = [first.centre] + [c.centre for c in found]
                if min(np.linalg.norm(voxel - c) for c in centres) < 1.6 * radius:
                    continue
                contact = self.contact(voxel.astype(float), first.cell, radius, pre,
                                       taken + [c.post for c in found])
                partners = {first.partner} | {c.partner for c in found}
                if contact is not None and (contact.partner not in partners or not prefer_new):
                    found.append(contact)
        return found

    def synapse(self, voxel: np.ndarray, posts: int, rng: np.random.Generator) -> Synapse | None:
        """A synapse whose first contact is at boundary ``voxel``, or None where none fits."""
        cell = int(self.tissue.cell_id[tuple(voxel)])
        found = partner_and_normal(self.tissue.cell_id, voxel, cell)
        if found is None:
            return None
        pre = self.pre_point(voxel.astype(float), found[1], cell)
        if pre is None or not self.roomy(voxel.astype(float), found[1], cell):
            return None
        first = self.contact(voxel.astype(float), cell, self.style.contact_radius_px, pre, [pre])
        if first is None:
            return None
        others = self.extra_contacts(first, pre, posts - 1, [pre, first.post], rng)
        if others:
            shrunk = POLYADIC_SHRINK * self.style.contact_radius_px
            first = Contact(first.cell, first.partner, first.centre, first.normal, shrunk, first.post)
        contacts = (first, *others)
        self.points += [pre] + [c.post for c in contacts]
        self.sites += [c.centre for c in contacts]
        return Synapse(pre, contacts)


def _boundary_candidates(tissue: Tissue, rng: np.random.Generator) -> np.ndarray:
    """(K, 3) membrane voxels away from the faces, in random order."""
    inner = np.zeros(tissue.cell_id.shape, bool)
    m = MARGIN_PX + 3
    inner[m:-m, m:-m, m:-m] = True
    voxels = np.argwhere((tissue.membrane_dist_px < BOUNDARY_PX) & inner)
    return voxels[rng.permutation(len(voxels))]


def place_synapses(tissue: Tissue, style: SynapseStyle, n_synapses: int, n_decoys: int,
                   rng: np.random.Generator) -> tuple[list[Synapse], list[Contact]]:
    """Up to ``n_synapses`` synapses (1..``style.max_posts`` posts each) and ``n_decoys`` decoy
    junctions on the membranes of ``tissue``, greedily, all sites apart by one cloud diameter.

    Fewer are returned where the tissue has no room (small volumes); deterministic for ``rng``.
    """
    placer = _Placer(tissue, style)
    candidates = _boundary_candidates(tissue, rng)
    synapses: list[Synapse] = []
    budget = 60 * (n_synapses + n_decoys) + 60
    for voxel in candidates[:budget]:
        if len(synapses) == n_synapses:
            break
        if placer.far_from_sites(voxel.astype(float)):
            synapse = placer.synapse(voxel, int(rng.integers(1, style.max_posts + 1)), rng)
            if synapse is not None:
                synapses.append(synapse)
    decoys: list[Contact] = []
    for voxel in candidates[::-1][:budget]:  # the other end of the random order
        if len(decoys) == n_decoys:
            break
        if placer.far_from_sites(voxel.astype(float)):
            cell = int(tissue.cell_id[tuple(voxel)])
            decoy = placer.contact(voxel.astype(float), cell, style.contact_radius_px, None, [])
            if decoy is not None:
                decoys.append(decoy)
                placer.sites.append(decoy.centre)
    return synapses, decoys
