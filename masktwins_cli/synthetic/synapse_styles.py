"""Synapse domain styles: what makes one synthetic isotropic EM synapse domain differ from another.

A :class:`SynapseStyle` bundles a :class:`~masktwins_cli.synthetic.styles.DomainStyle` (cells,
membranes, cytoplasm texture, the unlabelled distractors -- mitochondria, lysosome-like blobs,
free vesicle clusters -- and the imaging chain: blur, contrast curve, noise) with the synapse
anatomy: the bright cleft between the two membranes, the dark post-synaptic density (PSD), the
pre-synaptic dense projection (T-bar) and the vesicle cloud. All synapse sizes are in voxels of
the isotropic grid (8 nm, as WASP-SYN). :data:`SYNAPSE_SOURCE_STYLE` and
:data:`SYNAPSE_TARGET_STYLE` are the two default domains; :func:`describe_synapse_styles` lists
how they differ. Each field's ``metadata["doc"]`` is its documentation.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields

from masktwins_cli.errors import MaskTwinsError
from masktwins_cli.synthetic.styles import SOURCE_STYLE, DomainStyle, style_doc

VOXEL_NM = 8.0
"""Isotropic voxel size of the synthetic synapse volumes (WASP-SYN's)."""


def _doc(default, doc: str, unit: str = ""):
    """A dataclass field with a default and a ``{"doc", "unit"}`` metadata entry."""
    return field(default=default, metadata={"doc": doc, "unit": unit})


SYNAPSE_SOURCE_DOMAIN = dataclasses.replace(
    SOURCE_STYLE, name="source", voxel_size_nm=(VOXEL_NM,) * 3, cell_diameter_nm=420.0,
    membrane_width_px=1.6, texture_scale_px=0.8, texture_amplitude=0.06, mito_fraction=0.04,
    mito_scale=1.2, blob_fraction=0.008, vesicle_fraction=0.004, blur_sigma_px=0.6,
    gaussian_noise_std=0.05, section_jitter=0.01)
"""Tissue and imaging of the synapse source domain (8 nm isotropic; sharp, Gaussian noise)."""


@dataclass(frozen=True)
class SynapseStyle:
    """Tissue, imaging and synapse anatomy of one domain (defaults = the source domain).

    Darkness values multiply the local clean intensity by ``1 - darkness``; the clean cytoplasm
    is about ``domain.cytoplasm_level`` (0.72), and ``cleft_brightness`` is added on top of it.
    """

    name: str = _doc("source", "label of the domain, stored in metadata")
    domain: DomainStyle = _doc(
        SYNAPSE_SOURCE_DOMAIN, "cells, texture, distractors and imaging chain (blur applied in 3D; "
        "voxel_size_nm must be isotropic)")
    synapses_per_um3: float = _doc(
        16.0, "mean number of synapses (pre sites) per cubic micrometre, Poisson, at least one "
        "attempted per volume", "1/um^3")
    max_posts: int = _doc(3, "posts per pre drawn uniformly from 1..max_posts (polyadic synapses)")
    contact_radius_px: float = _doc(
        6.5, "radius of the cleft/PSD disc of a one-post contact (x0.75 when polyadic)", "vox")
    cleft_width_px: float = _doc(2.0, "width of the bright cleft between the two membranes", "vox")
    cleft_brightness: float = _doc(0.15, "intensity added at the centre of the cleft", "intensity")
    psd_thickness_px: float = _doc(
        3.0, "thickness of the post-synaptic density at the disc centre (lens-shaped)", "vox")
    psd_darkness: float = _doc(0.55, "relative darkening of the post-synaptic density", "fraction")
    tbar_darkness: float = _doc(
        0.45, "relative darkening of the pre-synaptic dense projection (T-bar)", "fraction")
    vesicle_radius_px: float = _doc(2.3, "mean synaptic vesicle radius (+-15 %)", "vox")
    vesicles_per_synapse: int = _doc(60, "mean number of vesicles in a cloud (+-25 %)")
    vesicle_darkness: float = _doc(
        0.55, "relative darkening of a vesicle's membrane ring (lumen: ~45 % of it)", "fraction")
    cloud_radius_px: float = _doc(
        13.0, "radius of the region behind the active zone that the vesicles fill", "vox")
    decoys_per_um3: float = _doc(
        6.0, "symmetric dense cell junctions without vesicles (unlabelled look-alikes)", "1/um^3")

    def __post_init__(self) -> None:
        _validate(self)


_UNIT_INTERVAL = ("cleft_brightness", "psd_darkness", "tbar_darkness", "vesicle_darkness")
_POSITIVE = ("contact_radius_px", "cleft_width_px", "psd_thickness_px", "vesicle_radius_px",
             "cloud_radius_px")
_INTEGER = ("max_posts", "vesicles_per_synapse")


def _validate(style: SynapseStyle) -> None:
    """Raise :class:`MaskTwinsError` naming the first out-of-range field of ``style``."""
    if not isinstance(style.name, str) or not style.name:
        raise MaskTwinsError(f"SynapseStyle.name: expected a non-empty string, got {style.name!r}")
    if not isinstance(style.domain, DomainStyle):
        raise MaskTwinsError(f"SynapseStyle.domain: expected a DomainStyle, got "
                             f"{type(style.domain).__name__}")
    if len(set(style.domain.voxel_size_nm)) != 1:
        raise MaskTwinsError(f"SynapseStyle.domain.voxel_size_nm: expected isotropic voxels, got "
                             f"{style.domain.voxel_size_nm}")
    for f in fields(style):
        if f.name in ("name", "domain"):
            continue
        value = getattr(style, f.name)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or value < 0:
            raise MaskTwinsError(f"SynapseStyle.{f.name}: expected a finite number >= 0, got {value!r}")
        if f.name in _INTEGER and (not isinstance(value, int) or value < 1):
            raise MaskTwinsError(f"SynapseStyle.{f.name}: expected an integer >= 1, got {value!r}")
        if f.name in _UNIT_INTERVAL and value > 1:
            raise MaskTwinsError(f"SynapseStyle.{f.name}: expected a value in [0, 1], got {value}")
        if f.name in _POSITIVE and value <= 0:
            raise MaskTwinsError(f"SynapseStyle.{f.name}: expected a value > 0, got {value}")


SYNAPSE_SOURCE_STYLE = SynapseStyle()
"""Source domain: sharp (blur 0.6 vox), linear contrast, Gaussian noise 0.05, fine grain, small
synapses (vesicles ~37 nm across, PSD 24 nm, cleft 16 nm)."""

SYNAPSE_TARGET_STYLE = SynapseStyle(
    name="target",
    domain=dataclasses.replace(
        SYNAPSE_SOURCE_DOMAIN, name="target", cell_diameter_nm=520.0, texture_scale_px=1.5,
        texture_amplitude=0.08, membrane_darkness=0.5, blob_fraction=0.02, blob_darkness=0.55,
        blur_sigma_px=1.0, gamma=0.7, contrast_gain=0.85, contrast_offset=0.08,
        gaussian_noise_std=0.045, shot_noise_photons=150.0, section_jitter=0.03),
    synapses_per_um3=14.0,
    contact_radius_px=8.0,
    cleft_width_px=2.6,
    cleft_brightness=0.1,
    psd_thickness_px=4.0,
    psd_darkness=0.5,
    tbar_darkness=0.35,
    vesicle_radius_px=2.9,
    vesicles_per_synapse=45,
    vesicle_darkness=0.5,
    cloud_radius_px=15.0,
    decoys_per_um3=10.0,
)
"""Target domain: another microscope and another animal. 3D blur 1.0 vox instead of 0.6, gamma 0.7
with gain 0.85 / offset 0.08 (brighter, flatter darks), Poisson shot noise (150 counts at full
intensity) plus Gaussian read noise 0.045 (~1.6x the source's noise, growing with intensity),
~2x coarser grain, 1.25x larger cells, vesicles 1.26x and PSD 1.33x thicker, wider cleft and
contact discs, a looser vesicle cloud, fainter cleft, PSD and T-bar, 2.5x more lysosome-like
blobs and more vesicle-free junctions (decoys)."""


def _field_doc(cls, name: str) -> str:
    for f in fields(cls):
        if f.name == name:
            unit = f.metadata.get("unit", "")
            return f.metadata["doc"] + (f" [{unit}]" if unit else "")
    raise MaskTwinsError(f"{cls.__name__} has no field {name!r}")


def _entry(a, b, doc: str) -> dict:
    entry = {"source": a, "target": b, "doc": doc}
    if isinstance(a, (int, float)) and not isinstance(a, bool) and a != 0:
        entry["ratio"] = round(b / a, 3)
    return entry


def describe_synapse_styles(source: SynapseStyle = SYNAPSE_SOURCE_STYLE,
                            target: SynapseStyle = SYNAPSE_TARGET_STYLE) -> dict:
    """Fields (other than the names) in which ``target`` differs from ``source``.

    Returns ``{field: {"source", "target", "doc"[, "ratio"]}}``; fields of the nested
    :class:`DomainStyle` appear as ``"domain.<field>"``.
    """
    out: dict = {}
    for f in fields(DomainStyle):
        a, b = getattr(source.domain, f.name), getattr(target.domain, f.name)
        if a != b and f.name != "name":
            out[f"domain.{f.name}"] = _entry(a, b, style_doc(f.name))
    for f in fields(SynapseStyle):
        a, b = getattr(source, f.name), getattr(target, f.name)
        if a != b and f.name not in ("name", "domain"):
            out[f.name] = _entry(a, b, _field_doc(SynapseStyle, f.name))
    return out
