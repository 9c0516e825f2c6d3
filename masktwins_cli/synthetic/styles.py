"""Domain styles: every knob that makes one synthetic EM domain differ from another.

A :class:`DomainStyle` bundles the tissue (cell size, object size and density, distractor
density, texture grain) and the imaging chain (voxel size, blur, contrast curve, noise) of
one "microscope + sample preparation". The generator renders a clean intensity image in
``[0, 1]`` (1 = bright cytoplasm, 0 = black), then applies ``blur -> contrast curve ->
noise`` and quantises to uint8. :data:`SOURCE_STYLE` and :data:`TARGET_STYLE` are the two
default domains; :func:`describe` lists how they differ.

Each field carries ``metadata={"doc": ..., "unit": ...}``; :func:`describe` and the README
read that text, so this module is the single place that documents the domain shift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

from masktwins_cli.errors import MaskTwinsError


def _doc(default, doc: str, unit: str = ""):
    """A dataclass field with a default and a ``{"doc", "unit"}`` metadata entry."""
    return field(default=default, metadata={"doc": doc, "unit": unit})


@dataclass(frozen=True)
class DomainStyle:
    """Tissue + imaging parameters of one domain (defaults = the source domain).

    Intensities and darkness values refer to the clean image before the contrast curve:
    cytoplasm is about ``cytoplasm_level`` and a structure with darkness ``d`` multiplies the
    local intensity by ``1 - d``.
    """

    name: str = _doc("source", "label of the domain, stored in metadata")
    # --- sampling grid -------------------------------------------------------------------
    voxel_size_nm: tuple[float, float, float] = _doc(
        (40.0, 5.0, 5.0), "voxel size (z, y, x): section thickness and in-plane pixel", "nm")
    # --- tissue --------------------------------------------------------------------------
    cell_diameter_nm: float = _doc(
        480.0, "mean cross-section diameter of the cells/neurites of the tessellation", "nm")
    cell_level_jitter: float = _doc(
        0.035, "std of the per-cell cytoplasm brightness offset", "intensity")
    cytoplasm_level: float = _doc(0.72, "mean cytoplasm intensity of the clean image", "intensity")
    background_amplitude: float = _doc(
        0.05, "std of the smooth low-frequency shading (correlation ~1 um)", "intensity")
    texture_scale_px: float = _doc(
        0.8, "grain size of the cytoplasm texture (Gaussian sigma of filtered noise)", "px")
    texture_amplitude: float = _doc(
        0.07, "std of the granular cytoplasm texture", "intensity")
    membrane_width_px: float = _doc(
        1.8, "mean cell-membrane line width (FWHM; varies +-30 % along the membrane)", "px")
    membrane_darkness: float = _doc(
        0.6, "relative darkening at the centre of a cell membrane", "fraction")
    # --- mitochondria (label 1) ----------------------------------------------------------
    mito_fraction: float = _doc(
        0.06, "fraction of voxels labelled mitochondrion (object density)", "fraction")
    mito_scale: float = _doc(
        1.0, "size factor of mitochondria (radius 32-50 nm and length, times this)", "x")
    mito_darkness: float = _doc(
        0.45, "relative darkening of the mitochondrial matrix", "fraction")
    mito_outline_darkness: float = _doc(
        0.3, "extra darkening of the double outer membrane", "fraction")
    cristae_contrast: float = _doc(
        0.4, "brightening of the cristae bands, relative to the matrix darkening", "fraction")
    # --- distractors (label 0) -----------------------------------------------------------
    blob_fraction: float = _doc(
        0.012, "fraction of voxels covered by dark lysosome-like blobs", "fraction")
    blob_darkness: float = _doc(
        0.5, "mean relative darkening of the dark blobs", "fraction")
    vesicle_fraction: float = _doc(
        0.01, "fraction of voxels covered by (clustered) vesicles", "fraction")
    # --- imaging chain -------------------------------------------------------------------
    blur_sigma_px: float = _doc(0.7, "in-plane Gaussian PSF sigma", "px")
    gamma: float = _doc(1.0, "contrast curve exponent: y = offset + gain * x**gamma", "")
    contrast_gain: float = _doc(1.0, "contrast curve gain", "")
    contrast_offset: float = _doc(0.0, "contrast curve offset", "intensity")
    gaussian_noise_std: float = _doc(0.06, "std of additive Gaussian read noise", "intensity")
    shot_noise_photons: float = _doc(
        0.0, "Poisson shot noise: expected counts at intensity 1 (0 = no shot noise)", "counts")
    section_jitter: float = _doc(
        0.02, "std of the per-section brightness gain (section thickness/staining)", "fraction")

    def __post_init__(self) -> None:
        _validate(self)


_FRACTIONS = ("mito_fraction", "blob_fraction", "vesicle_fraction")
_UNIT_INTERVAL = ("cytoplasm_level", "membrane_darkness", "mito_darkness",
                  "mito_outline_darkness", "cristae_contrast", "blob_darkness")
_POSITIVE = ("cell_diameter_nm", "texture_scale_px", "membrane_width_px", "mito_scale",
             "gamma", "contrast_gain")


def _validate(style: DomainStyle) -> None:
    """Raise :class:`MaskTwinsError` if a field of ``style`` is out of its valid range."""
    if not isinstance(style.name, str) or not style.name:
        raise MaskTwinsError(f"DomainStyle.name: expected a non-empty string, got {style.name!r}")
    vs = style.voxel_size_nm
    is_list = isinstance(vs, (tuple, list))
    positive = is_list and all(isinstance(v, (int, float)) and v > 0 for v in vs)
    if not isinstance(vs, (tuple, list)) or len(vs) != 3 or not positive:
        raise MaskTwinsError(f"DomainStyle.voxel_size_nm: expected 3 positive numbers, got {vs}")
    for f in fields(style):
        value = getattr(style, f.name)
        if f.name in ("name", "voxel_size_nm"):
            continue
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise MaskTwinsError(f"DomainStyle.{f.name}: expected a finite number >= 0, "
                                 f"got {value!r}")
        if f.name in _FRACTIONS and value > 0.3:
            raise MaskTwinsError(f"DomainStyle.{f.name}: expected a fraction <= 0.3, got {value}")
        if f.name in _UNIT_INTERVAL and value > 1:
            raise MaskTwinsError(f"DomainStyle.{f.name}: expected a value in [0, 1], got {value}")
        if f.name in _POSITIVE and value <= 0:
            raise MaskTwinsError(f"DomainStyle.{f.name}: expected a value > 0, got {value}")


SOURCE_STYLE = DomainStyle()
"""Source domain: sharp, high-contrast, Gaussian noise, 40 nm sections at 5 nm pixels."""

TARGET_STYLE = DomainStyle(
    name="target",
    voxel_size_nm=(30.0, 6.0, 6.0),
    cell_diameter_nm=580.0,
    texture_scale_px=1.5,
    texture_amplitude=0.08,
    membrane_darkness=0.55,
    mito_fraction=0.065,
    mito_scale=1.6,
    mito_outline_darkness=0.25,
    blob_fraction=0.03,
    blob_darkness=0.55,
    vesicle_fraction=0.015,
    blur_sigma_px=1.8,
    gamma=0.65,
    contrast_gain=0.85,
    contrast_offset=0.08,
    gaussian_noise_std=0.1,
    shot_noise_photons=60.0,
    section_jitter=0.03,
)
"""Target domain: a noisier, blurrier microscope and a different tissue. Gamma 0.65 with gain
0.85 / offset 0.08 (brighter, about half the mitochondria/cytoplasm contrast), Poisson shot
noise (60 counts at full intensity) plus Gaussian read noise 0.1 (about 2.5x the source's noise),
blur 1.8 px instead of 0.7, ~2x coarser grain, mitochondria 1.6x larger in nm (1.33x in pixels),
2.5x more lysosome-like blobs, 30 nm sections at 6 nm pixels. Chosen with training runs: a
source-only 2-D U-Net keeps a foothold (IoU ~0.45) but loses ~0.3 IoU against an Oracle."""


def style_doc(name: str) -> str:
    """One-line documentation (with unit) of the :class:`DomainStyle` field ``name``."""
    for f in fields(DomainStyle):
        if f.name == name:
            unit = f.metadata.get("unit", "")
            return f.metadata["doc"] + (f" [{unit}]" if unit else "")
    raise MaskTwinsError(f"DomainStyle has no field {name!r}")


def describe(source: DomainStyle = SOURCE_STYLE, target: DomainStyle = TARGET_STYLE) -> dict:
    """The fields (other than ``name``) in which ``target`` differs from ``source``.

    Returns ``{field: {"source": value, "target": value, "doc": text}}`` (plus ``"ratio"``
    = target / source for non-zero numeric fields), in declaration order, and the derived
    entry ``"mito_size_px_ratio"``: how much larger target mitochondria look in pixels
    (``mito_scale`` divided by the in-plane pixel size).
    """
    out: dict = {}
    for f in fields(DomainStyle):
        a, b = getattr(source, f.name), getattr(target, f.name)
        if a == b or f.name == "name":
            continue
        entry = {"source": a, "target": b, "doc": style_doc(f.name)}
        if isinstance(a, (int, float)) and not isinstance(a, bool) and a != 0:
            entry["ratio"] = round(b / a, 3)
        out[f.name] = entry
    src_px = source.mito_scale / source.voxel_size_nm[1]
    tgt_px = target.mito_scale / target.voxel_size_nm[1]
    out["mito_size_px_ratio"] = round(tgt_px / src_px, 3)
    return out
