"""data.ignore_label: source voxels with that label count nowhere (L_sup, crop placement), are
accepted by the label checks while other out-of-class values are refused, and the recipe
refuses an ignore value that is a class."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from masktwins_cli.config.recipe import load_recipe
from masktwins_cli.data.normalization import IntensityStats
from masktwins_cli.data.patches import VolumeCrops, foreground_voxels
from masktwins_cli.errors import MaskTwinsError
from masktwins_cli.io.volumes import write_volume
from masktwins_cli.method.losses import supervised_loss
from masktwins_cli.training.run import train
from tiny_data import toml_document


def test_garbage_under_the_ignore_label_changes_neither_loss_nor_gradient():
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (2, 16, 16), generator=gen)
    labels[:, :5] = 255
    logits = torch.randn(2, 3, 16, 16, generator=gen)
    garbage = logits.clone()
    garbage[:, :, :5] = 1e3 * torch.randn(2, 3, 5, 16, generator=gen)
    values, grads = [], []
    for x in (logits, garbage):
        x = x.clone().requires_grad_(True)
        loss = supervised_loss(x, labels, ignore_label=255)
        loss.backward()
        values.append(loss.detach())
        grads.append(x.grad[:, :, 5:])
    assert torch.equal(values[0], values[1]) and torch.equal(grads[0], grads[1])
    counted = labels[:, 5:]
    assert values[0] == pytest.approx(float(torch.nn.functional.cross_entropy(logits[:, :, 5:], counted)))
    everything_ignored = supervised_loss(logits, torch.full_like(labels, 255), ignore_label=255)
    assert float(everything_ignored) == 0.0


def test_labels_may_hold_the_ignore_label_but_no_other_value_outside_the_classes():
    raw = np.zeros((1, 8, 8), np.float32)
    stats = IntensityStats(0.0, 1.0)
    labels = np.zeros((1, 8, 8), np.uint8)
    labels[0, :2] = 255
    labels[0, 4, 4] = 1
    crops = VolumeCrops(raw, stats, labels, 2, ignore_label=255)
    assert foreground_voxels(crops).tolist() == [[0, 4, 4]]  # 255 is not foreground
    labels[0, 7, 7] = 7
    with pytest.raises(MaskTwinsError, match=r"label values 7 outside .* or 255 \(data.ignore_label\)"):
        VolumeCrops(raw, stats, labels, 2, names=("raw", "lab.zarr"), ignore_label=255)


def recipe_with(tmp_path, **data) -> str:
    sections = {
        "data": {"root": str(tmp_path), "patch_size": [32, 32], **data},
        "model": {"spatial_dims": 2, "features": [2, 2, 2, 2, 2], "num_classes": 3},
        "method": {"block_size": [8, 8]},
        "train": {"iterations": 2, "batch_size": 1, "target_batch_size": 1, "device": "cpu",
                  "output_dir": str(tmp_path / "run"), "threads": 1},
    }
    path = tmp_path / "recipe.toml"
    path.write_text(toml_document(sections), encoding="utf-8")
    return str(path)


def test_a_three_class_run_trains_with_an_ignored_region(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, (3, 32, 32)).astype(np.uint8)
    labels[:, :, :10] = 255
    write_volume(f"{tmp_path}/s.zarr/raw", rng.integers(0, 255, (3, 32, 32), dtype=np.uint8),
                 (1.0, 1.0, 1.0))
    write_volume(f"{tmp_path}/s.zarr/labels", labels, (1.0, 1.0, 1.0))
    source = [{"raw": "s.zarr/raw", "labels": "s.zarr/labels"}]
    result = train(load_recipe(recipe_with(tmp_path, source=source, target=[{"raw": "s.zarr/raw"}])))
    assert np.isfinite(result.final_record["loss_sup"])


def test_an_ignore_label_that_is_a_class_is_refused(tmp_path):
    with pytest.raises(MaskTwinsError, match="'data.ignore_label' = 2: it is one of the classes 0..2"):
        load_recipe(recipe_with(tmp_path, ignore_label=2))


def test_scores_over_counted_voxels_leave_the_ignored_ones_out():
    from masktwins_cli.scoring.counted import score_counted
    from masktwins_cli.scoring.metrics import score_volume

    rng = np.random.default_rng(1)
    truth = rng.random((3, 16, 16)) > 0.6
    prob = np.clip(truth + rng.normal(0, 0.4, truth.shape), 0, 1).astype(np.float32)
    counted = np.ones(truth.shape, bool)
    counted[:, :, :6] = False
    garbage = prob.copy()
    garbage[:, :, :6] = rng.random((3, 16, 6))
    for mode in ("per_slice", "volume"):
        kept = score_volume(prob[:, :, 6:], truth[:, :, 6:], 0.5, mode)
        counted_scores = score_counted(garbage, truth, counted, 0.5, mode)
        for key in ("iou", "f1", "mcc", "ap"):
            assert getattr(counted_scores, key) == pytest.approx(getattr(kept, key)), (mode, key)
    assert score_counted(prob, truth, np.zeros(truth.shape, bool)) is None


def test_two_class_validation_leaves_the_ignore_label_out(tmp_path):
    import torch

    from masktwins_cli.training.validation import ValidationVolume, Validator

    rng = np.random.default_rng(0)
    labels = (rng.random((2, 32, 32)) > 0.7).astype(np.uint8)
    noisy = labels.copy()
    noisy[:, :, :8] = 255  # unlabeled band
    write_volume(f"{tmp_path}/v.zarr/raw", rng.integers(0, 255, (2, 32, 32), dtype=np.uint8),
                 (1.0, 1.0, 1.0))
    write_volume(f"{tmp_path}/v.zarr/labels", noisy, (1.0, 1.0, 1.0))
    sections = {"data": {"root": str(tmp_path), "patch_size": [32, 32],
                         "val": [{"raw": "v.zarr/raw", "labels": "v.zarr/labels"}]},
                "model": {"spatial_dims": 2, "features": [2, 2, 2, 2, 2]},
                "method": {"block_size": [8, 8]}}
    (tmp_path / "r.toml").write_text(toml_document(sections), encoding="utf-8")
    recipe = load_recipe(tmp_path / "r.toml")
    validator = Validator.from_recipe(recipe, torch.device("cpu"))
    volume: ValidationVolume = validator.volumes[0]
    assert volume.counted is not None and not volume.counted[:, :, :8].any()
    from masktwins_cli.runtime.networks import build_from_recipe

    scores = validator(build_from_recipe(recipe))
    assert scores["val_iou"] is not None
