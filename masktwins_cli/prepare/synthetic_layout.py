"""The layout shared by the synthetic mitochondria and synapse pairs: volume names and chunking."""

from __future__ import annotations

VOLUMES = ("source", "target_train", "target_test")


def chunks_for(shape: tuple[int, ...], dims: int) -> tuple[int, ...]:
    """Chunking: whole slices of up to 256^2 for 2-D work, 32^3-ish boxes for 3-D."""
    z, y, x = shape
    if dims == 2:
        return (1, min(y, 256), min(x, 256))
    return (min(z, 16), min(y, 64), min(x, 64))
