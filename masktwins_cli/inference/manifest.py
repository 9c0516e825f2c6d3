"""What an ``infer`` run computes and writes: the output's layout for a recipe, and the run
manifest that reruns, shards and daisy workers compare (see :mod:`.records`)."""

from __future__ import annotations

import time
from pathlib import Path

from ..config.recipe import recipe_to_dict
from ..config.schema import Recipe
from ..io.backends import ParsedUri
from .blocks import BlockPlan
from .records import file_sha256, make_manifest
from .roi import RoiMask


def output_layout(recipe: Recipe) -> tuple[int, str]:
    """(channels, dtype) of what ``infer`` writes: (0, float32) the foreground probability of a
    two-class model; (K, float32) the sigmoid channels of a synapse model or the class
    probabilities of a K-class model (``infer.classes = 'probabilities'``, and ``'both'``, whose
    class map is derived from them, see :mod:`.class_map`); (0, uint8) the class map of a
    K-class model (``infer.classes = 'map'``)."""
    k = recipe.model.num_classes
    if recipe.model.task == "synapse":
        return k, "float32"
    if k == 2:
        return 0, "float32"
    return (0, "uint8") if recipe.infer.classes == "map" else (k, "float32")


def output_channels(recipe: Recipe) -> int:
    """Leading channels of the output (see :func:`output_layout`)."""
    return output_layout(recipe)[0]


def writes_class_map_beside(recipe: Recipe) -> bool:
    """``infer.classes = 'both'`` on a K-class segmentation model: the class map is derived
    beside the probabilities."""
    return (recipe.model.task == "segmentation" and recipe.model.num_classes > 2
            and recipe.infer.classes == "both")


def manifest_infer_settings(recipe: Recipe) -> dict:
    """The [infer] settings a manifest compares. ``infer.classes`` only matters for K > 2
    classes and is left out otherwise, so two-class and synapse runs keep the manifests (and
    fingerprints) of versions that did not have it: their staging folders still resume and
    their outputs still count as complete."""
    settings = recipe_to_dict(recipe)["infer"]
    if recipe.model.task == "synapse" or recipe.model.num_classes == 2:
        settings.pop("classes", None)
    elif settings.get("classes") == "both":  # the same probabilities: an output made with
        settings["classes"] = "probabilities"  # 'probabilities' counts as complete
    return settings


def run_manifest(checkpoint: str | Path, weights: str, recipe: Recipe, volume,
                 output: ParsedUri, stats, plan: BlockPlan, mask: RoiMask | None = None) -> dict:
    """What a run computes, compared between reruns and shards (see :mod:`.records`): the input
    (absolute URI, shape, dtype, calibration, intensity statistics), the checkpoint's content,
    the weights, the [infer] settings and autocast, the output, the block plan and the mask."""
    work = {
        "input": {"uri": str(volume.location.absolute()), "shape": volume.shape, "dtype": str(volume.dtype),
                  "voxel_size": volume.voxel_size, "offset": volume.offset,
                  "normalization": {"shift": stats.shift, "scale": stats.scale}},
        "checkpoint": {"sha256": file_sha256(checkpoint)},
        "weights": weights,
        "infer": manifest_infer_settings(recipe),
        "amp": recipe.train.amp,
        "output": {"uri": str(output.absolute()), "dtype": output_layout(recipe)[1],
                   **({"channels": output_channels(recipe)} if output_channels(recipe) else {})},
        "plan": plan.as_dict(),
        "mask": None if mask is None else mask.describe(),
    }
    return make_manifest(work, {"checkpoint": str(Path(checkpoint).resolve()), "created": time.time()})
