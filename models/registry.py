"""Registry: recipe model name -> builder. Every builder takes ``spatial_dims``."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .resunet import DEFAULT_FEATURES, ResUNet
from .unet import UNet


def build_unet(spatial_dims: int, in_channels: int, num_classes: int, features, norm: str,
               pool, dropout: float) -> nn.Module:
    """The five-stage U-Net of :mod:`.unet`."""
    return UNet(spatial_dims, in_channels, num_classes, features, norm, pool or None, dropout)


def build_resunet(spatial_dims: int, in_channels: int = 1, num_classes: int = 2,
                  features=DEFAULT_FEATURES, norm: str = "batch", pool=None,
                  dropout: float = 0.0) -> nn.Module:
    """The isotropic residual U-Net of :mod:`.resunet` (synapses: 2 logit channels, pre/post)."""
    return ResUNet(spatial_dims, in_channels, num_classes, features, norm, pool or None, dropout)


MODEL_BUILDERS: dict[str, Callable[..., nn.Module]] = {"unet": build_unet, "resunet": build_resunet}


def build_model(name: str, spatial_dims: int, **options) -> nn.Module:
    """Build a registered network; ``options`` are the builder's keyword arguments."""
    if name not in MODEL_BUILDERS:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(MODEL_BUILDERS)}")
    return MODEL_BUILDERS[name](spatial_dims=spatial_dims, **options)
