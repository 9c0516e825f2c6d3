"""The training loop: short, with its parts passed in."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .schedule import learning_rate


@dataclass
class LoopParts:
    """Everything the loop calls, built by :mod:`.run`.

    - ``losses(step) -> dict``: draws a batch and returns the loss terms (``loss`` included).
    - ``after_step(step)``: e.g. the EMA update, after the optimiser step.
    - ``checkpoint(step, final)``: writes last.pt (and best.pt when validation improved).
    - ``validate(step) -> dict``: validation scores, or {} when there is no validation volume.
    - ``report(step, record)``: progress and the JSONL log.
    """

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    losses: Callable[[int], dict[str, torch.Tensor]]
    after_step: Callable[[int], None]
    checkpoint: Callable[[int, bool], None]
    validate: Callable[[int], dict]
    report: Callable[[int, dict], None]


@dataclass
class LoopSchedule:
    """Iteration counts and learning-rate rule from the recipe's [train] section."""

    start: int
    iterations: int
    lr: float
    poly_power: float
    warmup: int
    grad_clip: float
    log_every: int
    checkpoint_every: int
    val_every: int
    history: list = field(default_factory=list)


def run_loop(parts: LoopParts, plan: LoopSchedule) -> list[dict]:
    """Iterate from ``plan.start`` to ``plan.iterations``; returns the logged records."""
    timer = time.perf_counter()
    for step in range(plan.start, plan.iterations):
        lr = learning_rate(step, plan.lr, plan.iterations, plan.poly_power, plan.warmup)
        for group in parts.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_mult", 1.0)
        terms = parts.losses(step)
        parts.optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        if plan.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(parts.model.parameters(), plan.grad_clip)
        parts.optimizer.step()
        parts.after_step(step)
        done = step + 1
        if done % plan.log_every == 0 or done == plan.iterations or done == plan.start + 1:
            elapsed = time.perf_counter() - timer
            record = {"step": done, "lr": lr, **{k: float(v.detach()) for k, v in terms.items()},
                      "seconds": round(elapsed, 3)}
            plan.history.append(record)
            parts.report(done, record)
        if plan.val_every and done % plan.val_every == 0 and done != plan.iterations:
            parts.report(done, {"step": done, **parts.validate(done)})
            parts.checkpoint(done, False)
        elif done % plan.checkpoint_every == 0 and done != plan.iterations:
            parts.checkpoint(done, False)
    if plan.start < plan.iterations:
        parts.report(plan.iterations, {"step": plan.iterations, **parts.validate(plan.iterations)})
    parts.checkpoint(plan.iterations, True)
    return plan.history
