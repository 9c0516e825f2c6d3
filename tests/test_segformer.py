"""The segformer network (MiT encoder from transformers + DAFormer decoder), the MiT weight
converter and pretrained loading, decoder learning rates."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers", reason="the test extra installs it (masktwins[cityscapes])")

from masktwins_cli.config.recipe import recipe_from_dict  # noqa: E402
from masktwins_cli.errors import MaskTwinsError  # noqa: E402
from masktwins_cli.models.mit_weights import from_original, to_original  # noqa: E402
from masktwins_cli.models.segformer import SegFormer  # noqa: E402
from masktwins_cli.runtime.networks import build_from_recipe, load_pretrained_encoder  # noqa: E402
from masktwins_cli.training.run import parameter_groups  # noqa: E402


def tiny(classes: int = 5) -> SegFormer:
    torch.manual_seed(0)
    return SegFormer(3, classes, "mit_tiny", 16)


def random_original_weights(seed: int = 1) -> dict[str, torch.Tensor]:
    """Weights in the original MiT layout with random values (an ImageNet head included)."""
    gen = torch.Generator().manual_seed(seed)
    layout = to_original(tiny().encoder.state_dict())
    state = {k: torch.randn(v.shape, generator=gen) for k, v in layout.items()}
    state["head.weight"], state["head.bias"] = torch.randn(1000, 32), torch.randn(1000)
    return state


def test_logits_come_at_the_input_size_and_every_stage_meets_the_hook():
    model, seen = tiny(), []

    def hook(stage, features):
        seen.append((stage, tuple(features.shape)))
        return features

    logits = model(torch.randn(2, 3, 64, 96), stage_hook=hook)
    assert logits.shape == (2, 5, 64, 96)
    assert seen == [(0, (2, 8, 16, 24)), (1, (2, 16, 8, 12)), (2, (2, 32, 4, 6)), (3, (2, 32, 2, 3))]


def test_the_converter_round_trips_the_original_layout_exactly():
    original = random_original_weights()
    converted, unknown = from_original(original)
    assert unknown == []  # the ImageNet head is dropped, nothing else is left over
    encoder = tiny().encoder
    encoder.load_state_dict(converted)  # strict: every key and shape fits
    back = to_original(encoder.state_dict())
    assert set(back) == set(original) - {"head.weight", "head.bias"}
    assert all(torch.equal(back[k], original[k]) for k in back)
    kv = original["block1.0.attn.kv.weight"]  # keys first, then values
    width = kv.shape[0] // 2
    assert torch.equal(converted["stages.0.blocks.0.attention.k_proj.weight"], kv[:width])
    assert torch.equal(converted["stages.0.blocks.0.attention.v_proj.weight"], kv[width:])
    assert torch.equal(converted["stages.3.layer_norm.weight"], original["norm4.weight"])


def test_pretrained_weights_load_from_an_mmseg_style_file(tmp_path):
    original = random_original_weights()
    wrapped = {"state_dict": {f"backbone.{k}": v for k, v in original.items()}, "meta": {}}
    torch.save(wrapped, tmp_path / "mit.pth")
    model = tiny()
    load_pretrained_encoder(model, tmp_path / "mit.pth", "mit_tiny")
    assert torch.equal(model.encoder.state_dict()["stages.1.patch_embeddings.proj.weight"],
                       original["patch_embed2.proj.weight"])


@pytest.mark.parametrize("damage, fragments", [
    ("missing-file", ["no such file", "model.pretrained"]),
    ("drop-key", ["1 missing key(s)", "stages.0.layer_norm.bias"]),
    ("extra-key", ["1 extra key(s)", "block9.0.attn.bogus"]),
    ("other-size", ["of another shape"]),
    ("not-weights", ["cannot read it as torch weights"]),
])
def test_pretrained_weights_that_do_not_fit_are_one_line(tmp_path, damage, fragments):
    state = random_original_weights()
    path = tmp_path / "mit.pth"
    if damage == "drop-key":
        del state["norm1.bias"]
    elif damage == "extra-key":
        state["block9.0.attn.bogus"] = torch.zeros(1)
    elif damage == "other-size":
        state["patch_embed1.proj.weight"] = torch.zeros(4, 3, 7, 7)
    if damage == "not-weights":
        path.write_bytes(b"not a checkpoint")
    elif damage != "missing-file":
        torch.save(state, path)
    with pytest.raises(MaskTwinsError) as info:
        load_pretrained_encoder(tiny(), path, "mit_tiny")
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    for fragment in fragments:
        assert fragment in message, message


def test_recipe_builds_the_network_and_refuses_3d():
    recipe = recipe_from_dict({"model": {"name": "segformer", "encoder": "mit_tiny",
                                         "in_channels": 3, "num_classes": 19,
                                         "decoder_channels": 16},
                               "data": {"patch_size": [64, 64]}, "method": {"block_size": [16, 16]}})
    assert isinstance(build_from_recipe(recipe), SegFormer)
    with pytest.raises(MaskTwinsError, match="2-D network"):
        recipe_from_dict({"model": {"name": "segformer", "spatial_dims": 3},
                          "data": {"patch_size": [64, 64, 64]},
                          "method": {"block_size": [16, 16, 16]}})
    with pytest.raises(MaskTwinsError, match="divisible"):
        recipe_from_dict({"model": {"name": "segformer"}, "data": {"patch_size": [48, 48]},
                          "method": {"block_size": [16, 16]}})


def test_decoder_learning_rate_and_no_decay_on_norms():
    model = tiny()
    groups = parameter_groups(model, 6e-5, 0.01, decoder_lr_mult=10.0, norm_weight_decay=False)
    by_id = {id(p): g for g in groups for p in g["params"]}
    assert by_id[id(model.decoder.classifier.weight)]["lr"] == pytest.approx(6e-4)
    assert by_id[id(model.decoder.classifier.weight)]["weight_decay"] == 0.01
    assert by_id[id(model.encoder.stages[0].layer_norm.weight)]["weight_decay"] == 0.0
    assert by_id[id(model.encoder.stages[0].layer_norm.weight)]["lr"] == pytest.approx(6e-5)
    assert by_id[id(model.decoder.bottleneck[1].weight)]["weight_decay"] == 0.0  # BatchNorm
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert len(parameter_groups(model, 1e-3, 0.0)) == 1  # defaults: one group, as before
