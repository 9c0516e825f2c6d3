"""The U-Net: 2D/3D shapes, anisotropic pooling, the stage hook, the registry, the schedule."""

import pytest
import torch

from masktwins_cli.models import MODEL_BUILDERS, build_model
from masktwins_cli.training.schedule import learning_rate


def unet(dims, pool=(), norm="instance"):
    return build_model("unet", dims, in_channels=1, num_classes=2, features=(2, 4, 4, 4, 4),
                       norm=norm, pool=pool, dropout=0.0)


@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_2d_output_shape(norm):
    out = unet(2, norm=norm)(torch.randn(2, 1, 32, 48))
    assert out.shape == (2, 2, 32, 48)


def test_3d_anisotropic_pooling_keeps_thin_z():
    model = unet(3, pool=((1, 2, 2), (1, 2, 2), (1, 2, 2), (2, 2, 2)))
    out = model(torch.randn(1, 1, 2, 32, 32))  # z = 2 only survives in-plane pooling
    assert out.shape == (1, 2, 2, 32, 32)


def test_stage_hook_sees_every_encoder_stage_and_changes_the_output():
    model = unet(2).eval()
    seen = []

    def hook(stage, features):
        seen.append((stage, tuple(features.shape)))
        return features

    x = torch.randn(1, 1, 32, 32)
    plain = model(x)
    assert torch.equal(model(x, stage_hook=hook), plain)
    assert [s for s, _ in seen] == [0, 1, 2, 3, 4]
    assert seen[0][1] == (1, 2, 32, 32) and seen[4][1] == (1, 4, 2, 2)
    doubled = model(x, stage_hook=lambda s, f: f * 2 if s == 0 else f)
    assert not torch.allclose(doubled, plain)


def test_registry_is_a_plain_dict_of_builders_taking_spatial_dims():
    assert set(MODEL_BUILDERS) == {"unet", "resunet"}
    with pytest.raises(KeyError):
        build_model("nope", 2)


def test_learning_rate_warm_up_then_poly():
    assert learning_rate(0, 1.0, 100, 0.9, 10) == pytest.approx(0.1)
    assert learning_rate(9, 1.0, 100, 0.9, 10) == pytest.approx(1.0)
    assert learning_rate(50, 1.0, 100, 0.9, 0) == pytest.approx(0.5 ** 0.9)
    assert learning_rate(100, 1.0, 100, 0.9, 0) == 0.0
