"""What a checkpoint gives inference: the network (student or EMA teacher weights) and its
recipe with the ``[infer]`` overrides applied, and the training step it was written at."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from ..config.recipe import apply_overrides, recipe_from_dict
from ..config.schema import Recipe
from ..errors import MaskTwinsError
from ..io.checkpoints import load_checkpoint
from ..runtime.networks import build_from_recipe, load_weights


def infer_overrides(overrides: Sequence[str] = (), mask: str | None = None,
                    tta: bool = False) -> tuple[str, ...]:
    """The ``--set`` overrides with the shortcuts ``--mask URI`` (``infer.mask``) and ``--tta``
    (``infer.tta = true``) appended, as every process of a run (and its daisy workers) applies
    them to the checkpoint's recipe."""
    return (*overrides, *([f"infer.mask={json.dumps(str(mask))}"] if mask else []),
            *(["infer.tta=true"] if tta else []))


def load_for_inference(checkpoint: str | Path, overrides: Sequence[str] = (),
                       weights: str = "student") -> tuple[torch.nn.Module, Recipe]:
    """The network of a checkpoint (student or EMA teacher weights) and its recipe."""
    model, recipe, _ = load_inference_checkpoint(checkpoint, overrides, weights)
    return model, recipe


def load_inference_checkpoint(checkpoint: str | Path, overrides: Sequence[str] = (),
                              weights: str = "student") -> tuple[torch.nn.Module, Recipe, int | None]:
    """:func:`load_for_inference` and the training step the checkpoint was written at (None
    when it does not say): a step below ``train.iterations`` is an unfinished run."""
    path = Path(checkpoint)
    payload = load_checkpoint(path)
    bad = [o for o in overrides if not o.strip().startswith("infer.")]
    if bad:
        raise MaskTwinsError(f"--set {bad[0]!r}: infer takes only [infer] overrides; the network "
                             f"comes from the checkpoint {path}")
    if not isinstance(payload.get("recipe"), dict):
        raise MaskTwinsError(f"checkpoint {path} has no recipe")
    try:
        recipe_from_dict(payload["recipe"])
    except MaskTwinsError as err:
        raise MaskTwinsError(f"checkpoint {path}: its recipe does not validate here: {err}") from None
    try:
        recipe = recipe_from_dict(apply_overrides(payload["recipe"], list(overrides)))
    except MaskTwinsError as err:  # the checkpoint's recipe is fine: an override is at fault
        raise MaskTwinsError(f"--set: {err}") from None
    if weights not in ("student", "teacher"):
        raise MaskTwinsError(f"--weights {weights!r}: expected student or teacher")
    state = payload.get("model") if weights == "student" else payload.get("teacher")
    if state is None:
        raise MaskTwinsError(f"checkpoint {path} has no {weights} weights (EMA was off)")
    model = build_from_recipe(recipe)
    load_weights(model, state, path)
    step = payload.get("step")
    return model.eval(), recipe, int(step) if isinstance(step, int) else None
