"""The EMA teacher: phi <- alpha_t * phi + (1 - alpha_t) * theta (paper Algorithm 1).

alpha_t = min(1 - 1/(t + 1), alpha) lets the teacher follow the student closely at the start.
Floating-point buffers (e.g. batch-norm running statistics) are averaged the same way; other
buffers (counters) are copied.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def ema_alpha_at(step: int, alpha: float) -> float:
    """The warm-up rule alpha_t = min(1 - 1/(t + 1), alpha), for step t >= 0."""
    return min(1.0 - 1.0 / (step + 1.0), alpha)


def make_teacher(student: nn.Module) -> nn.Module:
    """A frozen copy of the student in eval mode (no dropout, running norm statistics)."""
    teacher = copy.deepcopy(student)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.eval()


@torch.no_grad()
def update_ema(teacher: nn.Module, student: nn.Module, alpha: float) -> None:
    """In place: every teacher parameter and float buffer <- alpha * teacher + (1 - alpha) * student."""
    t_params = [p for p in teacher.parameters()]
    s_params = [p.detach() for p in student.parameters()]
    if t_params:
        torch._foreach_mul_(t_params, alpha)
        torch._foreach_add_(t_params, s_params, alpha=1.0 - alpha)
    for t_buf, s_buf in zip(teacher.buffers(), student.buffers()):
        if t_buf.dtype.is_floating_point:
            t_buf.mul_(alpha).add_(s_buf.detach(), alpha=1.0 - alpha)
        else:
            t_buf.copy_(s_buf)
