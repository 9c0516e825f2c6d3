"""Network construction from a recipe, device choice and checkpoint compatibility."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..config.recipe import recipe_from_dict, recipe_to_dict
from ..config.schema import Recipe
from ..errors import MaskTwinsError
from ..models import build_model

# [train] keys that may change between a checkpoint and its resumed run (and data.root, so a
# data folder can move).
RESUMABLE_CHANGES = {"iterations", "log_every", "checkpoint_every", "val_every", "output_dir",
                     "threads", "device"}


def resolve_device(choice: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is an error."""
    if choice == "cuda" and not torch.cuda.is_available():
        raise MaskTwinsError("recipe key 'train.device' = 'cuda': no CUDA GPU is available here")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def build_from_recipe(recipe: Recipe) -> torch.nn.Module:
    """The recipe's network, freshly initialised (seed the global torch RNG first)."""
    m = recipe.model
    return build_model(m.name, m.spatial_dims, in_channels=m.in_channels, num_classes=m.num_classes,
                       features=m.features, norm=m.norm, pool=m.pool, dropout=m.dropout)


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


def load_weights(model: torch.nn.Module, state: Mapping[str, Any], path: Path) -> None:
    """Load a state dict; a mismatch becomes a one-line error naming the checkpoint."""
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError) as err:
        first = str(err).splitlines()[0][:200]
        raise MaskTwinsError(f"checkpoint {path} does not match its network: {first}") from None
