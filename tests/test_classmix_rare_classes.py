"""DACS ClassMix and DAFormer's rare-class sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from masktwins_cli.config.recipe import recipe_from_dict
from masktwins_cli.data.normalization import IntensityStats
from masktwins_cli.data.patches import PatchSampler, VolumeCrops
from masktwins_cli.data.rare_classes import (
    RareClassSampler,
    class_probabilities,
    count_class_pixels,
    recorded_class_pixels,
)
from masktwins_cli.errors import MaskTwinsError
from masktwins_cli.method.classmix import class_mix_masks, mix_images, mix_labels
from masktwins_cli.method.losses import weighted_cross_entropy
from masktwins_cli.training.step import Batch, masktwins_losses


def test_class_mix_masks_take_half_of_the_classes_present():
    labels = torch.tensor([[[0, 0, 1, 1], [2, 2, 3, 255]],
                           [[4, 4, 4, 4], [4, 4, 255, 255]]])
    masks = class_mix_masks(labels, np.random.default_rng(0), ignore_label=255)
    assert masks.shape == (2, 1, 2, 4)
    for sample, mask in zip(labels, masks[:, 0]):
        present = set(sample.unique().tolist()) - {255}
        chosen = set(sample[mask > 0].unique().tolist())
        assert len(chosen) == (len(present) + 1) // 2 and chosen <= present
        assert torch.equal(mask > 0, torch.isin(sample, torch.tensor(sorted(chosen))))


def test_mixed_images_and_labels_take_the_source_inside_and_the_pseudo_labels_outside():
    source = torch.full((2, 3, 2, 2), 1.0)
    target = torch.full((1, 3, 2, 2), -1.0)
    masks = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]], [[[0.0, 1.0], [1.0, 1.0]]]])
    mixed = mix_images(masks, source, target)
    assert torch.equal(mixed[:, 0], torch.where(masks[:, 0] > 0, 1.0, -1.0))
    source_labels = torch.tensor([[[1, 2], [2, 2]], [[2, 255], [1, 1]]])
    pseudo, pseudo_weights = torch.tensor([[[0, 0], [0, 2]]]), torch.full((1, 2, 2), 0.3)
    labels, weights = mix_labels(masks, source_labels, pseudo, pseudo_weights, 255)
    assert labels.tolist() == [[[1, 0], [0, 2]], [[0, 0], [1, 1]]]
    assert torch.allclose(weights, torch.tensor([[[1.0, 0.3], [0.3, 0.3]],
                                                 [[0.3, 0.0], [1.0, 1.0]]]))  # 255: weight 0


class Fixed(torch.nn.Module):
    """Logits that do not depend on the input beyond a learnable scale (a stand-in network)."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits, self.scale = logits, torch.nn.Parameter(torch.ones(()))

    def forward(self, x, stage_hook=None):
        return self.scale * self.logits[: x.shape[0]] + 0 * x.mean()


def test_the_step_adds_loss_mix_against_the_mixed_labels():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 3, 16, 16, generator=gen)
    recipe = recipe_from_dict({"model": {"num_classes": 3}, "data": {"patch_size": [16, 16]},
                               "method": {"block_size": [4, 4], "adain": False, "classmix": True,
                                          "confidence": "quality"}})
    source_labels = torch.randint(0, 3, (2, 16, 16), generator=gen)
    masks = class_mix_masks(source_labels, np.random.default_rng(1))
    batch = Batch(torch.randn(2, 1, 16, 16), source_labels, torch.randn(1, 1, 16, 16),
                  mixed=torch.randn(2, 1, 16, 16), mix_masks=masks)
    model = Fixed(logits)
    terms = masktwins_losses(model, model, batch, recipe.method, gen, batched_views=False)
    teacher = logits[:1].softmax(dim=1)
    pseudo = teacher.argmax(dim=1)
    quality = (teacher.amax(dim=1) >= recipe.method.quality_tau).float().mean()
    labels, weights = mix_labels(masks, source_labels, pseudo, torch.full_like(pseudo, 1.0) * quality)
    expected = weighted_cross_entropy(logits[:2], labels, weights)
    assert terms["loss_mix"] == pytest.approx(float(expected), rel=1e-5)
    without = masktwins_losses(model, model, Batch(batch.source, source_labels, batch.target),
                               recipe.method, torch.Generator().manual_seed(0), batched_views=False)
    assert "loss_mix" not in without


# ---------------------------------------------------------------------------- rare classes
def test_class_probabilities_follow_the_softmax_of_rarity():
    pixels = np.array([[900, 90, 10, 0]])
    share = np.array([0.9, 0.09, 0.01])
    p = class_probabilities(pixels, 0.1)
    expected = np.exp((1 - share) / 0.1)
    assert np.allclose(p[:3], expected / expected.sum()) and p[3] == 0.0
    assert class_probabilities(pixels, 0.01)[2] > 0.99  # DAFormer's T: the rarest dominates


def test_rare_class_draws_follow_the_probabilities_and_the_min_pixels():
    pixels = np.array([[5000, 0, 100], [4000, 3500, 0], [6000, 3000, 3100]])
    sampler = RareClassSampler(pixels, temperature=0.5, min_pixels=3000)
    rng = np.random.default_rng(0)
    draws = [sampler.draw(rng) for _ in range(6000)]
    counts = np.bincount([c for c, _ in draws], minlength=3) / len(draws)
    assert np.allclose(counts, sampler.probabilities, atol=0.02)
    assert {z for c, z in draws if c == 1} == {1, 2} and {z for c, z in draws if c == 2} == {2}


def test_rare_class_crops_hold_the_rare_class():
    labels = np.zeros((6, 64, 64), np.uint8)
    labels[:, 20:40] = 1
    labels[3, 50:53, 5:8] = 2  # nine pixels in one slice
    crops = VolumeCrops(np.random.default_rng(0).random((6, 64, 64)).astype(np.float32),
                        IntensityStats(0.0, 1.0), labels, num_classes=3)
    pixels = count_class_pixels((crops.label_plane(z) for z in range(6)), 3)
    assert pixels[3, 2] == 9 and pixels[:, 1].sum() == 6 * 20 * 64
    rare = RareClassSampler(pixels, temperature=0.01, min_pixels=5)
    sampler = PatchSampler(crops, (16, 16), 2, augment=False, rare=rare)
    _, batch = sampler.sample(40, np.random.default_rng(1))
    holding = [(crop == 2).any() for crop in batch]
    assert np.mean(holding) > 0.9  # uniform crops would hold it about 5 % of the time


def test_recorded_class_pixels_come_from_prepare(tmp_path):
    from scene_fixtures import synthia_tree

    from masktwins_cli.prepare.scenes import SYNTHIA, prepare_scenes

    synthia_tree(tmp_path / "syn", count=2)
    prepare_scenes(SYNTHIA, tmp_path / "syn", tmp_path / "s.zarr")
    recorded = recorded_class_pixels(f"{tmp_path}/s.zarr/labels", 2, 19)
    from masktwins_cli.io.volumes import open_volume

    labels = open_volume(f"{tmp_path}/s.zarr/labels")
    assert np.array_equal(recorded, count_class_pixels((labels[z] for z in range(2)), 19))
    assert recorded_class_pixels(f"{tmp_path}/s.zarr/labels", 3, 19) is None  # another depth
    assert recorded_class_pixels(f"{tmp_path}/nothing.zarr/labels", 2, 19) is None


def test_recipe_rules():
    with pytest.raises(MaskTwinsError, match="use one"):
        recipe_from_dict({"data": {"rare_class_temperature": 0.01, "foreground_oversample": 0.3}})
    with pytest.raises(MaskTwinsError, match="method.classmix"):
        recipe_from_dict({"model": {"task": "synapse", "spatial_dims": 3, "name": "resunet",
                                    "features": [4, 4, 4, 4, 4]},
                          "data": {"patch_size": [16, 16, 16]},
                          "method": {"classmix": True, "block_size": [4, 4, 4]}})
