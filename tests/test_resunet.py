"""The isotropic residual U-Net (models/resunet.py): shapes, stage hook + AdaIN, gradients, registry."""

import pytest
import torch

from masktwins_cli.method.adain import AdaINStyler, StatisticsRecorder, channel_statistics
from masktwins_cli.models import MODEL_BUILDERS, build_model
from masktwins_cli.models.resunet import DEFAULT_FEATURES, ResUNet

TINY = (4, 5, 6, 7, 8)


def tiny(dims=3, norm="batch", **options):
    torch.manual_seed(0)
    return build_model("resunet", dims, in_channels=1, num_classes=2, features=TINY, norm=norm,
                       **options)


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_3d_output_shape_equals_input_shape(norm):
    out = tiny(norm=norm)(torch.randn(2, 1, 32, 32, 32))
    assert out.shape == (2, 2, 32, 32, 32)


def test_sizes_not_divisible_by_16_are_handled_and_too_small_inputs_fail_clearly():
    model = tiny().eval()
    assert model(torch.randn(1, 1, 33, 20, 17)).shape == (1, 2, 33, 20, 17)
    with pytest.raises(ValueError, match="smaller than the total down-sampling"):
        model(torch.randn(1, 1, 8, 32, 32))
    with pytest.raises(ValueError, match="expects input"):
        model(torch.randn(1, 32, 32, 32))


def test_2d_and_anisotropic_pooling():
    assert tiny(2)(torch.randn(2, 1, 32, 48)).shape == (2, 2, 32, 48)
    model = tiny(pool=((1, 2, 2), (1, 2, 2), (2, 2, 2), (2, 2, 2)))
    assert model(torch.randn(1, 1, 8, 32, 32)).shape == (1, 2, 8, 32, 32)
    with pytest.raises(ValueError, match="spatial_dims"):
        ResUNet(1)
    with pytest.raises(ValueError, match="pool"):
        ResUNet(3, pool=((2, 2, 2),))


def test_stage_hook_sees_embedding_and_every_encoder_stage():
    model = tiny().eval()
    seen = []

    def hook(stage, features):
        seen.append((stage, tuple(features.shape)))
        return features

    x = torch.randn(1, 1, 32, 32, 32)
    assert torch.equal(model(x, stage_hook=hook), model(x))
    assert [s for s, _ in seen] == [0, 1, 2, 3, 4, 5]
    assert seen[0][1] == (1, 4, 32, 32, 32)  # embedding: features[0] channels, full size
    assert seen[1][1] == (1, 4, 32, 32, 32)  # first residual stage
    assert seen[2][1] == (1, 5, 16, 16, 16)
    assert seen[5][1] == (1, 8, 2, 2, 2)


def test_adain_restyles_shallow_features_and_is_identity_for_own_statistics():
    model = tiny().eval()
    source, target = torch.randn(2, 1, 16, 16, 16), 3 * torch.randn(2, 1, 16, 16, 16) + 1
    recorder = StatisticsRecorder(2)
    model(target, stage_hook=recorder)
    assert sorted(recorder.statistics) == [0, 1]
    assert recorder.statistics[0][0].shape == (2, 4, 1, 1, 1)
    plain = model(source)
    styled = model(source, stage_hook=AdaINStyler(recorder.statistics))
    assert not torch.allclose(styled, plain, atol=1e-3)

    own = StatisticsRecorder(2)
    model(source, stage_hook=own)
    same = model(source, stage_hook=AdaINStyler(own.statistics))
    torch.testing.assert_close(same, plain, atol=1e-4, rtol=1e-4)


def test_adain_hook_output_carries_target_statistics():
    model = tiny().eval()
    target = 2 * torch.randn(1, 1, 16, 16, 16) + 3
    recorder = StatisticsRecorder(1)
    model(target, stage_hook=recorder)
    captured = {}

    def styler_then_capture(stage, features):
        features = AdaINStyler(recorder.statistics)(stage, features)
        captured.setdefault(stage, features)
        return features

    model(torch.randn(1, 1, 16, 16, 16), stage_hook=styler_then_capture)
    mean, std = channel_statistics(captured[0])
    torch.testing.assert_close(mean, recorder.statistics[0][0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(std, recorder.statistics[0][1], atol=1e-4, rtol=1e-4)


def test_gradient_reaches_every_parameter():
    model = tiny()
    model(torch.randn(2, 1, 16, 16, 16)).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_registry_builds_default_network_with_sensible_size():
    assert "resunet" in MODEL_BUILDERS and "unet" in MODEL_BUILDERS
    model = build_model("resunet", 3)
    assert isinstance(model, ResUNet)
    encoder_widths = [block.project.conv.out_channels for block in model.encoder]
    assert tuple(encoder_widths) == DEFAULT_FEATURES
    assert model.embed_in.conv.kernel_size == (5, 5, 5)
    assert model.embed_out.conv.kernel_size == (5, 5, 5)
    assert model.head.conv.out_channels == 2
    count = sum(p.numel() for p in model.parameters())
    assert 1.5e6 < count < 2.5e6  # ~1.92 M
    assert isinstance(model.encoder[0].merge[0], torch.nn.BatchNorm3d)
