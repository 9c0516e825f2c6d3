"""``masktwins prepare synthetic``: write a synthetic EM domain pair as chunked zarr volumes.

Layout of OUT_DIR::

    source.zarr/{raw,labels}         labeled source domain
    target_train.zarr/raw            unlabeled target volume used for adaptation
    target_train.zarr/labels         its labels: used only to train the Oracle reference
    target_test.zarr/{raw,labels}    labeled held-out target volume for evaluation
    dataset.json                     seed, shapes, voxel sizes and the two domain styles
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import MaskTwinsError
from ..io.atomic import write_text_atomic
from ..io.labels import write_label_image
from ..io.volumes import write_volume
from .synthetic_layout import VOLUMES, chunks_for

TASKS = ("mito", "synapse")


@dataclass(frozen=True)
class PreparedDataset:
    """Where the volumes were written, and their shapes."""

    out_dir: Path
    volumes: dict[str, str]
    shapes: dict[str, tuple[int, ...]]
    foreground: dict[str, float]
    points: dict[str, dict[str, int]] | None = None  # synapse task: pre/post counts per volume


def prepare_synthetic(out_dir: str | Path, task: str = "mito", dims: int = 2, seed: int = 0,
                      shape: tuple[int, int, int] | None = None,
                      overwrite: bool = False,
                      test_shape: tuple[int, int, int] | None = None) -> PreparedDataset:
    """Generate a source/target pair and write it under ``out_dir``.

    task ``mito``: volumes with mitochondria labels (layout above); ``synapse``: 3-D volumes with
    point tables instead of labels (:mod:`.synthetic_synapses`; ``dims`` is not used;
    ``test_shape`` sizes its target test volume, default ``shape``).
    """
    from ..synthetic import generate_mito_pair

    if task not in TASKS:
        raise MaskTwinsError(f"--task {task!r}: supported synthetic tasks are {', '.join(TASKS)}")
    if task == "synapse":
        return _prepare_synapses(Path(out_dir), seed, shape, overwrite, test_shape)
    if test_shape is not None:
        raise MaskTwinsError("--test-shape: only for --task synapse (the mito volumes share --shape)")
    out = Path(out_dir)
    existing = [name for name in VOLUMES if (out / f"{name}.zarr").exists()]
    if existing and not overwrite:
        raise MaskTwinsError(f"{out} already holds {existing[0]}.zarr: choose another folder or pass "
                             "--overwrite (nothing was written)")
    pair = generate_mito_pair(dims=dims, seed=seed, shape=shape)
    uris, shapes, foreground = {}, {}, {}
    for name in VOLUMES:
        volume = getattr(pair, name)
        chunks = chunks_for(volume.raw.shape, dims)
        container = out / f"{name}.zarr"
        if overwrite and (container / "labels").exists():  # also an older layout's labels array
            shutil.rmtree(container / "labels")
        write_volume(f"{container}/raw", volume.raw, volume.voxel_size, chunks=chunks,
                     overwrite=overwrite)
        write_label_image(container, volume.labels, volume.voxel_size, chunks=chunks,
                          overwrite=overwrite)  # read as {name}.zarr/labels
        uris[f"{name}/raw"], uris[f"{name}/labels"] = f"{container}/raw", f"{container}/labels"
        shapes[name] = tuple(volume.raw.shape)
        foreground[name] = float(volume.labels.mean())
    meta = {"task": task, "dims": dims, "seed": seed, "volumes": uris,
            "shapes": {k: list(v) for k, v in shapes.items()},
            "voxel_size_nm": {n: list(getattr(pair, n).voxel_size) for n in VOLUMES},
            "foreground_fraction": foreground, "styles": pair.styles}
    write_text_atomic(out / "dataset.json", json.dumps(meta, indent=2, default=str) + "\n")
    return PreparedDataset(out, uris, shapes, foreground)


def _prepare_synapses(out: Path, seed: int, shape: tuple[int, int, int] | None,
                      overwrite: bool, test_shape: tuple[int, int, int] | None = None) -> PreparedDataset:
    """``--task synapse``: the synthetic synapse pair (raw volumes + point tables)."""
    from .synthetic_synapses import write_synapse_pair

    meta = write_synapse_pair(out, seed=seed, shape=shape, overwrite=overwrite, test_shape=test_shape)
    shapes = {name: tuple(shape) for name, shape in meta["shapes"].items()}
    return PreparedDataset(out, meta["volumes"], shapes, {}, meta["points"])
