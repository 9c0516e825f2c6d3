"""Batch augmentation ([augment]): geometric warps keep image and labels aligned, the teacher's
target is never augmented in intensity, and with every switch off batches are today's."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from masktwins_cli.config.recipe import load_recipe
from masktwins_cli.config.schema import AugmentSection
from masktwins_cli.data.augmentation import Augmenter, shift_sections
from masktwins_cli.errors import MaskTwinsError
from masktwins_cli.training.batches import augment_batch, draw_batch
from masktwins_cli.training.data import open_training_data
from masktwins_cli.training.run import train
from masktwins_cli.training.step import Batch, masktwins_losses
from tiny_data import Interrupt, interrupt_after, losses_by_step, write_pair, write_recipe

GEOMETRIC = {"rotate_prob": 1.0, "scale_prob": 1.0, "elastic_prob": 1.0, "elastic_spacing": 16,
             "elastic_magnitude": 3.0}
INTENSITY = {"contrast_prob": 1.0, "gamma_prob": 1.0, "blur_prob": 1.0, "noise_prob": 1.0}
EVERYTHING = {**GEOMETRIC, **INTENSITY, "misalign_prob": 1.0, "missing_section_prob": 1.0,
              "strong_target": True, "strong_jitter_prob": 1.0, "strong_blur_prob": 1.0}


def augmenter(dims=2, **settings):
    return Augmenter(replace(AugmentSection(), **settings), dims)


def coordinate_batch(size=64, batch=3):
    """Images whose value is the row index (float) and labels equal to it (int64)."""
    rows = torch.arange(size, dtype=torch.float32)[:, None].expand(size, size)
    images = rows.expand(batch, 1, size, size).clone()
    return images, images[:, 0].round().long()


@pytest.mark.parametrize("settings", [GEOMETRIC, {"rotate_prob": 1.0}, {"scale_prob": 1.0},
                                      {"elastic_prob": 1.0, "elastic_magnitude": 4.0}])
def test_geometric_warp_moves_image_and_labels_alike(settings):
    images, labels = coordinate_batch()
    warped, warped_labels = augmenter(**settings).geometric(images, labels, np.random.default_rng(0))
    assert warped.shape == images.shape and warped_labels.shape == labels.shape
    assert warped_labels.dtype == torch.int64
    assert not torch.equal(warped_labels, labels)  # something moved
    # labels are resampled by nearest neighbour: whole rows of the original only
    assert set(warped_labels.unique().tolist()) <= set(range(64))
    # the image (bilinear) and the labels (nearest) read the same place (one resampling for the
    # whole warp): within half a row where it is smooth, never more than one (reflection folds)
    gap = (warped[:, 0] - warped_labels.float()).abs()
    assert gap.max() <= 1.0 + 1e-4
    assert (gap <= 0.5 + 1e-4).float().mean() > 0.98
    assert torch.equal(images, coordinate_batch()[0])  # inputs untouched


def test_geometric_warp_keeps_channel_targets_aligned():
    images, labels = coordinate_batch()
    channels = torch.stack([labels.float(), 63 - labels.float()], dim=1)  # (B, 2, y, x)
    warped, warped_channels = augmenter(**GEOMETRIC).geometric(images, channels,
                                                               np.random.default_rng(1))
    assert warped_channels.shape == channels.shape and warped_channels.dtype == torch.float32
    assert torch.allclose(warped_channels[:, 0] + warped_channels[:, 1], torch.tensor(63.0))
    assert ((warped[:, 0] - warped_channels[:, 0]).abs() <= 0.5 + 1e-4).float().mean() > 0.98


def test_3d_rotation_and_scaling_stay_in_plane():
    z = torch.arange(6, dtype=torch.float32)[:, None, None].expand(6, 32, 32)
    images = z.expand(2, 1, 6, 32, 32).clone()
    warped, labels = augmenter(3, rotate_prob=1.0, scale_prob=1.0).geometric(
        images, images[:, 0].long(), np.random.default_rng(2))
    assert torch.allclose(warped, images, atol=1e-4)  # every voxel stays in its section
    assert torch.equal(labels, images[:, 0].long())


def test_misalignment_shifts_later_sections_of_image_and_labels():
    volume = torch.arange(4 * 8 * 8, dtype=torch.float32).reshape(1, 4, 8, 8)
    moved = shift_sections(volume, 2, 1, -2)
    assert torch.equal(moved[:, :2], volume[:, :2])
    assert torch.equal(moved[0, 2, 1:, :6], volume[0, 2, :7, 2:])
    images = volume[None].clone()
    warped, labels = augmenter(3, misalign_prob=1.0, misalign_pixels=3).geometric(
        images, volume.long(), np.random.default_rng(3))
    assert torch.equal(warped[:, 0].long(), labels)
    assert not torch.equal(warped, images)


def test_intensity_changes_the_image_only_and_missing_section_is_the_mean():
    rng = np.random.default_rng(4)
    images = torch.randn(2, 1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    out = augmenter(3, **INTENSITY).intensity(images, rng)
    assert out.shape == images.shape and not torch.allclose(out, images)
    blank = augmenter(3, missing_section_prob=1.0).intensity(images, np.random.default_rng(5))
    blanked = [(blank[b, 0] == 0).all(dim=(1, 2)) for b in range(2)]
    assert all(int(flags.sum()) == 1 for flags in blanked)


def test_switches_off_draw_nothing_and_return_the_batch_unchanged():
    images, labels = coordinate_batch()
    rng = np.random.default_rng(6)
    before = rng.bit_generator.state
    batch = augment_batch(Batch(images, labels, images + 1), augmenter(), rng)
    assert rng.bit_generator.state == before
    assert batch.source is images and batch.source_labels is labels
    assert batch.target_student is None


@pytest.fixture()
def data(tmp_path):
    return write_pair(tmp_path / "data")


def test_default_recipe_batches_are_the_samplers_crops(tmp_path, data):
    recipe = load_recipe(write_recipe(tmp_path / "r.toml", data, tmp_path / "run"))
    training = open_training_data(recipe)
    batch = draw_batch(training, recipe, np.random.default_rng(7), torch.device("cpu"))
    rng = np.random.default_rng(7)
    images, labels = training.source.sample(recipe.train.batch_size, rng)
    target, _ = training.target.sample(recipe.train.target_batch_size, rng)
    assert np.array_equal(batch.source.numpy(), images)
    assert np.array_equal(batch.source_labels.numpy(), labels)
    assert np.array_equal(batch.target.numpy(), target)
    assert batch.target_student is None


class Spy(torch.nn.Module):
    """A labeler that records what it is shown and predicts a fixed two-class map."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x, stage_hook=None):
        self.seen.append(x.detach().clone())
        return torch.cat([x, -x], dim=1)


def test_teacher_sees_the_target_without_intensity_augmentation(tmp_path, data):
    recipe = load_recipe(write_recipe(tmp_path / "r.toml", data, tmp_path / "run",
                                      augment={**INTENSITY, "strong_target": True,
                                               "strong_jitter_prob": 1.0, "strong_blur_prob": 1.0},
                                      method={"adain": False}))
    training = open_training_data(recipe)
    batch = draw_batch(training, recipe, np.random.default_rng(8), torch.device("cpu"))
    rng = np.random.default_rng(8)
    training.source.sample(recipe.train.batch_size, rng)
    clean, _ = training.target.sample(recipe.train.target_batch_size, rng)
    assert np.array_equal(batch.target.numpy(), clean)  # no jitter, no strong augmentation
    assert not torch.allclose(batch.target_student, batch.target)
    teacher, student = Spy(), Spy()
    masktwins_losses(student, teacher, batch, recipe.method, torch.Generator().manual_seed(0))
    assert torch.equal(teacher.seen[0], batch.target)
    masked = student.seen[-1]  # the twins stacked: D * x_strong and (1 - D) * x_strong
    twins = masked[:2] + masked[2:]
    assert torch.allclose(twins, batch.target_student)


def test_geometric_warp_is_shared_by_teacher_and_student(tmp_path, data):
    recipe = load_recipe(write_recipe(tmp_path / "r.toml", data, tmp_path / "run",
                                      augment={**GEOMETRIC, "strong_target": True,
                                               "strong_jitter_prob": 1.0, "strong_blur_prob": 0.0}))
    batch = draw_batch(open_training_data(recipe), recipe, np.random.default_rng(9),
                       torch.device("cpu"))
    # the student's copy is the teacher's warped target up to a per-sample contrast/brightness
    for teacher_view, student_view in zip(batch.target, batch.target_student):
        fit = np.polyfit(teacher_view.flatten().numpy(), student_view.flatten().numpy(), 1)
        residual = student_view - (fit[0] * teacher_view + fit[1])
        assert residual.abs().max() < 1e-4


@pytest.mark.parametrize("dims", [2, 3])
def test_training_with_every_augmentation_on_runs_and_resumes_exactly(tmp_path, data, dims):
    extra = {"model": {"spatial_dims": 3, "features": [2, 4, 4, 4, 4],
                       "pool": [[1, 2, 2], [1, 2, 2], [1, 2, 2], [1, 2, 2]]},
             "data": {"patch_size": [8, 32, 32]}, "method": {"block_size": [2, 8, 8]}} \
        if dims == 3 else {}
    data = write_pair(tmp_path / "data3", shape=(8, 32, 32)) if dims == 3 else data
    settings = {**EVERYTHING, "elastic_spacing": 8}
    full = train(load_recipe(write_recipe(tmp_path / "a.toml", data, tmp_path / "a",
                                          augment=settings, **extra)))
    assert np.isfinite(full.final_record["loss"])
    split = load_recipe(write_recipe(tmp_path / "b.toml", data, tmp_path / "b",
                                     augment=settings, **extra))
    with pytest.raises(Interrupt):
        train(split, report=interrupt_after(2))
    train(split, resume=True)
    assert losses_by_step(tmp_path / "b" / "log.jsonl") == losses_by_step(tmp_path / "a" / "log.jsonl")


def test_recipe_rejects_a_reversed_range_and_unknown_keys(tmp_path, data):
    with pytest.raises(MaskTwinsError, match="augment.gamma_range"):
        load_recipe(write_recipe(tmp_path / "r.toml", data, tmp_path / "run",
                                 augment={"gamma_range": [1.5, 0.7]}))
    with pytest.raises(MaskTwinsError, match="augment.rotate_probability"):
        load_recipe(write_recipe(tmp_path / "s.toml", data, tmp_path / "run",
                                 augment={"rotate_probability": 0.5}))
    with pytest.raises(MaskTwinsError, match="augment.rotate_prob"):
        load_recipe(write_recipe(tmp_path / "t.toml", data, tmp_path / "run",
                                 augment={"rotate_prob": 1.5}))


def test_a_checkpoint_from_before_augment_existed_resumes(tmp_path):
    from masktwins_cli.config.recipe import recipe_to_dict
    from masktwins_cli.config.schema import Recipe
    from masktwins_cli.training.compatibility import check_resume_compatible

    current = recipe_to_dict(Recipe())
    older = {k: dict(v) for k, v in current.items() if k != "augment"}
    for key in ("pseudo_margin", "teacher_context"):
        del older["method"][key]
    check_resume_compatible(older, current, tmp_path / "last.pt")  # no error
    changed = recipe_to_dict(Recipe(augment=replace(AugmentSection(), rotate_prob=0.5)))
    with pytest.raises(MaskTwinsError, match="augment.rotate_prob"):
        check_resume_compatible(older, changed, tmp_path / "last.pt")
