"""Procedural EM-like volumes with mitochondria labels: a source and a shifted target domain.

See :mod:`masktwins_cli.synthetic.mito` (volumes), :mod:`.styles` (the domain shift),
:mod:`.shapes` / :mod:`.objects` (geometry) and :mod:`.imaging` (microscope model).
"""

from masktwins_cli.synthetic.mito import (
    DEFAULT_SHAPES,
    MitoDomainPair,
    SyntheticVolume,
    generate_mito_pair,
    render_volume,
)
from masktwins_cli.synthetic.styles import SOURCE_STYLE, TARGET_STYLE, DomainStyle, describe

__all__ = [
    "DEFAULT_SHAPES",
    "SOURCE_STYLE",
    "TARGET_STYLE",
    "DomainStyle",
    "MitoDomainPair",
    "SyntheticVolume",
    "describe",
    "generate_mito_pair",
    "render_volume",
]
