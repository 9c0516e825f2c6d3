"""HRDA (Hoyer et al., ECCV 2022): multi-resolution training and inference around a SegFormer.

A crop is seen twice: the whole crop down-scaled (``scale``, 0.5: the context, for the layout
of the scene) and, at full resolution, a detail window (``detail``, e.g. 512 x 512: for small
objects and thin structures). A second DAFormer head on the context features predicts a
per-class scale attention a in [0, 1]; the fused logits are a * detail + (1 - a) * context,
where the detail logits exist (elsewhere the context's alone).

* Training: the detail window is a random one inside the crop (its corner on a multiple of
  32 pixels); the forward returns the fused logits at the crop's size and keeps the detail
  window's own logits (up-sampled to the window) and box in :attr:`HRDA.detail`, for the
  auxiliary detail loss (``detail_loss``; HRDA: 0.9 x CE(fused) + 0.1 x CE(detail)), which the
  training step takes (and clears) after each forward.
* Evaluation: detail windows slide over the whole input (stride half a window, as HRDA's
  ``hr_slide_inference``) and their logits are averaged, so every pixel is fused.

Logits are fused at a quarter of the input resolution (the decoder's output stride) and then
up-sampled to the input size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .segformer import MIT_SIZES, DAFormerHead, SegFormer, StageHook

STRIDE = 4  # the decoder's output stride


def window_starts(size: int, window: int) -> list[int]:
    """Starts of windows of ``window`` covering ``size`` with a stride of half a window (the
    last one pulled back to end at the border)."""
    if size <= window:
        return [0]
    stride = max(window // 2, 1)
    starts = list(range(0, size - window, stride))
    return starts + [size - window]


class HRDA(nn.Module):
    """SegFormer with HRDA's context and detail passes and scale attention.

    Input (B, C, H, W) with H and W multiples of 32 / ``scale``; logits (B, K, H, W).
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 19, encoder: str = "mit_b5",
                 decoder_channels: int = 256, scale: float = 0.5,
                 detail: Sequence[int] = (512, 512), divisible: int = 32,
                 detail_loss: float = 0.1):
        super().__init__()
        self.base = SegFormer(in_channels, num_classes, encoder, decoder_channels)
        self.attention = DAFormerHead(MIT_SIZES[encoder][0], decoder_channels, num_classes)
        self.scale, self.window, self.divisible = scale, tuple(detail), divisible
        self.detail_loss = detail_loss
        self.detail: tuple[torch.Tensor, tuple[slice, slice]] | None = None

    decoder_prefixes = ("base.decoder.", "attention.")  # HRDA's decode head holds both

    @property
    def encoder(self) -> nn.Module:
        """The MiT encoder (for ImageNet weights)."""
        return self.base.encoder

    def encode(self, x: torch.Tensor, stage_hook: StageHook | None = None) -> list[torch.Tensor]:
        """The encoder's stage outputs on the context (the down-scaled input), as HRDA's
        ``extract_feat`` (so the ImageNet feature distance compares context features)."""
        return self.base.encode(self._context(x), stage_hook)

    def _context(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)

    def _logits(self, x: torch.Tensor, stage_hook: StageHook | None) -> torch.Tensor:
        """Decoder logits at 1/4 of ``x``."""
        return self.base.decoder(self.base.encode(x, stage_hook))

    def _random_box(self, height: int, width: int) -> tuple[slice, slice]:
        box = []
        for size, window in zip((height, width), self.window):
            window = min(window, size)
            top = (size - window) // self.divisible
            start = int(torch.randint(top + 1, ()).item()) * self.divisible if top > 0 else 0
            box.append(slice(start, start + window))
        return tuple(box)

    def forward(self, x: torch.Tensor, stage_hook: StageHook | None = None) -> torch.Tensor:
        height, width = x.shape[-2:]
        out = (height // STRIDE, width // STRIDE)
        features = self.base.encode(self._context(x), stage_hook)
        context = F.interpolate(self.base.decoder(features), size=out, mode="bilinear",
                                align_corners=False)
        attention = F.interpolate(torch.sigmoid(self.attention(features)), size=out,
                                  mode="bilinear", align_corners=False)
        detail = torch.zeros_like(context)
        if self.training:
            box = self._random_box(height, width)
            logits = self._logits(x[(..., *box)], stage_hook)
            inner = tuple(slice(b.start // STRIDE, b.stop // STRIDE) for b in box)
            detail[(..., *inner)] = logits
            covered = torch.zeros_like(attention[:, :1])
            covered[(..., *inner)] = 1.0
            attention = attention * covered
            self.detail = (F.interpolate(logits, size=(box[0].stop - box[0].start,
                                                        box[1].stop - box[1].start),
                                         mode="bilinear", align_corners=False), box)
        else:
            detail = self._slide(x, out)
        fused = attention * detail + (1 - attention) * context
        return F.interpolate(fused, size=(height, width), mode="bilinear", align_corners=False)

    def _slide(self, x: torch.Tensor, out: tuple[int, int]) -> torch.Tensor:
        """Detail logits over the whole input at 1/4 resolution: windows at half-window strides,
        overlaps averaged."""
        total = counts = None
        rows, cols = (min(w, s) for w, s in zip(self.window, x.shape[-2:]))
        for top in window_starts(x.shape[-2], rows):
            for left in window_starts(x.shape[-1], cols):
                logits = self._logits(x[..., top:top + rows, left:left + cols], None)
                if total is None:
                    total = logits.new_zeros((*logits.shape[:2], *out))
                    counts = logits.new_zeros((1, 1, *out))
                box = (slice(top // STRIDE, (top + rows) // STRIDE),
                       slice(left // STRIDE, (left + cols) // STRIDE))
                total[(..., *box)] += logits
                counts[(..., *box)] += 1
        return total / counts.clamp_min(1)
