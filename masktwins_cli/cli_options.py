"""Option text -> values: the only place where the command line's spelled-out values are parsed.

One parser per kind of option; each returns what the library functions take and raises a
one-line :class:`MaskTwinsError` naming the option and an example otherwise. ``None`` (the
option was not given) stays ``None``.

* :func:`zyx_counts`: three positive integers (``--shape 8,128,128``, ``--block-shape``);
* :func:`zyx_nanometres`: three positive finite numbers in nm (``--voxel-size 50,4.6,4.6``);
* :func:`zyx_offset`: three finite numbers of any sign (``--offset``, voxels);
* :func:`label_map`: ``VALUE:CLASS`` pairs (``--label-map 191:1,223:2``);
* :func:`shard`: ``i/N`` with 1 <= i <= N (``--shard 2/8``);
* :func:`file_pair`: ``PRED,TRUTH`` (``--pair pred.csv,truth.h5``);
* :func:`class_list`: class ids (``--classes 0,1,2,5``).

``x`` may separate the three numbers as well as ``,`` (``8x128x128``).
"""

from __future__ import annotations

import math
import re

from .errors import MaskTwinsError

_SHARD = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")
_SIZE = re.compile(r"\s*(\d+)\s*[xX]\s*(\d+)\s*")


def _three(text: str, kind: type) -> tuple | None:
    """The three comma- (or x-) separated values of ``text`` as ``kind``; None if malformed."""
    try:
        values = tuple(kind(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        return None
    return values if len(values) == 3 else None


def zyx_counts(text: str | None, option: str, example: str = "8,128,128") -> tuple[int, int, int] | None:
    """``"8,128,128"`` -> (8, 128, 128): three positive integers Z,Y,X (voxels)."""
    if text is None:
        return None
    values = _three(text, int)
    if values is None or min(values) < 1:
        raise MaskTwinsError(f"{option} {text!r}: expected three positive integers Z,Y,X, "
                             f"e.g. {example}")
    return values  # type: ignore[return-value]


def zyx_nanometres(text: str | None, option: str) -> tuple[float, float, float] | None:
    """``"50,4.6,4.6"`` -> (50.0, 4.6, 4.6): three positive finite numbers Z,Y,X in nm."""
    if text is None:
        return None
    values = _three(text, float)
    if values is None or not all(0 < v < math.inf for v in values):
        raise MaskTwinsError(f"{option} {text!r}: expected three positive numbers Z,Y,X in nm, "
                             "e.g. 50,4.6,4.6")
    return values  # type: ignore[return-value]


def zyx_offset(text: str | None, option: str) -> tuple[float, float, float] | None:
    """``"0,-12,40.5"`` -> (0.0, -12.0, 40.5): three finite numbers Z,Y,X (voxels)."""
    if text is None:
        return None
    values = _three(text, float)
    if values is None or not all(math.isfinite(v) for v in values):
        raise MaskTwinsError(f"{option} {text!r}: expected three numbers Z,Y,X (voxels), "
                             "e.g. 0,100,100")
    return values  # type: ignore[return-value]


def label_map(text: str | None, option: str = "--label-map") -> tuple[tuple[int, int], ...] | None:
    """``"191:1,223:2"`` -> ((191, 1), (223, 2)); classes 0..255, each value listed once."""
    if text is None:
        return None
    pairs: dict[int, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        try:
            value, cls = (int(v) for v in item.split(":"))
        except ValueError:
            raise MaskTwinsError(f"{option} {text!r}: entry {item!r} is not VALUE:CLASS, "
                                 f"e.g. {option} '191:1,223:2'") from None
        if not 0 <= cls <= 255:
            raise MaskTwinsError(f"{option} {text!r}: class {cls} is outside 0..255")
        if value in pairs:
            raise MaskTwinsError(f"{option} {text!r}: value {value} is listed twice")
        pairs[value] = cls
    if not pairs:
        raise MaskTwinsError(f"{option} {text!r}: no VALUE:CLASS entries")
    return tuple(pairs.items())


def shard(text: str | None, option: str = "--shard") -> tuple[int, int] | None:
    """``"i/N"`` -> (i, N) with 1 <= i <= N (1-based)."""
    if text is None:
        return None
    match = _SHARD.fullmatch(text)
    if match is None or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise MaskTwinsError(f"{option} {text!r}: expected i/N with 1 <= i <= N (1-based), "
                             f"e.g. {option} 1/4")
    return int(match.group(1)), int(match.group(2))


def image_size(text: str | None, option: str = "--size") -> tuple[int, int] | None:
    """``"1280x720"`` (width x height, as image sizes are written) -> (720, 1280), (y, x)."""
    if text is None:
        return None
    match = _SIZE.fullmatch(text)
    if not match or min(int(match.group(1)), int(match.group(2))) < 1:
        raise MaskTwinsError(f"{option} {text!r}: expected WIDTHxHEIGHT in pixels, e.g. "
                             f"{option} 1280x720")
    return int(match.group(2)), int(match.group(1))


def file_pair(text: str, option: str = "--pair") -> tuple[str, str]:
    """``"pred.csv,truth.h5"`` -> ("pred.csv", "truth.h5")."""
    parts = [part.strip() for part in text.split(",")]
    if len(parts) != 2 or not all(parts):
        raise MaskTwinsError(f"{option} {text!r}: expected PRED,TRUTH (two point tables)")
    return parts[0], parts[1]


def class_list(text: str | None, option: str = "--classes") -> tuple[int, ...] | None:
    """``"0,1,2,5"`` -> (0, 1, 2, 5): distinct non-negative integers."""
    if text is None:
        return None
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 0 or len(set(values)) != len(values):
        raise MaskTwinsError(f"{option} {text!r}: expected distinct class ids, e.g. {option} 0,1,2")
    return values
