"""The compute device and mixed precision."""

from __future__ import annotations

import contextlib
import re

import torch

from ..errors import MaskTwinsError

_CHOICE = re.compile(r"auto|cpu|cuda(?::(\d+))?")


def resolve_device(choice: str, option: str = "recipe key 'train.device'") -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cpu``; ``cuda`` or ``cuda:K``. Anything else,
    or a GPU that is not there, is an error that names ``option``, the way the user gave the
    choice (e.g. ``--device``)."""
    match = _CHOICE.fullmatch(str(choice).strip())
    if match is None:
        raise MaskTwinsError(f"{option} = {choice!r}: expected auto, cpu, cuda or cuda:K")
    choice = match.group(0)
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice.startswith("cuda"):
        if not torch.cuda.is_available():
            raise MaskTwinsError(f"{option} = {choice!r}: no CUDA GPU is available here (use auto "
                                 "or cpu)")
        index = match.group(1)
        if index is not None and int(index) >= torch.cuda.device_count():
            raise MaskTwinsError(f"{option} = {choice!r}: this machine has "
                                 f"{torch.cuda.device_count()} CUDA GPU(s), numbered from 0")
    return torch.device(choice)


def autocast_for(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA when enabled; a no-op context otherwise."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
