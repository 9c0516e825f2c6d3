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
    assert set(MODEL_BUILDERS) == {"unet", "resunet", "basicunet", "segformer"}
    with pytest.raises(KeyError):
        build_model("nope", 2)


def test_learning_rate_warm_up_then_poly():
    assert learning_rate(0, 1.0, 100, 0.9, 10) == pytest.approx(0.1)
    assert learning_rate(9, 1.0, 100, 0.9, 10) == pytest.approx(1.0)
    assert learning_rate(50, 1.0, 100, 0.9, 0) == pytest.approx(0.5 ** 0.9)
    assert learning_rate(100, 1.0, 100, 0.9, 0) == 0.0


def test_basicunet_is_monai_basicunet_with_the_stage_hook():
    from monai.networks.nets import BasicUNet

    model = build_model("basicunet", 3, in_channels=1, num_classes=2,
                        features=(4, 4, 8, 8, 16, 4), norm="instance", pool=(), dropout=0.0).eval()
    reference = BasicUNet(3, 1, 2, features=(4, 4, 8, 8, 16, 4),
                          norm=("instance", {"affine": True})).eval()
    reference.load_state_dict(model.state_dict())  # the same layers under the same names
    x = torch.randn(1, 1, 32, 32, 32)  # instance norm needs 2^3 voxels at the bottom
    seen = []
    with torch.no_grad():
        hooked = model(x, stage_hook=lambda stage, f: (seen.append((stage, f.shape[1])), f)[1])
        assert torch.allclose(hooked, reference(x))
        assert not torch.allclose(model(x, stage_hook=lambda stage, f: f * 2 if stage == 0 else f),
                                  hooked)
    assert seen == [(0, 4), (1, 4), (2, 8), (3, 8), (4, 16)]


@pytest.mark.parametrize("name, features, message", [
    ("basicunet", [4, 4, 8, 8, 16], "takes 6 widths"),
    ("unet", [4, 4, 8, 8, 16, 4], "takes 5 widths"),
])
def test_the_recipe_checks_the_width_count_per_network(tmp_path, name, features, message):
    from masktwins_cli.config.recipe import recipe_from_dict
    from masktwins_cli.errors import MaskTwinsError

    with pytest.raises(MaskTwinsError, match=f"'model.features'.*{message}"):
        recipe_from_dict({"model": {"name": name, "features": features}})
