"""Checkpoints: plain data (recipe dict, state dicts, step, RNG states), written atomically and
loaded with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import MaskTwinsError
from .atomic import atomic_path

FORMAT = "masktwins-checkpoint"
VERSION = 1


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus format tags) to ``path`` durably and atomically. A write that
    fails (a full disk, a quota) is a MaskTwinsError naming the file; an older checkpoint under
    the same name is left as it was."""
    path = Path(path)
    try:
        with atomic_path(path) as temporary:
            torch.save({"format": FORMAT, "version": VERSION, **payload}, temporary)
    except (RuntimeError, OSError) as err:  # torch reports write failures as RuntimeError
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise MaskTwinsError(f"cannot write checkpoint {path}: {reason} (is the disk full?); "
                             "the previous checkpoint, if any, is unchanged") from None
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; one-line errors for bad files."""
    path = Path(path)
    if not path.is_file():
        raise MaskTwinsError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except MemoryError:
        raise
    except Exception as err:  # torch raises many types for damaged files  # noqa: BLE001
        raise MaskTwinsError(f"checkpoint {path} is unreadable or corrupt "
                             f"({type(err).__name__}); expected a file written by masktwins train"
                             ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise MaskTwinsError(f"checkpoint {path} is not a masktwins checkpoint")
    if payload.get("version") != VERSION:
        raise MaskTwinsError(f"checkpoint {path} has format version {payload.get('version')}; "
                             f"this masktwins reads version {VERSION}")
    return payload
