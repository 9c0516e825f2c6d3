"""Recipe validation: every kind of bad section, key or value is a one-line MaskTwinsError that
names the key and the bad value; ``--set`` overrides go through the same checks."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
from recipe_helpers import rejected

from masktwins_cli.config.recipe import (
    check_consistency,
    load_recipe,
    recipe_from_dict,
    recipe_to_dict,
    recipe_to_toml,
)
from masktwins_cli.config.schema import Recipe
from masktwins_cli.errors import MaskTwinsError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.toml"))

# A valid 3-D recipe with anisotropic pooling (down-sampling 1 x 16 x 16).
POOL_3D = [[1, 2, 2], [1, 2, 2], [1, 2, 2], [1, 2, 2]]
VALID_3D = {"model": {"spatial_dims": 3, "pool": POOL_3D},
            "data": {"patch_size": [8, 32, 32]}, "method": {"block_size": [2, 8, 8]}}


def with_3d(**sections: dict) -> dict:
    """VALID_3D with ``section={key: value}`` merged in."""
    merged = {name: dict(values) for name, values in VALID_3D.items()}
    for name, values in sections.items():
        merged.setdefault(name, {}).update(values)
    return merged


# ------------------------------------------------------------------------ shipped recipes
def test_shipped_recipes_exist():
    assert RECIPES, "no recipes/*.toml found"


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_shipped_recipe_loads_and_round_trips(path: Path):
    recipe = load_recipe(path)
    text = recipe_to_toml(recipe)
    again = recipe_from_dict(tomllib.loads(text))
    assert again == recipe
    assert recipe_to_toml(again) == text


def test_defaults_are_valid_and_round_trip():
    assert recipe_from_dict({}) == Recipe()
    assert recipe_from_dict(tomllib.loads(recipe_to_toml(Recipe()))) == Recipe()


def test_round_trip_of_nested_lists_floats_and_quoted_strings():
    recipe = recipe_from_dict(with_3d(
        train={"output_dir": 'runs/a "quoted" \\ name', "lr": 1e-5},
        method={"class_weights": [0.25, 1.0]},
        infer={"window": [8, 64, 64], "block_size": [8, 64, 64]}))
    assert recipe.model.pool == tuple(tuple(p) for p in POOL_3D)
    assert recipe_from_dict(tomllib.loads(recipe_to_toml(recipe))) == recipe
    # recipe_to_dict (what checkpoints store) validates back to the same recipe too
    assert recipe_from_dict(recipe_to_dict(recipe)) == recipe


def test_round_trip_of_string_with_newline():
    recipe = recipe_from_dict({"train": {"output_dir": "runs/a\nb"}})
    assert recipe_from_dict(tomllib.loads(recipe_to_toml(recipe))) == recipe


def test_lists_become_tuples_and_ints_become_floats_for_float_keys():
    recipe = recipe_from_dict({"data": {"patch_size": [64, 64]}, "train": {"lr": 1}})
    assert recipe.data.patch_size == (64, 64)
    assert isinstance(recipe.train.lr, float) and recipe.train.lr == 1.0


# ----------------------------------------------------------------- unknown sections and keys
def test_unknown_section_suggests_close_match():
    message = rejected({"trian": {"lr": 0.1}}, "[trian]", "did you mean 'train'")
    assert "allowed:" in message


def test_section_that_is_not_a_table():
    rejected({"train": 3}, "'train'", "[section] table")


@pytest.mark.parametrize("section,key,suggestion", [
    ("train", "lrr", "lr"),
    ("data", "patch", "patch_size"),
    ("method", "mask_ratoi", "mask_ratio"),
    ("model", "feature", "features"),
])
def test_unknown_key_names_section_key_and_suggests(section, key, suggestion):
    rejected({section: {key: 1}}, f"'{section}.{key}'", f"did you mean '{suggestion}'",
             f"allowed in [{section}]")


def test_unknown_key_without_close_match_lists_allowed_keys():
    message = rejected({"train": {"zzzzzz": 1}}, "'train.zzzzzz'", "allowed in [train]", "lr")
    assert "did you mean" not in message


# ------------------------------------------------------------------------------ wrong types
@pytest.mark.parametrize("section,key,value,expected", [
    ("train", "iterations", "100", "expected an integer"),       # string for int
    ("train", "iterations", 10.0, "expected an integer"),        # float for int
    ("train", "iterations", True, "expected an integer"),        # bool for int
    ("model", "spatial_dims", 2.0, "expected an integer"),
    ("data", "augment", 1, "expected true or false"),            # int for bool
    ("data", "augment", "yes", "expected true or false"),
    ("train", "lr", "0.1", "expected a number"),                 # string for float
    ("train", "lr", True, "expected a number"),                  # bool for float
    ("train", "lr", [0.1], "expected a number"),                 # list for scalar
    ("train", "iterations", [10], "expected an integer"),
    ("data", "normalization", 3, "expected a string"),
    ("train", "output_dir", ["runs"], "expected a string"),
    ("data", "patch_size", 64, "expected a list"),               # scalar for list
    ("data", "patch_size", "64,64", "expected a list"),
    ("model", "features", {"a": 1}, "expected a list"),
    ("data", "patch_size", ["a", "b"], "expected a list of integers"),
    ("data", "patch_size", [True, 64], "expected a list of integers"),
])
def test_wrong_type_names_key_and_value(section, key, value, expected):
    rejected({section: {key: value}}, f"'{section}.{key}'", repr(value), expected)


# ---------------------------------------------------------------------------- out of range
@pytest.mark.parametrize("section,key,value,rule", [
    ("method", "mask_ratio", 0.0, "> 0.0"),                # exclusive lower bound
    ("method", "mask_ratio", 1.0, "< 1.0"),                # exclusive upper bound
    ("train", "lr", -0.001, "> 0.0"),
    ("train", "lr", 0.0, "> 0.0"),
    ("train", "lr", 2.0, "<= 1.0"),
    ("method", "confidence_threshold", 1.0, "< 1.0"),
    ("method", "confidence_threshold", -0.1, ">= 0.0"),
    ("method", "quality_tau", 0.0, "> 0.0"),
    ("method", "lambda_cl", 1.5, "<= 1.0"),
    ("method", "lambda_cm", -1.0, ">= 0.0"),
    ("method", "num_views", 1, ">= 2"),
    ("method", "ema_alpha", 1.0, "< 1.0"),
    ("model", "dropout", 1.0, "< 1.0"),
    ("model", "num_classes", 1, ">= 2"),
    ("model", "in_channels", 0, ">= 1"),
    ("data", "intensity_augment", 1.5, "<= 1.0"),
    ("data", "foreground_oversample", -0.1, ">= 0.0"),
    ("train", "iterations", 0, ">= 1"),
    ("train", "warmup_iterations", -1, ">= 0"),
    ("infer", "overlap", 1.0, "< 1.0"),
    ("evaluate", "threshold", 1.0, "< 1.0"),
])
def test_out_of_range_names_key_value_and_bound(section, key, value, rule):
    rejected({section: {key: value}}, f"'{section}.{key}'", repr(value), rule)


@pytest.mark.parametrize("section,key,value,bad_item", [
    ("data", "patch_size", [4, 32], "[4, 32]"),
    ("model", "features", [0, 2, 2, 2, 2], "[0, 2, 2, 2, 2]"),
    ("method", "block_size", [0, 8], "[0, 8]"),
])
def test_out_of_range_list_item_names_key_and_item(section, key, value, bad_item):
    rejected({section: {key: value}}, f"'{section}.{key}' = {bad_item}:", "entries must be >= ")


@pytest.mark.parametrize("section,key,value", [
    ("method", "mask_ratio", 0.001),
    ("method", "mask_ratio", 0.999),
    ("method", "confidence_threshold", 0.0),
    ("method", "lambda_cl", 0.0),
    ("method", "lambda_cl", 1.0),
    ("train", "lr", 1.0),
    ("data", "intensity_augment", 1.0),
    ("data", "patch_size", [16, 16]),
])
def test_boundary_values_are_accepted(section, key, value):
    recipe = recipe_from_dict({section: {key: value}})
    got = getattr(getattr(recipe, section), key)
    assert got == (tuple(value) if isinstance(value, list) else value)


# ------------------------------------------------------------------------------- bad choice
@pytest.mark.parametrize("section,key,value,allowed", [
    ("method", "mask_mode", "bogus", ["'complementary'", "'random'", "'single'", "'none'"]),
    ("model", "spatial_dims", 4, ["2, 3"]),
    ("data", "normalization", "minmax", ["'zscore'", "'percentile'"]),
    ("train", "optimizer", "sgd", ["'adam'", "'adamw'"]),
    ("train", "device", "gpu", ["'auto'", "'cpu'", "'cuda'"]),
    ("model", "name", "UNet", ["'unet'"]),
])
def test_bad_choice_lists_allowed_values(section, key, value, allowed):
    rejected({section: {key: value}}, f"'{section}.{key}'", repr(value), "must be one of",
             *allowed)


# --------------------------------------------------------------------------- wrong length
@pytest.mark.parametrize("section,key,value,lengths", [
    ("data", "patch_size", [64, 64, 64, 64], "2 or 3 entries"),
    ("data", "patch_size", [64], "2 or 3 entries"),
    ("model", "features", [2, 2, 2, 2], "5 or 6 entries"),
    ("method", "block_size", [8], "2 or 3 entries"),
])
def test_wrong_list_length_names_key_and_value(section, key, value, lengths):
    rejected({section: {key: value}}, f"'{section}.{key}'", repr(value), lengths)


# -------------------------------------------------------------------------------- NaN / inf
@pytest.mark.parametrize("line,key", [
    ("lr = nan", "train.lr"),
    ("lr = inf", "train.lr"),
    ("lr = -inf", "train.lr"),
    ("grad_clip = inf", "train.grad_clip"),          # only min=0: inf must still be refused
    ("poly_power = nan", "train.poly_power"),
])
def test_nan_and_inf_in_toml_are_rejected(tmp_path, line, key):
    path = tmp_path / "recipe.toml"
    path.write_text(f"[train]\n{line}\n", encoding="utf-8")
    with pytest.raises(MaskTwinsError) as info:
        load_recipe(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message
    assert f"'{key}'" in message and "finite" in message


@pytest.mark.parametrize("section,key,value", [
    ("method", "lambda_cm", math.inf),
    ("method", "class_weights", [1.0, math.nan]),
])
def test_non_finite_numbers_are_rejected(section, key, value):
    rejected({section: {key: value}}, f"'{section}.{key}'", "finite")


def test_non_finite_in_integer_list_is_rejected():
    rejected({"data": {"patch_size": [math.inf, 32]}}, "'data.patch_size'", "integers")


# ---------------------------------------------------------------------- cross-field rules
@pytest.mark.parametrize("values,key,value_text", [
    ({"model": {"spatial_dims": 3}, "method": {"block_size": [8, 8, 8]}},
     "data.patch_size", "[256, 256]"),
    ({"data": {"patch_size": [32, 32, 32]}, "method": {"block_size": [8, 8, 8]}},
     "data.patch_size", "[32, 32, 32]"),
    (with_3d(method={"block_size": [8, 8]}), "method.block_size", "[8, 8]"),
    ({"method": {"block_size": [8, 8, 8]}}, "method.block_size", "[8, 8, 8]"),
    ({"infer": {"window": [32, 32, 32]}}, "infer.window", "[32, 32, 32]"),
    ({"model": {"pool": POOL_3D}}, "model.pool", "[1, 2, 2]"),                    # 2-D model
    (with_3d(model={"pool": POOL_3D[:3]}), "model.pool", "[1, 2, 2]"),            # 3 kernels
    (with_3d(model={"pool": [[1, 2], [1, 2], [1, 2], [1, 2]]}), "model.pool", "[1, 2]"),
    (with_3d(model={"pool": [[1, 2, 2], [1, 2, 2], [1, 2, 2], [0, 2, 2]]}),
     "model.pool", "[0, 2, 2]"),
    ({"data": {"patch_size": [40, 40]}}, "data.patch_size", "[40, 40]"),
    (with_3d(data={"patch_size": [8, 40, 32]}), "data.patch_size", "[8, 40, 32]"),
    ({"model": {"spatial_dims": 3}, "data": {"patch_size": [8, 32, 32]},
      "method": {"block_size": [8, 8, 8]}}, "data.patch_size", "[8, 32, 32]"),  # no pool: 16
    ({"infer": {"window": [48, 40]}}, "infer.window", "[48, 40]"),
    ({"method": {"class_weights": [1.0, 2.0, 3.0]}}, "method.class_weights", "[1.0, 2.0, 3.0]"),
    ({"model": {"num_classes": 3}, "method": {"class_weights": [1.0, 2.0]}},
     "method.class_weights", "[1.0, 2.0]"),
    ({"data": {"val_raw": "val.zarr/raw"}}, "data.val_labels", ""),
    ({"data": {"val_labels": "val.zarr/labels"}}, "data.val_raw", ""),
    ({"method": {"mask_mode": "single", "num_views": 3}}, "method.num_views", ""),
])
def test_cross_field_rules(values, key, value_text):
    rejected(values, f"'{key}'", value_text)


def test_cross_field_divisibility_message_names_down_sampling():
    rejected(with_3d(data={"patch_size": [8, 40, 32]}), "[1, 16, 16]")
    rejected({"data": {"patch_size": [40, 40]}}, "[16, 16]")


def test_valid_cross_field_combinations_are_accepted():
    recipe = recipe_from_dict(VALID_3D)
    check_consistency(recipe)
    assert recipe.model.spatial_dims == 3
    recipe_from_dict({"method": {"class_weights": [0.5, 2.0]},
                      "data": {"val_raw": "v.zarr/raw", "val_labels": "v.zarr/labels"},
                      "infer": {"window": [64, 48]}})
    recipe_from_dict(with_3d(infer={"window": [8, 16, 48]}))   # z needs no multiple with pool


# ------------------------------------------------------- bugs: values that escape validation
def test_nested_list_for_flat_list_key_is_rejected():
    rejected({"data": {"patch_size": [[32], [32]]}}, "'data.patch_size'")


def test_flat_pool_list_is_rejected():
    rejected(with_3d(model={"pool": [1, 2, 2, 2]}), "'model.pool'")


@pytest.mark.parametrize("section,key,value", [
    ("data", "patch_size", [32.0, 32.0]),
    ("model", "features", [2.5, 2, 2, 2, 2]),
    ("method", "block_size", [8.5, 8]),
    ("infer", "window", [32.0, 32.0]),
])
def test_float_in_integer_list_is_rejected(section, key, value):
    rejected({section: {key: value}}, f"'{section}.{key}'")


@pytest.mark.parametrize("key,value", [
    ("window", [0, 0]),
    ("window", [-16, -16]),
    ("block_size", [0, 0, 0]),
    ("block_size", [8]),
])
def test_infer_sizes_must_be_positive_with_right_length(key, value):
    rejected({"infer": {key: value}}, f"'infer.{key}'")
