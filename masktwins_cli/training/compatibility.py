"""Whether a checkpoint can be resumed with a recipe (same network, method and data)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..config.recipe import recipe_from_dict, recipe_to_dict
from ..errors import MaskTwinsError

# [train] keys that may change between a checkpoint and its resumed run (and data.root, so a
# data folder can move).
RESUMABLE_CHANGES = {"iterations", "log_every", "checkpoint_every", "val_every", "output_dir",
                     "threads", "device"}


def _first_difference(old: Mapping[str, Any], new: Mapping[str, Any]) -> str | None:
    for section in sorted(set(old) | set(new)):
        a, b = old.get(section, {}), new.get(section, {})
        for key in sorted(set(a) | set(b)):
            if section == "train" and key in RESUMABLE_CHANGES:
                continue
            if section in ("infer", "evaluate") or (section == "data" and key == "root"):
                continue
            if a.get(key) != b.get(key):
                return f"{section}.{key}: checkpoint has {a.get(key)!r}, recipe has {b.get(key)!r}"
    return None


def check_resume_compatible(saved: Mapping[str, Any], current: Mapping[str, Any], path: Path) -> None:
    """Resuming needs the same network, method and data as the checkpoint. Keys the checkpoint
    predates (a recipe written before a section or key existed) count as their defaults."""
    try:
        saved = recipe_to_dict(recipe_from_dict(saved))
    except MaskTwinsError:
        pass  # compared as stored: the first difference is named below
    diff = _first_difference(saved, current)
    if diff is not None:
        raise MaskTwinsError(f"checkpoint {path} comes from an incompatible recipe ({diff})")
