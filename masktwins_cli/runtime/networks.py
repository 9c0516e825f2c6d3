"""The network of a recipe, and loading weights into it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..config.schema import Recipe
from ..errors import MaskTwinsError
from ..models import build_model


def build_from_recipe(recipe: Recipe) -> torch.nn.Module:
    """The recipe's network, freshly initialised (seed the global torch RNG first)."""
    m = recipe.model
    return build_model(m.name, m.spatial_dims, in_channels=m.in_channels, num_classes=m.num_classes,
                       features=m.features, norm=m.norm, pool=m.pool, dropout=m.dropout)


def load_weights(model: torch.nn.Module, state: Mapping[str, Any], path: Path) -> None:
    """Load a state dict; a mismatch becomes a one-line error naming the checkpoint."""
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError) as err:
        first = str(err).splitlines()[0][:200]
        raise MaskTwinsError(f"checkpoint {path} does not match its network: {first}") from None
