"""A five-stage 2D/3D U-Net built from MONAI blocks, with a hook on the encoder stages.

One definition for 2D and 3D via ``spatial_dims``. Each stage is two (conv 3 - norm - LeakyReLU)
blocks; down-sampling is max-pooling with a per-stage kernel, so anisotropic EM volumes can be
pooled in-plane only at first (e.g. (1, 2, 2)). The decoder up-samples with transposed
convolutions and concatenates the skip connection.

``forward(x, stage_hook)`` calls ``stage_hook(stage_index, features)`` after every encoder stage
and continues with what it returns; training uses it for AdaIN (record target statistics,
re-style source features). Without a hook the network is a plain U-Net.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from monai.networks.blocks import Convolution, UpSample
from monai.networks.layers.factories import Pool
from torch import nn

StageHook = Callable[[int, torch.Tensor], torch.Tensor]

NORMS = {"instance": ("instance", {"affine": True}), "batch": "batch"}


def double_conv(spatial_dims: int, in_ch: int, out_ch: int, norm: str, dropout: float) -> nn.Sequential:
    """Two 3x3(x3) convolutions, each followed by norm and LeakyReLU."""
    def conv(i: int, o: int) -> Convolution:
        return Convolution(spatial_dims, i, o, kernel_size=3, norm=NORMS[norm],
                           act=("leakyrelu", {"negative_slope": 0.01, "inplace": True}),
                           dropout=dropout or None, bias=False)
    return nn.Sequential(conv(in_ch, out_ch), conv(out_ch, out_ch))


class UNet(nn.Module):
    """U-Net with five stages.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        num_classes: output channels (logits).
        features: channels of the five stages.
        norm: ``instance`` or ``batch``.
        pool: four pooling kernels (one per down step), each an int or a per-axis tuple.
        dropout: dropout probability inside the convolution blocks.

    Input (B, in_channels, *spatial) with every spatial size divisible by the product of the pool
    kernels on that axis; output (B, num_classes, *spatial) logits.
    """

    def __init__(self, spatial_dims: int, in_channels: int, num_classes: int,
                 features: Sequence[int], norm: str = "instance",
                 pool: Sequence[int | Sequence[int]] | None = None, dropout: float = 0.0):
        super().__init__()
        if len(features) != 5:
            raise ValueError(f"features must have 5 entries, got {list(features)}")
        pool = list(pool) if pool else [2] * 4
        self.spatial_dims = spatial_dims
        self.encoder = nn.ModuleList()
        self.down = nn.ModuleList()
        channels = in_channels
        for stage, width in enumerate(features):
            self.encoder.append(double_conv(spatial_dims, channels, width, norm, dropout))
            channels = width
            if stage < 4:
                kernel = tuple(pool[stage]) if isinstance(pool[stage], (list, tuple)) else pool[stage]
                self.down.append(Pool[Pool.MAX, spatial_dims](kernel_size=kernel, stride=kernel))
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for stage in range(3, -1, -1):
            kernel = pool[stage]
            self.up.append(UpSample(spatial_dims, features[stage + 1], features[stage],
                                    scale_factor=kernel, mode="deconv"))
            self.decoder.append(double_conv(spatial_dims, 2 * features[stage], features[stage],
                                            norm, dropout))
        self.head = Convolution(spatial_dims, features[0], num_classes, kernel_size=1,
                                conv_only=True)

    def forward(self, x: torch.Tensor, stage_hook: StageHook | None = None) -> torch.Tensor:
        skips = []
        for stage, block in enumerate(self.encoder):
            x = block(x)
            if stage_hook is not None:
                x = stage_hook(stage, x)
            if stage < 4:
                skips.append(x)
                x = self.down[stage](x)
        for up, block in zip(self.up, self.decoder):
            x = block(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)
