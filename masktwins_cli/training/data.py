"""Open the recipe's training volumes as patch samplers.

Segmentation: the source labels are a class-index volume. Synapse detection
(``model.task = synapse``): the source labels are a point table (a source volume's ``points``),
turned once into (pre, post) cube targets of ``data.cube_size`` held in memory as uint8
(2, z, y, x). Each role may list several volumes (see :mod:`masktwins_cli.config.roles`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config.recipe import resolve_data_path
from ..config.roles import RoleVolume, role_volumes
from ..config.schema import Recipe
from ..data.images import check_channels
from ..data.normalization import image_stats
from ..data.patches import PatchSampler, SamplerMix, VolumeCrops
from ..data.rare_classes import RareClassSampler, count_class_pixels, recorded_class_pixels
from ..errors import MaskTwinsError
from ..io.layout import spatial_shape
from ..io.volumes import open_volume
from ..synapse.cubes import points_to_cubes
from ..synapse.points import read_points


@dataclass
class TrainingData:
    """Source crops with labels, and target crops (None when not adapting), each drawn from the
    role's volumes by weight (see :class:`~masktwins_cli.data.patches.SamplerMix`)."""

    source: SamplerMix
    target: SamplerMix | None


def open_image(recipe: Recipe, uri: str, key: str):
    """An image volume named by recipe key ``key`` ((y, x), (z, y, x), or (c, z, y, x) with
    ``model.in_channels`` channels) and its normalisation statistics."""
    if not uri:
        raise MaskTwinsError(f"recipe key '{key}' is empty: a volume URI is needed")
    path = resolve_data_path(recipe, uri)
    volume = open_volume(path, ndim=(2, 3, 4))
    check_channels(volume.shape, recipe.model.in_channels, f"{path} (recipe key '{key}')")
    d = recipe.data
    return volume, image_stats(volume, d.normalization, path, (d.mean, d.std))


def cube_targets(recipe: Recipe, volume: RoleVolume, shape) -> tuple:
    """A source point table as uint8 (2, z, y, x) cube targets for a volume of ``shape``
    (z, y, x); MaskTwinsError naming the key or the file (and row) when it is missing or bad."""
    if not volume.points:
        raise MaskTwinsError(f"recipe key '{volume.key('points')}' is empty: model.task = "
                             "'synapse' trains on a point table (.csv or WASP-SYN .h5)")
    path = resolve_data_path(recipe, volume.points)
    if len(shape) != 3:
        raise MaskTwinsError(f"recipe key '{volume.key('raw')}': synapse training needs a 3-D "
                             f"volume, got shape {tuple(shape)}")
    points = read_points(path, shape)
    return points_to_cubes(points, shape, recipe.data.cube_size, source=path), path


def source_crops(recipe: Recipe, volume: RoleVolume) -> VolumeCrops:
    """One labeled source volume: image with class labels or with synapse cube targets."""
    m = recipe.model
    raw, stats = open_image(recipe, volume.raw, volume.key("raw"))
    if m.task == "synapse":
        targets, path = cube_targets(recipe, volume, spatial_shape(raw.shape))
        return VolumeCrops(raw, stats, targets, m.num_classes, (raw.uri, path), channel_targets=True)
    if not volume.labels:
        raise MaskTwinsError(f"recipe key '{volume.key('labels')}' is empty: training needs labels")
    labels_path = resolve_data_path(recipe, volume.labels)
    labels = open_volume(labels_path, ndim=(2, 3))
    return VolumeCrops(raw, stats, labels, m.num_classes, (raw.uri, labels_path),
                       ignore_label=recipe.data.ignore_label)


def check_same_voxel_size(volumes: list[RoleVolume], crops: list[VolumeCrops], role: str) -> None:
    """Every volume of one role has the same voxel size (z, y, x nm): a crop means the same
    physical size whichever volume it comes from."""
    first = crops[0].voxel_size
    for volume, crop in zip(volumes[1:], crops[1:]):
        if first is not None and crop.voxel_size is not None and \
                not np.allclose(crop.voxel_size, first, rtol=1e-3):
            raise MaskTwinsError(
                f"recipe key '{volume.key('raw')}': voxel size {tuple(crop.voxel_size)} nm differs "
                f"from {tuple(first)} nm of '{volumes[0].key('raw')}'; the {role} volumes must "
                "share one voxel size (resample with masktwins prepare --resample-to)")


def crop_weights(volumes: list[RoleVolume], shapes: list) -> list[float]:
    """Each volume's share of the crops: its weight, or its voxel count when no volume of the
    role gives a weight (a volume without a weight among weighted ones is an error)."""
    weights = [volume.weight for volume in volumes]
    if not any(weights):
        return [float(np.prod(shape)) for shape in shapes]
    unweighted = [volume for volume in volumes if not volume.weight]
    if unweighted:
        raise MaskTwinsError(f"recipe key '{unweighted[0].key('weight')}' is 0 while other "
                             "volumes of the role have weights: give every volume a weight, or "
                             "none (then crops follow the voxel counts)")
    return weights


def rare_class_sampler(recipe: Recipe, crops: VolumeCrops) -> RareClassSampler | None:
    """DAFormer's rare-class sampling over one source volume (``data.rare_class_temperature``
    > 0), from the class counts ``prepare`` recorded, else from one pass over the labels."""
    d, k = recipe.data, recipe.model.num_classes
    if d.rare_class_temperature <= 0:
        return None
    pixels = recorded_class_pixels(crops.names[1], crops.shape[0], k)
    if pixels is None:
        pixels = count_class_pixels((crops.label_plane(z) for z in range(crops.shape[0])), k)
    return RareClassSampler(pixels, d.rare_class_temperature, d.rare_class_min_pixels)


def role_list(recipe: Recipe, role: str) -> list[RoleVolume]:
    """The role's volumes; MaskTwinsError (naming the key) when there is none."""
    volumes = list(role_volumes(recipe.data, role))
    if not volumes:
        keys = {"source": "[[data.source]] (or data.source_raw)",
                "target": "[[data.target]] (or data.target_raw)"}[role]
        why = ("training needs labeled source volumes" if role == "source" else
               "method.adapt = true needs unlabeled target volumes (or set method.adapt = false)")
        raise MaskTwinsError(f"recipe key {keys} is empty: {why}")
    return volumes


def open_training_data(recipe: Recipe) -> TrainingData:
    """Samplers for the source volumes (image + labels) and, when adapting, the target images."""
    d, m = recipe.data, recipe.model
    sources = role_list(recipe, "source")
    crops = [source_crops(recipe, volume) for volume in sources]
    check_same_voxel_size(sources, crops, "source")
    source = SamplerMix([PatchSampler(c, d.patch_size, m.spatial_dims, d.augment,
                                      d.intensity_augment, d.foreground_oversample,
                                      rare_class_sampler(recipe, c), d.flips) for c in crops],
                        crop_weights(sources, [c.shape for c in crops]))
    if not recipe.method.adapt:
        return TrainingData(source, None)
    targets = role_list(recipe, "target")
    # with the strong target augmentation the teacher sees the target without intensity jitter
    jitter = 0.0 if recipe.augment.strong_target else d.intensity_augment
    context = recipe.method.teacher_context or (0,) * m.spatial_dims
    teacher_patch = tuple(p + 2 * c for p, c in zip(d.patch_size, context))
    target_crops = []
    for volume in targets:
        raw, stats = open_image(recipe, volume.raw, volume.key("raw"))
        target = VolumeCrops(raw, stats, None, m.num_classes, (raw.uri, ""))
        spatial = target.shape[-m.spatial_dims:]
        if any(c and n < t for c, n, t in zip(context, spatial, teacher_patch)):
            raise MaskTwinsError(f"{raw.uri}: its in-plane size {tuple(spatial)} is smaller than "
                                 f"the teacher's crop {teacher_patch} (data.patch_size + 2 x "
                                 f"method.teacher_context {list(context)}): lower "
                                 "method.teacher_context (or set it to [])")
        target_crops.append(target)
    check_same_voxel_size(targets, target_crops, "target")
    target = SamplerMix([PatchSampler(c, teacher_patch, m.spatial_dims, d.augment, jitter,
                                      flips=d.flips)
                         for c in target_crops], crop_weights(targets, [c.shape for c in target_crops]))
    return TrainingData(source, target)
