"""Image volumes as the network sees them: one channel ((y, x) or (z, y, x)) or several
(channel-first (c, z, y, x), the OME-Zarr axis order, e.g. RGB).
"""

from __future__ import annotations

from ..errors import MaskTwinsError
from ..io.layout import channel_count


def check_channels(shape: tuple[int, ...], in_channels: int, name: str,
                   whose: str = "model.in_channels", trained: bool = False) -> None:
    """The image's channel count must be the model's ``in_channels``; a MaskTwinsError naming
    the volume ``name`` and ``whose`` setting it differs from otherwise (``trained``: the
    network exists already, so only the volume can change)."""
    channels = channel_count(tuple(shape))
    if channels == in_channels:
        return
    if len(shape) < 4:
        hint = ("multi-channel volumes are stored channel-first (c, z, y, x); masktwins prepare "
                "stack --rgb writes colour images that way")
    elif trained:
        hint = f"give a {in_channels}-channel volume"
    else:
        hint = f"set model.in_channels = {channels} for this volume, or give a {in_channels}-channel one"
    raise MaskTwinsError(f"{name}: {channels} channel(s) (shape {tuple(shape)}) but {whose} = "
                         f"{in_channels}; {hint}")
