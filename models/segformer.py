"""SegFormer's Mix Transformer (MiT) encoder with the DAFormer decoder, for natural images.

The encoder is Hugging Face ``transformers``' ``SegformerModel`` (version 5; an optional extra,
imported only when this network is built); the decoder is DAFormer's context-aware fusion
(Hoyer et al., CVPR 2022, ``daformer_sepaspp``): each of the four stage outputs is embedded to
``decoder_channels`` by a linear layer, up-sampled to the first stage's 1/4 resolution and
concatenated; a separable ASPP (a 1x1 branch and depthwise-separable 3x3 branches with
dilations 6, 12, 18, each with BatchNorm and ReLU) and a 3x3 bottleneck fuse them; dropout 0.1
and a 1x1 classifier give the logits, which are up-sampled (bilinear) to the input size.

``forward(x, stage_hook)`` calls ``stage_hook(stage, features)`` on every encoder stage output
(B, C, H, W), as the U-Nets do (AdaIN).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

StageHook = Callable[[int, torch.Tensor], torch.Tensor]

# hidden sizes, depths per stage (SegFormer's MiT-B0..B5); heads (1, 2, 5, 8), reduction (8, 4, 2, 1)
MIT_SIZES = {
    "mit_b0": ((32, 64, 160, 256), (2, 2, 2, 2)),
    "mit_b1": ((64, 128, 320, 512), (2, 2, 2, 2)),
    "mit_b2": ((64, 128, 320, 512), (3, 4, 6, 3)),
    "mit_b3": ((64, 128, 320, 512), (3, 4, 18, 3)),
    "mit_b4": ((64, 128, 320, 512), (3, 8, 27, 3)),
    "mit_b5": ((64, 128, 320, 512), (3, 6, 40, 3)),
    "mit_tiny": ((8, 16, 32, 32), (1, 1, 1, 1)),  # tests and smoke runs, not a published size
}
HEADS = {"mit_tiny": (1, 1, 2, 2)}


def mit_config(encoder: str, in_channels: int = 3, drop_path: float = 0.1):
    """The ``transformers`` SegformerConfig of a MiT size (ImportError naming the extra)."""
    try:
        from transformers import SegformerConfig
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("model.name = 'segformer' needs Hugging Face transformers 5: "
                          "pip install 'masktwins[cityscapes]'") from err
    if encoder not in MIT_SIZES:
        raise ValueError(f"unknown encoder {encoder!r}; known: {', '.join(MIT_SIZES)}")
    widths, depths = MIT_SIZES[encoder]
    return SegformerConfig(num_channels=in_channels, num_encoder_blocks=4, depths=list(depths),
                           hidden_sizes=list(widths), sr_ratios=[8, 4, 2, 1],
                           num_attention_heads=list(HEADS.get(encoder, (1, 2, 5, 8))),
                           patch_sizes=[7, 3, 3, 3], strides=[4, 2, 2, 2], mlp_ratios=[4] * 4,
                           drop_path_rate=drop_path, hidden_dropout_prob=0.0,
                           attention_probs_dropout_prob=0.0)


def conv_bn_relu(in_ch: int, out_ch: int, kernel: int = 1, dilation: int = 1,
                 separable: bool = False) -> nn.Sequential:
    """Convolution (depthwise-separable when asked), BatchNorm, ReLU."""
    padding = dilation * (kernel // 2)
    if separable and kernel > 1:
        layers = [nn.Conv2d(in_ch, in_ch, kernel, padding=padding, dilation=dilation,
                            groups=in_ch, bias=False), nn.BatchNorm2d(in_ch), nn.ReLU(inplace=True),
                  nn.Conv2d(in_ch, out_ch, 1, bias=False)]
    else:
        layers = [nn.Conv2d(in_ch, out_ch, kernel, padding=padding, dilation=dilation, bias=False)]
    return nn.Sequential(*layers, nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


class DAFormerHead(nn.Module):
    """DAFormer's decoder: stage embeddings, fusion by separable ASPP, classifier."""

    def __init__(self, widths, channels: int, num_classes: int, dilations=(1, 6, 12, 18),
                 dropout: float = 0.1):
        super().__init__()
        self.embed = nn.ModuleList(nn.Linear(w, channels) for w in widths)
        fused = channels * len(widths)
        self.aspp = nn.ModuleList(conv_bn_relu(fused, channels, 1 if d == 1 else 3, d, separable=True)
                                  for d in dilations)
        self.bottleneck = conv_bn_relu(channels * len(dilations), channels, 3, separable=True)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        size = features[0].shape[-2:]
        embedded = []
        for feature, embed in zip(features, self.embed):
            b, _, h, w = feature.shape
            x = embed(feature.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(b, -1, h, w)
            embedded.append(x if (h, w) == size else
                            F.interpolate(x, size=size, mode="bilinear", align_corners=False))
        x = torch.cat(embedded, dim=1)
        x = self.bottleneck(torch.cat([branch(x) for branch in self.aspp], dim=1))
        return self.classifier(self.dropout(x))


class SegFormer(nn.Module):
    """MiT encoder + DAFormer decoder; input (B, in_channels, H, W), logits (B, K, H, W)."""

    def __init__(self, in_channels: int = 3, num_classes: int = 19, encoder: str = "mit_b5",
                 decoder_channels: int = 256, dropout: float = 0.1):
        super().__init__()
        from transformers import SegformerModel

        self.encoder_name = encoder
        self.encoder = SegformerModel(mit_config(encoder, in_channels))
        if not hasattr(self.encoder, "stages"):  # pragma: no cover - transformers 4 layout
            raise ImportError("model.name = 'segformer' needs transformers 5 (its SegformerModel "
                              "has .stages): pip install 'masktwins[cityscapes]'")
        self.decoder = DAFormerHead(MIT_SIZES[encoder][0], decoder_channels, num_classes,
                                    dropout=dropout)

    def encode(self, x: torch.Tensor, stage_hook: StageHook | None = None) -> list[torch.Tensor]:
        """The four stage outputs (B, C_i, H / 2^(i+2), W / 2^(i+2)), each through the hook."""
        features = []
        for stage, block in enumerate(self.encoder.stages):
            x = block(x)
            if stage_hook is not None:
                x = stage_hook(stage, x)
            features.append(x)
        return features

    def forward(self, x: torch.Tensor, stage_hook: StageHook | None = None) -> torch.Tensor:
        logits = self.decoder(self.encode(x, stage_hook))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
