"""Shared fixtures: tiny EM volumes, tiny recipes and a tiny trained run.

Everything here is sized so that a training run of a couple of iterations takes well under a
second on one CPU core (after the one-off import of torch/MONAI).

The tiny recipe sets ``train.threads = 1``: on a shared 2-core machine, torch's default
intra-op threads made a 2-iteration run of this network take ~7 s instead of ~0.2 s. Note that
``train`` applies it with ``torch.set_num_threads``, which stays in effect for the session.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tiny_data import toml_document

TINY_EM_SHAPE = (3, 32, 32)


def write_tiny_em_volumes(folder: Path, seed: int = 0) -> dict[str, str]:
    """Random uint8 raw (3, 32, 32) and 0/1 uint8 labels in ``folder/tiny.zarr``; absolute URIs."""
    from masktwins_cli.io.volumes import write_volume

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    raw = f"{folder}/tiny.zarr/raw"
    labels = f"{folder}/tiny.zarr/labels"
    write_volume(raw, rng.integers(0, 256, TINY_EM_SHAPE, dtype=np.uint8), (1.0, 1.0, 1.0))
    write_volume(labels, (rng.random(TINY_EM_SHAPE) > 0.5).astype(np.uint8), (1.0, 1.0, 1.0))
    return {"raw": raw, "labels": labels}


def tiny_recipe_sections(folder: Path, volumes: dict[str, str]) -> dict[str, dict[str, Any]]:
    """A 2-D recipe with a five-stage U-Net of 2 channels per stage, 2 iterations on CPU."""
    return {
        "data": {"root": str(folder), "source_raw": volumes["raw"],
                 "source_labels": volumes["labels"], "target_raw": volumes["raw"],
                 "patch_size": [32, 32]},
        "model": {"spatial_dims": 2, "features": [2, 2, 2, 2, 2]},
        "method": {"block_size": [8, 8]},
        "train": {"iterations": 2, "batch_size": 1, "target_batch_size": 1, "device": "cpu",
                  "output_dir": str(folder / "run"), "log_every": 1, "threads": 1},
        "infer": {"batch_size": 1},
    }


def write_tiny_recipe(folder: Path, volumes: dict[str, str], name: str = "recipe.toml",
                      **sections: dict[str, Any]) -> Path:
    """Write the tiny recipe, with ``section={key: value}`` entries merged over it."""
    merged = tiny_recipe_sections(folder, volumes)
    for section, values in sections.items():
        merged.setdefault(section, {}).update(values)
    path = folder / name
    path.write_text(toml_document(merged), encoding="utf-8")
    return path


@pytest.fixture
def tiny_em_volumes(tmp_path: Path) -> dict[str, str]:
    """URIs of a tiny raw + labels pair under ``tmp_path/data``."""
    return write_tiny_em_volumes(tmp_path / "data")


@pytest.fixture
def tiny_recipe(tmp_path: Path, tiny_em_volumes: dict[str, str]):
    """Factory: ``tiny_recipe(train={"iterations": 1}, name="r.toml")`` -> path of the recipe.

    Data and the run folder (``tmp_path/run``) live inside ``tmp_path``.
    """

    def make(name: str = "recipe.toml", **sections: dict[str, Any]) -> Path:
        return write_tiny_recipe(tmp_path, tiny_em_volumes, name, **sections)

    return make


@pytest.fixture(scope="session")
def tiny_trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run folder of a 2-iteration 2-D training on the tiny volumes (holds last.pt).

    Shared by the whole session: copy it before changing anything in it.
    """
    from masktwins_cli.config.recipe import load_recipe
    from masktwins_cli.training.run import train

    folder = tmp_path_factory.mktemp("tiny_trained_run")
    recipe = write_tiny_recipe(folder, write_tiny_em_volumes(folder / "data"))
    result = train(load_recipe(recipe))
    return result.output_dir
