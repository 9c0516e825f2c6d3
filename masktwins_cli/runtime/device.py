"""The compute device and mixed precision."""

from __future__ import annotations

import contextlib

import torch

from ..errors import MaskTwinsError


def resolve_device(choice: str, option: str = "recipe key 'train.device'") -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is an error that names
    ``option``, the way the user gave the choice (e.g. ``--device``)."""
    if choice == "cuda" and not torch.cuda.is_available():
        raise MaskTwinsError(f"{option} = 'cuda': no CUDA GPU is available here (use auto or cpu)")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def autocast_for(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA when enabled; a no-op context otherwise."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
