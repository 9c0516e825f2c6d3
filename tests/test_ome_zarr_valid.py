"""Every container masktwins writes passes the OME-Zarr spec's own validator (the
``ome-zarr-models`` package): prepared volumes (raw image + label image), and infer's
outputs (foreground probability, K-class map, K-class probabilities)."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from cli_helpers import invoke

from masktwins_cli.io.volumes import open_volume, write_volume
from masktwins_cli.prepare.real import prepare_stack
from masktwins_cli.prepare.synthetic import prepare_synthetic

ome_zarr_models = pytest.importorskip("ome_zarr_models", reason="the test extra installs it")


def validated(container) -> object:
    """The validator's model of a container; raises when it does not validate."""
    return ome_zarr_models.open_ome_zarr(zarr.open_group(str(container), mode="r"))


def test_prepared_synthetic_volumes_validate_with_their_label_image(tmp_path):
    prepare_synthetic(tmp_path / "syn", dims=2, seed=0, shape=(2, 64, 64))
    for name in ("source", "target_train", "target_test"):
        model = validated(tmp_path / "syn" / f"{name}.zarr")
        assert type(model).__name__ == "Image"
        labels = zarr.open_group(str(tmp_path / "syn" / f"{name}.zarr"), path="labels", mode="r")
        assert labels.attrs["ome"]["labels"] == ["classes"]
        image_label = zarr.open_group(str(tmp_path / "syn" / f"{name}.zarr"),
                                      path="labels/classes", mode="r").attrs["ome"]["image-label"]
        assert image_label["source"] == {"image": "../../"} and image_label["colors"]
        # the URI users type keeps working
        raw = open_volume(f"{tmp_path}/syn/{name}.zarr/raw")
        assert open_volume(f"{tmp_path}/syn/{name}.zarr/labels").shape == raw.shape


def test_prepare_stack_output_validates(tmp_path):
    write_volume(f"{tmp_path}/in.zarr/raw", np.zeros((2, 32, 32), np.uint8), (30.0, 5.0, 5.0))
    labels = np.zeros((2, 32, 32), np.uint8)
    labels[:, 4:9] = 2
    write_volume(f"{tmp_path}/in.zarr/seg", labels, (30.0, 5.0, 5.0))
    prepare_stack(tmp_path / "out.zarr", f"{tmp_path}/in.zarr/raw", f"{tmp_path}/in.zarr/seg")
    validated(tmp_path / "out.zarr")


@pytest.mark.parametrize("classes, extra", [
    (2, ()), (3, ()), (3, ("--set", 'infer.classes="probabilities"')),
    (3, ("--set", 'infer.classes="both"'))])
def test_infer_outputs_validate(tmp_path, tiny_trained_run, classes, extra):
    from masktwins_cli.io.checkpoints import load_checkpoint, save_checkpoint

    checkpoint = tmp_path / "last.pt"
    payload = load_checkpoint(tiny_trained_run / "last.pt")
    if classes != 2:  # the same network with a 3-class head (fresh weights)
        from masktwins_cli.config.recipe import recipe_from_dict, recipe_to_dict
        from masktwins_cli.runtime.networks import build_from_recipe

        recipe = payload["recipe"]
        recipe["model"]["num_classes"] = classes
        network = build_from_recipe(recipe_from_dict(recipe))
        payload = {**payload, "recipe": recipe_to_dict(recipe_from_dict(recipe)),
                   "model": network.state_dict(), "teacher": network.state_dict()}
    save_checkpoint(checkpoint, payload)
    image = np.random.default_rng(0).integers(0, 255, (2, 32, 32), dtype=np.uint8)
    write_volume(f"{tmp_path}/in.zarr/raw", image, (30.0, 5.0, 5.0))
    result = invoke("infer", checkpoint, f"{tmp_path}/in.zarr/raw", "-o",
                    f"{tmp_path}/pred.zarr/out", "--device", "cpu", *extra)
    assert result.exit_code == 0, result.output
    validated(tmp_path / "pred.zarr")


def test_prepare_stack_rgb_output_validates_with_a_channel_axis(tmp_path):
    from PIL import Image

    (tmp_path / "rgb").mkdir()
    rng = np.random.default_rng(0)
    for z in range(2):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8), mode="RGB").save(
            tmp_path / "rgb" / f"{z}.png")
    prepare_stack(tmp_path / "out.zarr", str(tmp_path / "rgb"), rgb=True)
    validated(tmp_path / "out.zarr")
    ome = zarr.open_group(str(tmp_path / "out.zarr"), mode="r").attrs["ome"]["multiscales"][0]
    assert [axis["type"] for axis in ome["axes"]] == ["channel", "space", "space", "space"]
    assert open_volume(f"{tmp_path}/out.zarr/raw").shape == (3, 2, 32, 32)
