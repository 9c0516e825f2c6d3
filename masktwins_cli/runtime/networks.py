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
    if m.name == "segformer":
        try:
            return build_model(m.name, m.spatial_dims, in_channels=m.in_channels,
                               num_classes=m.num_classes, encoder=m.encoder,
                               decoder_channels=m.decoder_channels, hrda=m.hrda,
                               hrda_scale=m.hrda_scale, hrda_detail=m.hrda_detail,
                               hrda_detail_loss=m.hrda_detail_loss)
        except ImportError as err:
            raise MaskTwinsError(f"recipe key 'model.name' = 'segformer': {err}") from None
    return build_model(m.name, m.spatial_dims, in_channels=m.in_channels, num_classes=m.num_classes,
                       features=m.features, norm=m.norm, pool=m.pool, dropout=m.dropout)


def load_pretrained_encoder(model: torch.nn.Module, path: str | Path, encoder: str) -> None:
    """ImageNet MiT weights in the original layout (see :mod:`masktwins_cli.models.mit_weights`)
    into a segformer's encoder; every missing or extra key (or a wrong shape) is one
    MaskTwinsError line naming the file (``model.pretrained``)."""
    from ..models.mit_weights import from_original

    path = Path(path).expanduser()
    if not path.is_file():
        raise MaskTwinsError(f"recipe key 'model.pretrained' = '{path}': no such file (download "
                             f"the ImageNet {encoder} weights by hand, e.g. mit_b5.pth)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip, permissions ...
        raise MaskTwinsError(f"model.pretrained '{path}': cannot read it as torch weights "
                             f"({type(err).__name__}: {str(err).splitlines()[0][:120]})") from None
    if not isinstance(state, Mapping):
        raise MaskTwinsError(f"model.pretrained '{path}': holds {type(state).__name__}, not a "
                             "dict of weights")
    converted, unknown = from_original(state)
    expected = model.encoder.state_dict()
    missing = sorted(set(expected) - set(converted))
    shapes = [k for k in expected if k in converted and converted[k].shape != expected[k].shape]
    if missing or unknown or shapes:
        parts = [f"{len(items)} {what} (first: {items[0]})" for what, items in
                 (("missing key(s)", missing), ("extra key(s)", unknown),
                  ("key(s) of another shape", shapes)) if items]
        raise MaskTwinsError(f"model.pretrained '{path}' does not fit model.encoder = "
                             f"'{encoder}': {'; '.join(parts)}")
    model.encoder.load_state_dict(converted)


def load_weights(model: torch.nn.Module, state: Mapping[str, Any], path: Path) -> None:
    """Load a state dict; a mismatch becomes a one-line error naming the checkpoint."""
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError) as err:
        first = str(err).splitlines()[0][:200]
        raise MaskTwinsError(f"checkpoint {path} does not match its network: {first}") from None
