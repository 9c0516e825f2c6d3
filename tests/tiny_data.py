"""Tiny real volumes, recipes and TOML writing for the tests (imported by test modules and
by conftest.py: the one set of test helpers)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from masktwins_cli.io.volumes import write_volume


def blob_volume(shape, seed: int, contrast: float = 1.0, offset: float = 0.0):
    """(z, y, x) uint8 image with dark discs (label 1) on a noisy bright background.

    Varies along z (disc centres move per slice) and has anisotropic voxels when written.
    """
    rng = np.random.default_rng(seed)
    z, y, x = shape
    yy, xx = np.mgrid[:y, :x]
    labels = np.zeros(shape, np.uint8)
    for k in range(z):
        for _ in range(max(1, (y * x) // 400)):
            cy, cx, r = rng.integers(4, y - 4), rng.integers(4, x - 4), rng.integers(2, 5)
            labels[k][(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1
    image = 180 - contrast * 90 * labels + rng.normal(0, 12, shape) + offset
    return np.clip(image, 0, 255).astype(np.uint8), labels


def write_pair(root: Path, shape=(4, 32, 32)) -> Path:
    """source.zarr/{raw,labels} and target.zarr/{raw,labels} under ``root``."""
    for name, seed, contrast, offset in (("source", 0, 1.0, 0.0), ("target", 1, 0.6, 30.0)):
        raw, labels = blob_volume(shape, seed, contrast, offset)
        write_volume(str(root / f"{name}.zarr" / "raw"), raw, (40.0, 5.0, 5.0))
        write_volume(str(root / f"{name}.zarr" / "labels"), labels, (40.0, 5.0, 5.0))
    return root


TINY_RECIPE = {
    "data": {"root": "", "source_raw": "source.zarr/raw", "source_labels": "source.zarr/labels",
             "target_raw": "target.zarr/raw", "patch_size": [32, 32]},
    "model": {"spatial_dims": 2, "features": [2, 4, 4, 4, 4]},
    "method": {"block_size": [8, 8], "ema_alpha": 0.9},
    "train": {"iterations": 4, "batch_size": 2, "target_batch_size": 2, "lr": 1e-3,
              "log_every": 1, "checkpoint_every": 2, "output_dir": "", "threads": 1},
    "infer": {"batch_size": 2},
}


def toml_literal(value: Any) -> str:
    """A Python value as a TOML value (str, bool, int, float incl. nan/inf, nested lists, dicts
    as inline tables, e.g. a list of them for ``data.source``)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return repr(value)


def toml_document(sections: dict[str, dict[str, Any]]) -> str:
    """``{section: {key: value}}`` as TOML text."""
    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {toml_literal(value)}" for key, value in values.items()]
        lines.append("")
    return "\n".join(lines)


def write_recipe(path: Path, root: Path, out: Path, **sections) -> Path:
    """A tiny recipe file; ``sections`` update TINY_RECIPE's sections (e.g. train={...})."""
    values = {k: dict(v) for k, v in TINY_RECIPE.items()}
    values["data"]["root"] = str(root)
    values["train"]["output_dir"] = str(out)
    for name, update in sections.items():
        values.setdefault(name, {}).update(update)
    text = "\n".join(f"[{name}]\n" + "\n".join(f"{k} = {toml_literal(v)}" for k, v in body.items())
                     for name, body in values.items())
    path.write_text(text + "\n")
    tomllib.loads(path.read_text())  # fail early on a bad fixture
    return path


class Interrupt(Exception):
    """Raised by :func:`interrupt_after` to stop a training run as a kill would."""


def interrupt_after(steps: int):
    """A ``train(report=...)`` callback that stops the run after ``steps`` logged iterations."""
    def report(step, total, record):
        if step > steps:
            raise Interrupt
    return report


def losses_by_step(path) -> dict:
    """{step: logged terms without the wall time} of a run's log.jsonl."""
    from masktwins_cli.training.metrics_log import read_log

    return {r["step"]: {k: v for k, v in r.items() if k != "seconds"}
            for r in read_log(path) if "loss" in r}
