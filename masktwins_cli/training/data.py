"""Open the recipe's training volumes as patch samplers.

Segmentation: the source labels are a class-index volume. Synapse detection
(``model.task = synapse``): the source labels are a point table (``data.source_points``), turned
once into (pre, post) cube targets of ``data.cube_size`` held in memory as uint8 (2, z, y, x).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config.recipe import resolve_data_path
from ..config.schema import Recipe
from ..data.normalization import intensity_stats, strided_sample
from ..data.patches import PatchSampler, VolumeCrops
from ..errors import MaskTwinsError
from ..io.volumes import open_volume
from ..synapse.cubes import points_to_cubes
from ..synapse.points import read_points


@dataclass
class TrainingData:
    """Source crops with labels, and target crops (None when not adapting)."""

    source: PatchSampler
    target: PatchSampler | None


def open_image(recipe: Recipe, uri: str, key: str):
    """An image volume named by recipe key ``key`` and its normalisation statistics."""
    if not uri:
        raise MaskTwinsError(f"recipe key '{key}' is empty: a volume URI is needed")
    path = resolve_data_path(recipe, uri)
    volume = open_volume(path, ndim=(2, 3))
    return volume, intensity_stats(strided_sample(volume), recipe.data.normalization, path)


def cube_targets(recipe: Recipe, shape) -> tuple:
    """The source point table as uint8 (2, z, y, x) cube targets for a volume of ``shape``
    (z, y, x); MaskTwinsError naming the key or the file (and row) when it is missing or bad."""
    d = recipe.data
    if not d.source_points:
        raise MaskTwinsError("recipe key 'data.source_points' is empty: model.task = 'synapse' "
                             "trains on a point table (.csv or WASP-SYN .h5)")
    path = resolve_data_path(recipe, d.source_points)
    if len(shape) != 3:
        raise MaskTwinsError(f"recipe key 'data.source_raw': synapse training needs a 3-D volume, "
                             f"got shape {tuple(shape)}")
    points = read_points(path, shape)
    return points_to_cubes(points, shape, d.cube_size, source=path), path


def source_crops(recipe: Recipe) -> VolumeCrops:
    """The labeled source volume: image with class labels or with synapse cube targets."""
    d, m = recipe.data, recipe.model
    raw, stats = open_image(recipe, d.source_raw, "data.source_raw")
    if m.task == "synapse":
        targets, path = cube_targets(recipe, tuple(raw.shape))
        return VolumeCrops(raw, stats, targets, m.num_classes, (raw.uri, path), channel_targets=True)
    if not d.source_labels:
        raise MaskTwinsError("recipe key 'data.source_labels' is empty: training needs labels")
    labels_path = resolve_data_path(recipe, d.source_labels)
    labels = open_volume(labels_path, ndim=(2, 3))
    return VolumeCrops(raw, stats, labels, m.num_classes, (raw.uri, labels_path))


def open_training_data(recipe: Recipe) -> TrainingData:
    """Samplers for the source (image + labels) and, when adapting, the target image."""
    d, m = recipe.data, recipe.model
    crops = source_crops(recipe)
    source = PatchSampler(crops, d.patch_size, m.spatial_dims, d.augment, d.intensity_augment,
                          d.foreground_oversample)
    if not recipe.method.adapt:
        return TrainingData(source, None)
    if not d.target_raw:
        raise MaskTwinsError("recipe key 'data.target_raw' is empty: method.adapt = true needs an "
                             "unlabeled target volume (or set method.adapt = false)")
    target_raw, target_stats = open_image(recipe, d.target_raw, "data.target_raw")
    target_crops = VolumeCrops(target_raw, target_stats, None, m.num_classes, (target_raw.uri, ""))
    # with the strong target augmentation the teacher sees the target without intensity jitter
    jitter = 0.0 if recipe.augment.strong_target else d.intensity_augment
    context = recipe.method.teacher_context or (0,) * m.spatial_dims
    teacher_patch = tuple(p + 2 * c for p, c in zip(d.patch_size, context))
    spatial = target_crops.shape[-m.spatial_dims:]
    if any(c and n < t for c, n, t in zip(context, spatial, teacher_patch)):
        raise MaskTwinsError(f"{target_raw.uri}: its in-plane size {tuple(spatial)} is smaller than "
                             f"the teacher's crop {teacher_patch} (data.patch_size + 2 x "
                             f"method.teacher_context {list(context)}): lower "
                             "method.teacher_context (or set it to [])")
    target = PatchSampler(target_crops, teacher_patch, m.spatial_dims, d.augment, jitter)
    return TrainingData(source, target)
