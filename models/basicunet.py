"""MONAI's BasicUNet with the stage hook of :mod:`.unet`: the benchmark network of the
performance targets (features (32, 32, 64, 128, 256, 32) in 3-D).

MONAI's layers and weights as they are (``conv_0``, ``down_1..4``, ``upcat_4..1``,
``final_conv``); only ``forward`` is ours so that ``stage_hook(stage_index, features)`` runs
after ``conv_0`` (stage 0) and after each down step (stages 1-4), which is how AdaIN attaches.
Features: six widths, five encoder stages and the last up-sampling stage.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from monai.networks.nets import BasicUNet

StageHook = Callable[[int, torch.Tensor], torch.Tensor]

DEFAULT_FEATURES = (32, 32, 64, 128, 256, 32)
NORMS = {"instance": ("instance", {"affine": True}), "batch": ("batch", {})}


class HookedBasicUNet(BasicUNet):
    """``BasicUNet(spatial_dims, in_channels, num_classes, features, norm, dropout)`` whose
    forward takes an optional stage hook. Input (B, in_channels, *spatial), every spatial size
    divisible by 16; output (B, num_classes, *spatial) logits."""

    def __init__(self, spatial_dims: int, in_channels: int, num_classes: int,
                 features: Sequence[int] = DEFAULT_FEATURES, norm: str = "instance",
                 dropout: float = 0.0):
        if len(features) != 6:
            raise ValueError(f"basicunet takes 6 features, got {list(features)}")
        super().__init__(spatial_dims=spatial_dims, in_channels=in_channels,
                         out_channels=num_classes, features=tuple(features), norm=NORMS[norm],
                         dropout=dropout)

    def forward(self, x: torch.Tensor, stage_hook: StageHook | None = None) -> torch.Tensor:
        def hook(stage: int, features: torch.Tensor) -> torch.Tensor:
            return stage_hook(stage, features) if stage_hook is not None else features

        x0 = hook(0, self.conv_0(x))
        x1 = hook(1, self.down_1(x0))
        x2 = hook(2, self.down_2(x1))
        x3 = hook(3, self.down_3(x2))
        x4 = hook(4, self.down_4(x3))
        u4 = self.upcat_4(x4, x3)
        u3 = self.upcat_3(u4, x2)
        u2 = self.upcat_2(u3, x1)
        u1 = self.upcat_1(u2, x0)
        return self.final_conv(u1)
