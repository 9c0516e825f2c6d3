"""Registry: recipe model name -> builder. Every builder takes ``spatial_dims``."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .basicunet import HookedBasicUNet
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


def build_basicunet(spatial_dims: int, in_channels: int = 1, num_classes: int = 2,
                    features=(32, 32, 64, 128, 256, 32), norm: str = "instance", pool=None,
                    dropout: float = 0.0) -> nn.Module:
    """MONAI's BasicUNet with a stage hook (:mod:`.basicunet`); pooling is always 2."""
    if pool:
        raise ValueError("basicunet pools by 2 on every axis; leave model.pool empty")
    return HookedBasicUNet(spatial_dims, in_channels, num_classes, features, norm, dropout)


def build_segformer(spatial_dims: int, in_channels: int = 3, num_classes: int = 19,
                    encoder: str = "mit_b5", decoder_channels: int = 256, hrda: bool = False,
                    hrda_scale: float = 0.5, hrda_detail=(512, 512),
                    hrda_detail_loss: float = 0.1) -> nn.Module:
    """SegFormer's MiT encoder with the DAFormer decoder (:mod:`.segformer`), inside HRDA's
    multi-resolution wrapper when ``hrda`` (:mod:`.hrda`); 2-D only."""
    if spatial_dims != 2:
        raise ValueError("segformer is a 2-D network")
    if hrda:
        from .hrda import HRDA

        return HRDA(in_channels, num_classes, encoder, decoder_channels, hrda_scale, hrda_detail,
                    detail_loss=hrda_detail_loss)
    from .segformer import SegFormer

    return SegFormer(in_channels, num_classes, encoder, decoder_channels)


MODEL_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "unet": build_unet, "resunet": build_resunet, "basicunet": build_basicunet,
    "segformer": build_segformer}


def build_model(name: str, spatial_dims: int, **options) -> nn.Module:
    """Build a registered network; ``options`` are the builder's keyword arguments."""
    if name not in MODEL_BUILDERS:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(MODEL_BUILDERS)}")
    return MODEL_BUILDERS[name](spatial_dims=spatial_dims, **options)
