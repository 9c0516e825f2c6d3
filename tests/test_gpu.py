"""GPU path (bf16 autocast training and inference). Run with ``pytest -m gpu`` on a CUDA machine."""

import numpy as np
import pytest
import torch

from masktwins_cli.config.recipe import load_recipe
from masktwins_cli.inference.predict import infer_volume
from masktwins_cli.io.volumes import open_volume
from masktwins_cli.training.metrics_log import read_log
from masktwins_cli.training.run import train
from tiny_data import write_pair, write_recipe

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_train_and_infer_on_gpu_with_bf16(tmp_path):
    data = write_pair(tmp_path / "data", shape=(4, 64, 64))
    recipe = load_recipe(write_recipe(tmp_path / "r.toml", data, tmp_path / "run",
                                      train={"device": "cuda", "amp": True, "iterations": 3}))
    result = train(recipe)
    assert result.device.startswith("cuda")
    assert all(np.isfinite(r["loss"]) for r in read_log(tmp_path / "run" / "log.jsonl") if "loss" in r)
    out = infer_volume(result.last_checkpoint, str(data / "target.zarr" / "raw"),
                       str(tmp_path / "p.zarr"), device="cuda")
    prob = open_volume(out.output).read_all()
    assert np.isfinite(prob).all() and 0 <= prob.min() and prob.max() <= 1


def test_augmentation_runs_on_the_gpu_and_matches_the_cpu():
    from dataclasses import replace

    from masktwins_cli.config.schema import AugmentSection
    from masktwins_cli.data.augmentation import Augmenter

    settings = replace(AugmentSection(), rotate_prob=1.0, scale_prob=1.0, elastic_prob=1.0,
                       contrast_prob=1.0, gamma_prob=1.0, blur_prob=1.0, strong_target=True)
    augmenter = Augmenter(settings, 2)
    images = torch.randn(2, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    labels = (images[:, 0] > 0).long()
    outputs = {}
    for device in ("cpu", "cuda"):
        rng = np.random.default_rng(0)
        warped, warped_labels = augmenter.geometric(images.to(device), labels.to(device), rng)
        outputs[device] = (augmenter.intensity(warped, rng), warped_labels,
                           augmenter.strong_target(warped, rng))
        assert all(t.device.type == device for t in outputs[device])
    (image_c, labels_c, strong_c), (image_g, labels_g, strong_g) = outputs["cpu"], outputs["cuda"]
    assert torch.allclose(image_c, image_g.cpu(), atol=1e-3)
    assert torch.allclose(strong_c, strong_g.cpu(), atol=1e-3)
    # nearest-neighbour labels may round the other way where a grid point falls half-way
    assert (labels_c == labels_g.cpu()).float().mean() > 0.99
