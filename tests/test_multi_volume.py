"""Several volumes per data role ([[data.source]], [[data.target]], [[data.val]]): training on
volumes of different shapes, crops drawn in proportion to the weights (or voxel counts), one
voxel size per role, validation as the mean over volumes, and the recipe rules with errors that
name the table entry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from masktwins_cli.config.recipe import load_recipe, recipe_from_dict, recipe_to_toml
from masktwins_cli.config.roles import RoleVolume, role_volumes
from masktwins_cli.errors import MaskTwinsError
from masktwins_cli.io.volumes import write_volume
from masktwins_cli.training.data import crop_weights, open_training_data
from masktwins_cli.training.run import train
from masktwins_cli.training.validation import Validator
from tiny_data import toml_document

PATCH = [32, 32]


def volume_pair(folder, name: str, shape, label: int | None = None, voxel=(1.0, 1.0, 1.0),
                seed: int = 0) -> dict[str, str]:
    """A random uint8 image and labels (random 0/1, or all ``label``) under ``folder/name.zarr``."""
    rng = np.random.default_rng(seed)
    raw, labels = f"{folder}/{name}.zarr/raw", f"{folder}/{name}.zarr/labels"
    write_volume(raw, rng.integers(0, 256, shape, dtype=np.uint8), voxel)
    values = (rng.random(shape) > 0.5) if label is None else np.full(shape, label)
    write_volume(labels, values.astype(np.uint8), voxel)
    return {"raw": raw, "labels": labels}


def recipe_file(tmp_path, data: dict, num_classes: int = 2, **train) -> str:
    sections = {
        "data": {"root": str(tmp_path), "patch_size": PATCH, "augment": False, **data},
        "model": {"spatial_dims": 2, "features": [2, 2, 2, 2, 2], "num_classes": num_classes},
        "method": {"block_size": [4, 4]},
        "train": {"iterations": 2, "batch_size": 2, "target_batch_size": 2, "device": "cpu",
                  "output_dir": str(tmp_path / "run"), "log_every": 1, "threads": 1, **train},
        "infer": {"batch_size": 1},
    }
    path = tmp_path / "recipe.toml"
    path.write_text(toml_document(sections), encoding="utf-8")
    return str(path)


def test_two_sources_and_three_targets_of_different_shapes_train_and_validate(tmp_path):
    sources = [volume_pair(tmp_path, f"s{i}", shape, seed=i)
               for i, shape in enumerate([(3, 32, 32), (2, 48, 40)])]
    targets = [{"raw": volume_pair(tmp_path, f"t{i}", shape, seed=10 + i)["raw"]}
               for i, shape in enumerate([(2, 32, 32), (4, 32, 64), (1, 40, 40)])]
    vals = [volume_pair(tmp_path, f"v{i}", (2, 32, 32), seed=20 + i) for i in range(2)]
    recipe = load_recipe(recipe_file(tmp_path, {"source": sources, "target": targets, "val": vals},
                                     val_every=2))
    result = train(recipe)
    assert result.last_checkpoint.is_file()
    from masktwins_cli.training.metrics_log import read_log

    last = read_log(result.output_dir / "log.jsonl")[-1]
    assert last["step"] == 2 and "val_iou" in last
    # validation is the mean over the volumes: the same as scoring each on its own
    from masktwins_cli.io.checkpoints import load_checkpoint
    from masktwins_cli.runtime.networks import build_from_recipe, load_weights

    model = load_checkpoint(result.last_checkpoint)
    network = build_from_recipe(recipe)
    load_weights(network, model["model"], result.last_checkpoint)
    both = Validator.from_recipe(recipe, torch.device("cpu"))(network)
    alone = []
    for val in vals:
        single = recipe_from_dict({**_plain(recipe), "data": {**_plain(recipe)["data"], "val": [val]}})
        alone.append(Validator.from_recipe(single, torch.device("cpu"))(network))
    for key in ("val_iou", "val_f1", "val_mcc"):
        assert both[key] == pytest.approx(np.mean([scores[key] for scores in alone]))


def _plain(recipe) -> dict:
    from masktwins_cli.config.recipe import recipe_to_dict

    return recipe_to_dict(recipe)


def crop_origins(sampler, draws: int, seed: int = 0) -> np.ndarray:
    """How many crops came from each volume: the labels hold the volume's index."""
    rng = np.random.default_rng(seed)
    _, labels = sampler.sample(draws, rng)
    return np.bincount(labels.reshape(draws, -1)[:, 0], minlength=3)


@pytest.mark.parametrize("weights", [(1.0, 2.0, 5.0), None])
def test_crops_come_from_every_volume_in_proportion_to_its_weight(tmp_path, weights):
    shapes = [(2, 32, 32), (3, 64, 32), (4, 64, 64)]
    sources = [volume_pair(tmp_path, f"s{i}", shape, label=i) for i, shape in enumerate(shapes)]
    if weights:
        sources = [{**s, "weight": w} for s, w in zip(sources, weights)]
    recipe = load_recipe(recipe_file(tmp_path, {"source": sources}, num_classes=3))
    recipe = recipe_from_dict({**_plain(recipe), "method": {**_plain(recipe)["method"],
                                                             "adapt": False}})
    draws = 6000
    counts = crop_origins(open_training_data(recipe).source, draws)
    expected = np.asarray(weights or [np.prod(s) for s in shapes], float)
    expected /= expected.sum()
    sigma = np.sqrt(draws * expected * (1 - expected))
    assert np.all(np.abs(counts - draws * expected) < 4 * sigma), (counts, draws * expected)


def test_one_volume_draws_no_extra_random_numbers(tmp_path):
    """The single-volume form and one [[data.source]] table give the very same batches."""
    pair = volume_pair(tmp_path, "s", (3, 32, 32))
    target = volume_pair(tmp_path, "t", (3, 32, 32), seed=1)["raw"]
    tables = load_recipe(recipe_file(tmp_path, {"source": [pair], "target": [{"raw": target}]}))
    single = load_recipe(recipe_file(tmp_path, {"source_raw": pair["raw"],
                                                "source_labels": pair["labels"],
                                                "target_raw": target}))
    batches = []
    for recipe in (tables, single):
        data, rng = open_training_data(recipe), np.random.default_rng(7)
        batches.append((*data.source.sample(2, rng), data.target.sample(2, rng)[0]))
    for a, b in zip(*batches):
        assert np.array_equal(a, b)


def test_default_weights_follow_voxel_counts_and_partial_weights_are_refused():
    volumes = [RoleVolume("source", i, f"v{i}") for i in range(2)]
    assert crop_weights(volumes, [(2, 10, 10), (1, 10, 30)]) == [200.0, 300.0]
    mixed = [RoleVolume("source", 0, "a", weight=2.0), RoleVolume("source", 1, "b")]
    with pytest.raises(MaskTwinsError, match=r"'data.source\[1\].weight' is 0"):
        crop_weights(mixed, [(1, 4, 4), (1, 4, 4)])


def test_volumes_of_one_role_must_share_a_voxel_size(tmp_path):
    a = volume_pair(tmp_path, "a", (2, 32, 32), voxel=(40.0, 4.0, 4.0))
    b = volume_pair(tmp_path, "b", (2, 32, 32), voxel=(40.0, 8.0, 8.0))
    recipe = load_recipe(recipe_file(tmp_path, {"source": [a, b], "target": [{"raw": a["raw"]}]}))
    with pytest.raises(MaskTwinsError) as err:
        open_training_data(recipe)
    message = str(err.value)
    assert "data.source[1].raw" in message and "data.source[0].raw" in message
    assert "(40.0, 8.0, 8.0)" in message and "(40.0, 4.0, 4.0)" in message


@pytest.mark.parametrize("data, expected", [
    ({"source_raw": "a.zarr/raw", "source": [{"raw": "b.zarr/raw", "labels": "b.zarr/l"}]},
     "data.source_raw and [[data.source]] tables both"),
    ({"target": [{"raw": "t.zarr/raw", "labels": "t.zarr/l"}]}, "'data.target[0].labels'"),
    ({"val": [{"raw": "v.zarr/raw"}]}, "'data.val[0].labels' is empty"),
    ({"val": [{"raw": "v.zarr/raw", "labels": "v.zarr/l"}, {"labels": "w.zarr/l"}]},
     "'data.val[1].raw' is empty"),
    ({"source": [{"raw": "a.zarr/raw", "points": "p.csv"}]}, "'data.source[0].points'"),
    ({"source": [{"raw": "a.zarr/raw", "colour": 1}]}, "unknown recipe key 'data.source[0].colour'"),
    ({"source": [{"raw": "a.zarr/raw", "weight": -1.0}]}, "'data.source[0].weight' = -1.0"),
    ({"source": "a.zarr/raw"}, "expected [[data.source]] tables"),
])
def test_recipe_rules_name_the_table_entry(tmp_path, data, expected):
    with pytest.raises(MaskTwinsError, match=None) as err:
        load_recipe(recipe_file(tmp_path, data))
    assert expected in str(err.value)


@pytest.mark.parametrize("missing", ["source", "target"])
def test_an_empty_role_is_refused_naming_the_key(tmp_path, missing):
    pair = volume_pair(tmp_path, "s", (2, 32, 32))
    data = {"source": [pair], "target": [{"raw": pair["raw"]}]}
    del data[missing]
    with pytest.raises(MaskTwinsError, match=rf"\[\[data.{missing}\]\] \(or data.{missing}_raw\)"):
        open_training_data(load_recipe(recipe_file(tmp_path, data)))


def test_tables_survive_the_resolved_recipe(tmp_path):
    data = {"source": [{"raw": "a.zarr/raw", "labels": "a.zarr/l", "weight": 2.0},
                       {"raw": "b.zarr/raw", "labels": "b.zarr/l", "weight": 1.0}],
            "target": [{"raw": "t.zarr/raw"}]}
    recipe = load_recipe(recipe_file(tmp_path, data))
    resolved = tmp_path / "resolved.toml"
    resolved.write_text(recipe_to_toml(recipe), encoding="utf-8")
    again = load_recipe(resolved)
    assert again == recipe
    assert [v.raw for v in role_volumes(again.data, "source")] == ["a.zarr/raw", "b.zarr/raw"]


def test_shipped_recipes_use_the_tables():
    from pathlib import Path

    for path in sorted((Path(__file__).parents[1] / "recipes").glob("*.toml")):
        recipe = load_recipe(path)
        assert recipe.data.source and not recipe.data.source_raw, path.name
    waspsyn = load_recipe(Path(__file__).parents[1] / "recipes" / "waspsyn.toml")
    assert len(waspsyn.data.source) == 5 and len(waspsyn.data.target) == 4
