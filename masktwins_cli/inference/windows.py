"""Sliding-window prediction of an in-memory block (MONAI ``sliding_window_inference``).

A 2-D model runs over a (z, y, x) block slice by slice (the slices form the batch); a 3-D model
runs in 3-D. Windows overlap by ``overlap`` and are blended with a Gaussian (or constant)
importance map; probabilities (softmax over classes, or a sigmoid per channel for synapse
models), not logits, are blended.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from torch import nn


def autocast_for(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA when enabled; a no-op context otherwise."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def predict_block(model: nn.Module, block: np.ndarray, spatial_dims: int, window: Sequence[int],
                  overlap: float, batch_size: int, blend: str, device: torch.device,
                  amp: bool = True, activation: str = "softmax") -> np.ndarray:
    """Class (or channel) probabilities of a normalised block.

    Args:
        model: network in eval mode on ``device``; returns logits (B, C, *spatial).
        block: float32 (z, y, x), already normalised.
        spatial_dims: 2 (slice by slice) or 3.
        window: (y, x) or (z, y, x) window size in voxels.
        activation: ``softmax`` (classes) or ``sigmoid`` (independent channels, e.g. pre/post).

    Returns:
        float32 (C, z, y, x) probabilities in [0, 1].
    """
    if activation not in ("softmax", "sigmoid"):
        raise ValueError(f"unknown activation {activation!r}; expected softmax or sigmoid")
    tensor = torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32)).to(device)
    inputs = tensor[:, None] if spatial_dims == 2 else tensor[None, None]

    def predictor(x: torch.Tensor) -> torch.Tensor:
        with autocast_for(device, amp):
            logits = model(x)
        if activation == "sigmoid":
            return torch.sigmoid(logits.float())
        return torch.softmax(logits.float(), dim=1)

    probs = sliding_window_inference(inputs, tuple(window), batch_size, predictor, overlap=overlap,
                                     mode=blend, sigma_scale=0.125, padding_mode="reflect")
    probs = probs.permute(1, 0, 2, 3) if spatial_dims == 2 else probs[0]
    return probs.float().cpu().numpy()
