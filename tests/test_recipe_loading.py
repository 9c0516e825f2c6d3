"""Recipe overrides (``--set``) and ``load_recipe``: parsing, merging, and one-line errors that
start with the recipe file's path."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from recipe_helpers import rejected

from masktwins_cli.config.recipe import (
    apply_overrides,
    load_recipe,
    parse_override,
    recipe_from_dict,
)
from masktwins_cli.errors import MaskTwinsError


# ------------------------------------------------------------------------- parse_override
@pytest.mark.parametrize("text,expected", [
    ("train.lr=1e-4", ("train", "lr", 1e-4)),
    ("train.iterations=10", ("train", "iterations", 10)),
    ("train.iterations=1_000", ("train", "iterations", 1000)),
    ("data.augment=false", ("data", "augment", False)),
    ("method.adain=true", ("method", "adain", True)),
    ("data.source_raw=a.zarr/raw", ("data", "source_raw", "a.zarr/raw")),
    ('data.source_raw="a b.zarr/raw"', ("data", "source_raw", "a b.zarr/raw")),
    ("data.source_raw='x.h5:/raw'", ("data", "source_raw", "x.h5:/raw")),
    ("data.patch_size=[64,64]", ("data", "patch_size", [64, 64])),
    ("data.patch_size=[64, 64]", ("data", "patch_size", [64, 64])),
    ("model.pool=[[1,2,2],[2,2,2]]", ("model", "pool", [[1, 2, 2], [2, 2, 2]])),
    (" train.lr = 0.5 ", ("train", "lr", 0.5)),
    ("train.output_dir=runs/a=b", ("train", "output_dir", "runs/a=b")),
    ("data.val_raw=", ("data", "val_raw", "")),
    ("data.val_raw=''", ("data", "val_raw", "")),
])
def test_parse_override_values(text, expected):
    assert parse_override(text) == expected


def test_parse_override_nan_is_a_float():
    section, key, value = parse_override("train.lr=nan")
    assert (section, key) == ("train", "lr") and math.isnan(value)


@pytest.mark.parametrize("text", ["foo", "=3", "a=3", "", "train.lr", "lr=1e-4"])
def test_parse_override_malformed(text):
    with pytest.raises(MaskTwinsError) as info:
        parse_override(text)
    message = str(info.value)
    assert repr(text) in message and "section.key=value" in message and "\n" not in message


def test_apply_overrides_copies_and_merges():
    values = {"train": {"lr": 0.1, "iterations": 5}}
    merged = apply_overrides(values, ["train.lr=0.2", "model.features=[1,2,3,4,5]"])
    assert merged == {"train": {"lr": 0.2, "iterations": 5}, "model": {"features": [1, 2, 3, 4, 5]}}
    assert values == {"train": {"lr": 0.1, "iterations": 5}}   # input untouched


def test_apply_overrides_later_wins():
    merged = apply_overrides({}, ["train.lr=0.2", "train.lr=0.3"])
    assert recipe_from_dict(merged).train.lr == 0.3


def test_apply_overrides_onto_non_table():
    with pytest.raises(MaskTwinsError, match="'train' is not a recipe section"):
        apply_overrides({"train": 3}, ["train.lr=0.1"])


@pytest.mark.parametrize("override,fragments", [
    ("train.lr=-1", ["'train.lr'", "-1"]),
    ("train.lr=abc", ["'train.lr'", "'abc'", "expected a number"]),
    ("train.lr=nan", ["'train.lr'", "finite"]),
    ("method.mask_ratio=1", ["'method.mask_ratio'", "1"]),
    ("method.mask_mode=bogus", ["'method.mask_mode'", "'bogus'", "'complementary'"]),
    ("data.patch_size=[64,64,64,64]", ["'data.patch_size'", "[64, 64, 64, 64]"]),
    ("data.patch_size=[40,40]", ["'data.patch_size'", "[40, 40]"]),
    ("train.lrr=0.1", ["'train.lrr'", "did you mean 'lr'"]),
    ("trian.lr=0.1", ["[trian]", "did you mean 'train'"]),
    ("train.iterations=2.5", ["'train.iterations'", "2.5"]),
    ("data.augment=1", ["'data.augment'", "1"]),
    ("train.output_dir=2024", ["'train.output_dir'", "2024", "expected a string"]),
])
def test_bad_override_goes_through_validation(override, fragments):
    rejected(apply_overrides({}, [override]), *fragments)


# ---------------------------------------------------------------------------- load_recipe
@pytest.fixture
def recipe_file(tmp_path) -> Path:
    path = tmp_path / "my recipe.toml"
    path.write_text("[train]\nlr = 0.1\niterations = 7\n\n[data]\npatch_size = [32, 32]\n",
                    encoding="utf-8")
    return path


def test_load_recipe_applies_overrides(recipe_file):
    recipe = load_recipe(recipe_file, ["train.lr=0.2", "data.patch_size=[64,64]"])
    assert recipe.train.lr == 0.2 and recipe.train.iterations == 7
    assert recipe.data.patch_size == (64, 64)
    assert load_recipe(recipe_file).train.lr == 0.1


@pytest.mark.parametrize("overrides,fragments", [
    (["train.lr=-1"], ["'train.lr'", "-1"]),
    (["train.lrr=1"], ["'train.lrr'", "did you mean 'lr'"]),
    (["mask.ratio=0.5"], ["[mask]"]),
    (["foo"], ["--set 'foo'"]),
    (["data.patch_size=[40,40]"], ["'data.patch_size'", "[40, 40]"]),
])
def test_load_recipe_override_errors_start_with_path(recipe_file, overrides, fragments):
    with pytest.raises(MaskTwinsError) as info:
        load_recipe(recipe_file, overrides)
    message = str(info.value)
    assert message.startswith(f"{recipe_file}: ") and "\n" not in message
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize("text,fragments", [
    ("[train]\nlrr = 0.1\n", ["'train.lrr'", "did you mean 'lr'"]),
    ("[train]\niterations = 'ten'\n", ["'train.iterations'", "'ten'"]),
    ("[method]\nmask_ratio = 0.0\n", ["'method.mask_ratio'", "0.0"]),
    ("[model]\nspatial_dims = 3\n", ["'data.patch_size'"]),
    ("[trian]\n", ["[trian]"]),
])
def test_load_recipe_content_errors_start_with_path(tmp_path, text, fragments):
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(MaskTwinsError) as info:
        load_recipe(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_load_recipe_missing_file(tmp_path):
    path = tmp_path / "missing.toml"
    with pytest.raises(MaskTwinsError) as info:
        load_recipe(path)
    assert str(path) in str(info.value) and "not found" in str(info.value)


def test_load_recipe_directory(tmp_path):
    with pytest.raises(MaskTwinsError, match="not found"):
        load_recipe(tmp_path)


@pytest.mark.parametrize("content", [
    b"[train\nlr = 0.1\n",                       # unclosed table header
    b"[train]\nlr = \n",                         # missing value
    b"[train]\nlr = 0.1\nlr = 0.2\n",            # duplicate key
    b"[train]\noutput_dir = \"\xff\xfe\"\n",     # not UTF-8
])
def test_load_recipe_invalid_toml_names_file(tmp_path, content):
    path = tmp_path / "broken.toml"
    path.write_bytes(content)
    with pytest.raises(MaskTwinsError) as info:
        load_recipe(path)
    message = str(info.value)
    assert str(path) in message and "not valid TOML" in message and "\n" not in message
