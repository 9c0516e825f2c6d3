"""Procedural EM-like volumes: mitochondria (labels) and synapses (point tables), each as a
labelled source domain and a shifted target domain.

See :mod:`masktwins_cli.synthetic.mito` (mitochondria volumes), :mod:`.synapses` (synapse
volumes, placed by :mod:`.synapse_sites`), :mod:`.styles` / :mod:`.synapse_styles` (the domain
shifts), :mod:`.shapes` / :mod:`.objects` (geometry) and :mod:`.imaging` (microscope model).
"""

from masktwins_cli.synthetic.mito import (
    DEFAULT_SHAPES,
    MitoDomainPair,
    SyntheticVolume,
    generate_mito_pair,
    render_volume,
)
from masktwins_cli.synthetic.styles import SOURCE_STYLE, TARGET_STYLE, DomainStyle, describe
from masktwins_cli.synthetic.synapse_styles import (
    SYNAPSE_SOURCE_STYLE,
    SYNAPSE_TARGET_STYLE,
    SynapseStyle,
    describe_synapse_styles,
)
from masktwins_cli.synthetic.synapses import (
    DEFAULT_SYNAPSE_SHAPE,
    SynapseDomainPair,
    generate_synapse_pair,
    synapse_volume,
)

__all__ = [
    "DEFAULT_SHAPES",
    "DEFAULT_SYNAPSE_SHAPE",
    "SOURCE_STYLE",
    "SYNAPSE_SOURCE_STYLE",
    "SYNAPSE_TARGET_STYLE",
    "TARGET_STYLE",
    "DomainStyle",
    "MitoDomainPair",
    "SynapseDomainPair",
    "SynapseStyle",
    "SyntheticVolume",
    "describe",
    "describe_synapse_styles",
    "generate_mito_pair",
    "generate_synapse_pair",
    "render_volume",
    "synapse_volume",
]
