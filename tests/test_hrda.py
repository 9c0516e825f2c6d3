"""HRDA around the segformer: context and detail passes, scale attention, the detail loss,
sliding detail windows at inference."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers", reason="the test extra installs it (masktwins[cityscapes])")

from masktwins_cli.config.recipe import recipe_from_dict  # noqa: E402
from masktwins_cli.errors import MaskTwinsError  # noqa: E402
from masktwins_cli.models.hrda import HRDA, window_starts  # noqa: E402
from masktwins_cli.runtime.networks import build_from_recipe  # noqa: E402
from masktwins_cli.training.run import parameter_groups  # noqa: E402
from masktwins_cli.training.step import pop_detail, with_detail  # noqa: E402


def tiny() -> HRDA:
    torch.manual_seed(0)
    return HRDA(3, 4, "mit_tiny", 16, scale=0.5, detail=(64, 64), detail_loss=0.1)


def test_training_forward_keeps_the_detail_window_and_its_logits():
    model = tiny().train()
    x = torch.randn(2, 3, 128, 192)
    logits = model(x)
    assert logits.shape == (2, 4, 128, 192)
    detail, box, weight = pop_detail(model)
    assert detail.shape == (2, 4, 64, 64) and weight == 0.1
    assert all(b.start % 32 == 0 and b.stop - b.start == 64 for b in box)
    assert pop_detail(model) is None  # taken once


def test_outside_the_detail_window_the_fused_logits_are_the_context_alone():
    model = tiny().train()
    x = torch.randn(1, 3, 128, 128)
    torch.manual_seed(5)
    fused = model(x)
    _, box, _ = pop_detail(model)
    model.attention.classifier.bias.data.fill_(-1e4)  # attention 0 everywhere: context only
    torch.manual_seed(5)
    context_only = model(x)
    pop_detail(model)
    outside = torch.ones(128, 128, dtype=torch.bool)
    outside[box[0].start:box[0].stop, box[1].start:box[1].stop] = False
    outside[box[0].start - 8:box[0].stop + 8, box[1].start - 8:box[1].stop + 8] = False  # blur
    assert torch.allclose(fused[..., outside], context_only[..., outside], atol=1e-5)


def test_inference_slides_detail_windows_over_everything():
    assert window_starts(256, 64) == [0, 32, 64, 96, 128, 160, 192]
    assert window_starts(100, 64) == [0, 32, 36] and window_starts(40, 64) == [0]  # as mmseg
    model = tiny().eval()
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (1, 4, 128, 128) and model.detail is None
    model.attention.classifier.bias.data.fill_(1e4)  # attention 1: detail windows only
    with torch.no_grad():
        detail_only = model(x)
        expected = model.base(x[..., :64, :64])
    # the top-left quarter of the first window is covered by it alone
    assert torch.allclose(detail_only[..., :28, :28], expected[..., :28, :28], atol=1e-4)


def test_the_detail_loss_mixes_with_the_fused_one():
    fused = torch.tensor(2.0)
    labels = torch.arange(16).reshape(1, 4, 4)
    seen = {}

    def loss_fn(logits, targets):
        seen["targets"] = targets
        return torch.tensor(10.0)

    detail = (torch.zeros(1, 3, 2, 2), (slice(1, 3), slice(2, 4)), 0.1)
    assert float(with_detail(fused, detail, loss_fn, labels)) == pytest.approx(0.9 * 2 + 0.1 * 10)
    assert seen["targets"].tolist() == [[[6, 7], [10, 11]]]
    assert with_detail(fused, None, loss_fn, labels) is fused


def test_recipe_rules_and_groups():
    recipe = recipe_from_dict({"model": {"name": "segformer", "encoder": "mit_tiny", "hrda": True,
                                         "hrda_detail": [64, 64], "decoder_channels": 16,
                                         "in_channels": 3, "num_classes": 4},
                               "data": {"patch_size": [128, 128]}})
    model = build_from_recipe(recipe)
    assert isinstance(model, HRDA)
    groups = parameter_groups(model, 1e-3, 0.0, decoder_lr_mult=10.0)
    fast = {id(p) for g in groups if g["lr_mult"] == 10.0 for p in g["params"]}
    assert id(model.attention.classifier.weight) in fast and id(model.base.decoder.classifier.weight) in fast
    assert id(model.encoder.stages[0].layer_norm.weight) not in fast
    for bad in ({"data": {"patch_size": [96, 96]}},  # the context must stay a multiple of 32
                {"model": {"hrda_detail": [48, 48]}}):
        values = {"model": {"name": "segformer", "hrda": True, "hrda_detail": [64, 64]},
                  "data": {"patch_size": [128, 128]}}
        for section, entries in bad.items():
            values[section] = {**values[section], **entries}
        with pytest.raises(MaskTwinsError):
            recipe_from_dict(values)
    with pytest.raises(MaskTwinsError, match="segformer"):
        recipe_from_dict({"model": {"hrda": True}})
