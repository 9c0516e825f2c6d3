"""Write a synthetic synapse domain pair (``prepare synthetic --task synapse``) to disk.

Layout of OUT_DIR (mirrors :mod:`.synthetic` for mitochondria; point tables replace labels)::

    source.zarr/raw                 labeled source volume (uint8, 8 nm isotropic)
    source_points.csv               its synapses: pre points, post points linked to a pre
    target_train.zarr/raw           unlabeled target volume used for adaptation
    target_train_points.csv         its synapses (for the Oracle reference and metrics only)
    target_test.zarr/raw            held-out target volume for evaluation
    target_test_points.csv          its synapses
    dataset.json                    seed, shapes, voxel sizes, point counts and the two styles

The three volumes have the same shape (detection is scored per volume). Point tables use the
CSV format of :mod:`masktwins_cli.synapse.points` in local (z, y, x) voxel coordinates.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import MaskTwinsError
from ..io.atomic import write_text_atomic
from ..io.volumes import write_volume
from ..synapse.points import write_points_csv
from .synthetic_layout import VOLUMES, chunks_for


def write_synapse_pair(out_dir: str | Path, seed: int = 0, shape: tuple[int, int, int] | None = None,
                       overwrite: bool = False, test_shape: tuple[int, int, int] | None = None) -> dict:
    """Generate the synapse pair for ``seed`` (shape (z, y, x), default 128^3; the target test
    volume of ``test_shape``, default ``shape``) under ``out_dir``.

    Returns the metadata written to ``dataset.json``: ``volumes`` maps ``"<name>/raw"`` to the
    volume URI and ``"<name>/points"`` to the CSV path, plus ``shapes``, ``voxel_size_nm``,
    ``points`` (pre/post counts per volume) and ``styles``. Refuses to touch a folder that already
    holds one of the volumes unless ``overwrite``.
    """
    from ..synthetic.synapses import generate_synapse_pair

    out = Path(out_dir)
    existing = [name for name in VOLUMES if (out / f"{name}.zarr").exists()]
    if existing and not overwrite:
        raise MaskTwinsError(f"{out} already holds {existing[0]}.zarr: choose another folder or pass "
                             "--overwrite (nothing was written)")
    pair = generate_synapse_pair(seed, shape, test_shape=test_shape)
    voxel_size = tuple(float(v) for v in pair.styles["source"]["domain"]["voxel_size_nm"])
    uris, shapes, counts = {}, {}, {}
    for name in VOLUMES:
        raw, points = getattr(pair, name)
        uri = str(out / f"{name}.zarr" / "raw")
        write_volume(uri, raw, voxel_size, chunks=chunks_for(raw.shape, 3), overwrite=overwrite)
        table = out / f"{name}_points.csv"
        write_points_csv(table, points)
        uris[f"{name}/raw"], uris[f"{name}/points"] = uri, str(table)
        shapes[name] = list(raw.shape)
        counts[name] = {"pre": points.n_pre, "post": points.n_post}
    meta = {"task": "synapse", "dims": 3, "seed": seed, "volumes": uris, "shapes": shapes,
            "voxel_size_nm": {name: list(voxel_size) for name in VOLUMES}, "points": counts,
            "styles": pair.styles}
    write_text_atomic(out / "dataset.json", json.dumps(meta, indent=2, default=str) + "\n")
    return meta
