"""Learning-rate schedule: linear warm-up, then poly decay lr = peak * (1 - t/T)^power."""

from __future__ import annotations


def learning_rate(step: int, peak: float, total: int, power: float, warmup: int) -> float:
    """Learning rate at iteration ``step`` (0-based) of ``total``."""
    if warmup > 0 and step < warmup:
        return peak * (step + 1) / warmup
    progress = min(step, total) / max(total, 1)
    return peak * (1.0 - progress) ** power
