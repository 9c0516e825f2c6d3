"""A residual U-Net with isotropic convolutions: the synapse network of AdaSyn / MaskTwins.

The "superhuman" design of Lee et al. 2017 (arXiv:1706.00120) in its isotropic form (AdaSyn's
``UNet_PNI_iso``, filters 28-36-48-64-80, batch norm, ELU), for 8 nm isotropic EM such as
WASP-SYN::

    embed_in      conv 5 (+ bias) - ELU                      in_channels -> features[0]
    stage 1..S    residual block (conv 3, norm, ELU; x + conv 3 - norm - ELU - conv 3 - norm;
                  norm - ELU), max-pool between stages        features[0] -> ... -> features[-1]
    decoder       interpolate (bi/trilinear) - conv 1 to the skip's width, add the skip,
                  norm - ELU, residual block                  back to features[0]
    embed_out     conv 5 (+ bias) - ELU                      features[0] -> features[0]
    head          conv 1 (+ bias)                            features[0] -> out_channels

The head returns **logits**: for synapses one independent channel per target (0 = pre,
1 = post), to which the loss (binary cross-entropy with logits) and inference apply the sigmoid.
AdaSyn applies the sigmoid inside the network; keeping it outside lets the loss use the stable
``binary_cross_entropy_with_logits`` and lets mixed precision work.

``forward(x, stage_hook)`` calls ``stage_hook(stage_index, features)`` after ``embed_in`` (stage 0)
and after every residual encoder stage (stages 1..S, S = ``len(features)``), and continues with
what it returns -- the hook contract of :mod:`.unet`. AdaIN with two stages thus acts after
``embed_in`` and the first residual block, as in AdaSyn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Pool
from monai.networks.layers.utils import get_norm_layer
from torch import nn

StageHook = Callable[[int, torch.Tensor], torch.Tensor]

DEFAULT_FEATURES = (28, 36, 48, 64, 80)
"""Widths of the five residual encoder stages (AdaSyn / Lee et al. 2017)."""
NORMS = {"instance": ("instance", {"affine": True}), "batch": "batch"}
ELU = ("elu", {"inplace": True})
INTERPOLATION = {2: "bilinear", 3: "trilinear"}


def conv_block(spatial_dims: int, in_ch: int, out_ch: int, kernel_size: int, norm: str | None,
               act: bool = True, dropout: float = 0.0) -> Convolution:
    """conv (``kernel_size``, same padding) [- norm] [- dropout] [- ELU]; bias only without norm."""
    return Convolution(spatial_dims, in_ch, out_ch, kernel_size=kernel_size,
                       norm=NORMS[norm] if norm else None, act=ELU if act else None,
                       dropout=dropout or None, bias=norm is None)


def norm_elu(spatial_dims: int, channels: int, norm: str) -> nn.Sequential:
    """norm - ELU on ``channels`` feature maps."""
    return nn.Sequential(get_norm_layer(NORMS[norm], spatial_dims, channels), nn.ELU(inplace=True))


class ResidualBlock(nn.Module):
    """Lee et al.'s residual block: ``y = norm-ELU(h + conv-norm-ELU-conv-norm(h))`` with
    ``h = conv-norm-ELU(x)`` (all 3x3(x3)); (B, in_ch, *S) -> (B, out_ch, *S)."""

    def __init__(self, spatial_dims: int, in_ch: int, out_ch: int, norm: str, dropout: float = 0.0):
        super().__init__()
        self.project = conv_block(spatial_dims, in_ch, out_ch, 3, norm)
        self.body = nn.Sequential(conv_block(spatial_dims, out_ch, out_ch, 3, norm, dropout=dropout),
                                  conv_block(spatial_dims, out_ch, out_ch, 3, norm, act=False))
        self.merge = norm_elu(spatial_dims, out_ch, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.project(x)
        return self.merge(h + self.body(h))


class ResUNet(nn.Module):
    """Isotropic residual U-Net (module docstring).

    Args:
        spatial_dims: 3 (volumes, the intended use) or 2 (sections).
        in_channels: input channels.
        out_channels: output logit channels (2: pre, post).
        features: widths of the residual encoder stages, at least 2 (default 28-36-48-64-80);
            the embedding has ``features[0]`` channels.
        norm: ``batch`` (AdaSyn) or ``instance``.
        pool: one max-pooling kernel per down step (``len(features) - 1``), each an int or a
            per-axis tuple; None = 2 on every axis.
        dropout: dropout probability inside the residual blocks.

    Input (B, in_channels, *spatial), every spatial size at least the product of the pool kernels
    on that axis (16 by default); sizes not divisible by it are handled (up-sampling goes to the
    skip's exact size). Output (B, out_channels, *spatial) logits, same spatial size.
    """

    def __init__(self, spatial_dims: int = 3, in_channels: int = 1, out_channels: int = 2,
                 features: Sequence[int] = DEFAULT_FEATURES, norm: str = "batch",
                 pool: Sequence[int | Sequence[int]] | None = None, dropout: float = 0.0):
        super().__init__()
        features = [int(f) for f in features]
        _check_arguments(spatial_dims, features, norm)
        self.spatial_dims = spatial_dims
        self.pool_kernels = _pool_kernels(pool, len(features) - 1, spatial_dims)
        self.embed_in = conv_block(spatial_dims, in_channels, features[0], 5, None)
        widths = [features[0], *features]
        self.encoder = nn.ModuleList(ResidualBlock(spatial_dims, widths[i], widths[i + 1], norm, dropout)
                                     for i in range(len(features)))
        self.down = nn.ModuleList(Pool[Pool.MAX, spatial_dims](kernel_size=k, stride=k)
                                  for k in self.pool_kernels)
        deeper = list(range(len(features) - 2, -1, -1))  # decoder levels, deepest first
        self.up_project = nn.ModuleList(conv_block(spatial_dims, features[i + 1], features[i], 1, None,
                                                   act=False) for i in deeper)
        self.up_merge = nn.ModuleList(norm_elu(spatial_dims, features[i], norm) for i in deeper)
        self.decoder = nn.ModuleList(ResidualBlock(spatial_dims, features[i], features[i], norm, dropout)
                                     for i in deeper)
        self.embed_out = conv_block(spatial_dims, features[0], features[0], 5, None)
        self.head = conv_block(spatial_dims, features[0], out_channels, 1, None, act=False)

    def forward(self, x: torch.Tensor, stage_hook: StageHook | None = None) -> torch.Tensor:
        self._check_input(x)
        x = self.embed_in(x)
        if stage_hook is not None:
            x = stage_hook(0, x)
        skips = []
        for stage, block in enumerate(self.encoder):
            x = block(x)
            if stage_hook is not None:
                x = stage_hook(stage + 1, x)
            if stage < len(self.down):
                skips.append(x)
                x = self.down[stage](x)
        for project, merge, block in zip(self.up_project, self.up_merge, self.decoder):
            skip = skips.pop()
            up = F.interpolate(x, size=skip.shape[2:], mode=INTERPOLATION[self.spatial_dims],
                               align_corners=False)
            x = block(merge(project(up) + skip))
        return self.head(self.embed_out(x))

    def _check_input(self, x: torch.Tensor) -> None:
        """ValueError unless ``x`` is (B, C, *spatial) with every size >= the total pooling."""
        if x.ndim != self.spatial_dims + 2:
            raise ValueError(f"ResUNet({self.spatial_dims}D) expects input (B, C, {self.spatial_dims} "
                             f"spatial axes), got shape {tuple(x.shape)}")
        factors = [1] * self.spatial_dims
        for kernel in self.pool_kernels:
            factors = [f * k for f, k in zip(factors, kernel)]
        if any(s < f for s, f in zip(x.shape[2:], factors)):
            raise ValueError(f"ResUNet input spatial size {tuple(x.shape[2:])} is smaller than the "
                             f"total down-sampling {tuple(factors)}")


def _check_arguments(spatial_dims: int, features: list[int], norm: str) -> None:
    """ValueError naming the bad constructor argument."""
    if spatial_dims not in INTERPOLATION:
        raise ValueError(f"ResUNet spatial_dims must be 2 or 3, got {spatial_dims!r}")
    if len(features) < 2 or min(features) < 1:
        raise ValueError(f"ResUNet features must be at least 2 positive widths, got {features}")
    if norm not in NORMS:
        raise ValueError(f"ResUNet norm must be one of {', '.join(NORMS)}, got {norm!r}")


def _pool_kernels(pool, steps: int, spatial_dims: int) -> list[tuple[int, ...]]:
    """Per-step pooling kernels as ``spatial_dims``-tuples; default 2 on every axis."""
    if not pool:
        return [(2,) * spatial_dims] * steps
    if len(pool) != steps:
        raise ValueError(f"ResUNet pool needs {steps} kernels (one per down step), got {list(pool)}")
    kernels = []
    for kernel in pool:
        kernel = tuple(int(k) for k in kernel) if isinstance(kernel, (list, tuple)) \
            else (int(kernel),) * spatial_dims
        if len(kernel) != spatial_dims or min(kernel) < 1:
            raise ValueError(f"ResUNet pool kernel {kernel} must be {spatial_dims} positive integers")
        kernels.append(kernel)
    return kernels
