"""Bad input to `masktwins train` (and the console script): exit code 2, one line on stderr
naming the file or key, no traceback, nothing written or overwritten."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import (
    assert_user_error,
    corrupt_checkpoint_bytes,
    invoke,
    not_hdf5,
    random_image,
    snapshot,
    write,
)


# ------------------------------------------------------------------------------- console
def test_console_script_prints_one_line_without_traceback(tmp_path):
    script = Path(sys.executable).with_name("masktwins")
    command = [str(script)] if script.exists() else [shutil.which("masktwins") or "masktwins"]
    missing = tmp_path / "missing.toml"
    # `recipe` fails the same way as `train` (both call load_recipe first) without importing
    # torch and MONAI, which `train` imports before reading the recipe (~8 s on 2 cores).
    done = subprocess.run([*command, "recipe", str(missing)], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path, check=False)
    assert done.returncode == 2
    assert "Traceback" not in done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("masktwins: error:")
    assert str(missing) in lines[0]
    assert done.stdout == ""
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------- train
def test_train_missing_recipe(tmp_path):
    missing = tmp_path / "missing.toml"
    assert_user_error(invoke("train", missing), missing, "not found")
    assert list(tmp_path.iterdir()) == []


def test_recipe_verb_unknown_key(tmp_path, tiny_recipe):
    recipe = tiny_recipe(train={"lrr": 0.1})
    assert_user_error(invoke("recipe", recipe), recipe, "'train.lrr'", "did you mean 'lr'")


def test_train_unknown_key_in_recipe(tmp_path, tiny_recipe):
    recipe = tiny_recipe(train={"lrr": 0.1})
    before = snapshot(tmp_path)
    assert_user_error(invoke("train", recipe), recipe, "'train.lrr'", "did you mean 'lr'")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("override,fragments", [
    ("train.lr=-1", ["'train.lr'", "-1"]),
    ("method.mask_mode=bogus", ["'method.mask_mode'", "'bogus'"]),
    ("data.patch_size=[32,32,32,32]", ["'data.patch_size'", "[32, 32, 32, 32]"]),
    ("train.lr", ["--set 'train.lr'"]),
    ("model.features=[2,2]", ["'model.features'"]),
])
def test_train_bad_set_value(tmp_path, tiny_recipe, override, fragments):
    recipe = tiny_recipe()
    before = snapshot(tmp_path)
    assert_user_error(invoke("train", recipe, "--set", override), recipe, *fragments)
    assert snapshot(tmp_path) == before


def test_train_missing_volume(tmp_path, tiny_recipe):
    recipe = tiny_recipe(data={"source_raw": "missing.zarr/raw"})
    before = snapshot(tmp_path)
    assert_user_error(invoke("train", recipe), tmp_path / "missing.zarr")
    assert snapshot(tmp_path) == before


def _corrupt_zarr_metadata(folder: Path) -> str:
    uri = write(f"{folder}/bad.zarr/raw", random_image((3, 32, 32)))
    (folder / "bad.zarr/raw/zarr.json").write_text("{garbage")
    return uri


def _corrupt_zarr_chunk(folder: Path) -> str:
    uri = write(f"{folder}/bad.zarr/raw", random_image((3, 32, 32)))
    chunks = [p for p in (folder / "bad.zarr/raw").rglob("*") if p.is_file()
              and p.name != "zarr.json"]
    assert chunks
    for chunk in chunks:
        chunk.write_bytes(b"\x00garbage" * 8)
    return uri


def _not_tiff(folder: Path) -> str:
    (folder / "bad.tif").write_bytes(b"II*\x00garbage")
    return f"{folder}/bad.tif"


@pytest.mark.parametrize("make", [_corrupt_zarr_metadata, _corrupt_zarr_chunk, not_hdf5,
                                  _not_tiff])
def test_train_corrupt_volume(tmp_path, tiny_recipe, make):
    uri = make(tmp_path)
    recipe = tiny_recipe(data={"source_raw": uri})
    before = snapshot(tmp_path)
    line = assert_user_error(invoke("train", recipe))
    assert "bad." in line and str(tmp_path) in line
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (1, 1, 3, 32, 32), (32,)])
def test_train_wrong_dimensionality(tmp_path, tiny_recipe, shape):
    uri = write(f"{tmp_path}/odd.zarr/raw", random_image(shape))
    recipe = tiny_recipe(data={"source_raw": uri})
    before = snapshot(tmp_path)
    assert_user_error(invoke("train", recipe), uri, str(shape))
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("labels,fragments", [
    (np.full((3, 32, 32), 5, np.uint8), ["5", "model.num_classes"]),
    (np.zeros((3, 32, 32), np.float32), ["float32"]),
    (np.zeros((3, 16, 32), np.uint8), ["(3, 16, 32)"]),
])
def test_train_bad_labels_name_the_labels_file(tmp_path, tiny_recipe, labels, fragments):
    uri = write(f"{tmp_path}/labels.zarr/labels", labels)
    recipe = tiny_recipe(data={"source_labels": uri})
    before = snapshot(tmp_path)
    assert_user_error(invoke("train", recipe), uri, *fragments)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_train_raw_with_nan_names_the_file(tmp_path, tiny_recipe, bad):
    image = random_image((3, 32, 32))
    image[1, 5, 7] = bad
    uri = write(f"{tmp_path}/nan.zarr/raw", image)
    recipe = tiny_recipe(data={"source_raw": uri})
    before = snapshot(tmp_path)
    assert_user_error(invoke("train", recipe), uri, "NaN")
    assert snapshot(tmp_path) == before


def test_train_target_with_nan_names_the_file(tmp_path, tiny_recipe):
    image = random_image((3, 32, 32))
    image[0, 0, 0] = np.nan
    uri = write(f"{tmp_path}/nan.zarr/raw", image)
    recipe = tiny_recipe(data={"target_raw": uri})
    assert_user_error(invoke("train", recipe), uri, "NaN")
    assert not (tmp_path / "run").exists()


def test_train_volume_smaller_than_patch(tmp_path, tiny_recipe):
    raw = write(f"{tmp_path}/small.zarr/raw", random_image((3, 16, 32)))
    labels = write(f"{tmp_path}/small.zarr/labels", np.zeros((3, 16, 32), np.uint8))
    recipe = tiny_recipe(data={"source_raw": raw, "source_labels": labels})
    before = snapshot(tmp_path)
    assert_user_error(invoke("train", recipe), raw, "data.patch_size", "16")
    assert snapshot(tmp_path) == before


def test_train_empty_target_with_adaptation(tmp_path, tiny_recipe):
    recipe = tiny_recipe(data={"target_raw": ""})
    assert_user_error(invoke("train", recipe), "data.target_raw")
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_train_cuda_without_gpu(tmp_path, tiny_recipe):
    recipe = tiny_recipe()
    assert_user_error(invoke("train", recipe, "--set", "train.device=cuda"), "train.device")
    assert not (tmp_path / "run").exists()


@pytest.fixture
def trained_run_copy(tmp_path, tiny_recipe) -> Path:
    """``tmp_path/run``: two iterations trained with ``tiny_recipe()`` (the same recipe)."""
    from masktwins_cli.config.recipe import load_recipe
    from masktwins_cli.training.run import train

    return train(load_recipe(tiny_recipe(name="trained.toml"))).output_dir


def test_train_into_run_with_checkpoint_needs_resume(tmp_path, tiny_recipe, trained_run_copy):
    recipe = tiny_recipe()
    before = snapshot(tmp_path)
    last = (trained_run_copy / "last.pt").read_bytes()
    assert_user_error(invoke("train", recipe), trained_run_copy, "--resume")
    assert (trained_run_copy / "last.pt").read_bytes() == last
    assert snapshot(tmp_path) == before


def test_train_output_dir_option_into_run_with_checkpoint(tmp_path, tiny_recipe,
                                                         trained_run_copy):
    recipe = tiny_recipe(train={"output_dir": str(tmp_path / "elsewhere")})
    before = snapshot(tmp_path)
    assert_user_error(invoke("train", recipe, "--output-dir", trained_run_copy), trained_run_copy)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("override,key", [
    ("model.features=[2,2,2,2,4]", "model.features"),
    ("method.mask_ratio=0.25", "method.mask_ratio"),
    ("train.lr=0.1", "train.lr"),
])
def test_resume_with_incompatible_recipe(tmp_path, tiny_recipe, trained_run_copy, override, key):
    recipe = tiny_recipe()
    before = snapshot(tmp_path)
    assert_user_error(invoke("train", recipe, "--resume", "--set", override),
                      trained_run_copy / "last.pt", key)
    assert snapshot(tmp_path) == before


def test_resume_without_checkpoint(tmp_path, tiny_recipe):
    recipe = tiny_recipe()
    before = snapshot(tmp_path)
    assert_user_error(invoke("train", recipe, "--resume"), tmp_path / "run" / "last.pt")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("kind", ["random", "truncated"])
def test_resume_with_corrupt_checkpoint(tmp_path, tiny_recipe, tiny_trained_run, kind):
    recipe = tiny_recipe()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.pt").write_bytes(corrupt_checkpoint_bytes(
        kind, (tiny_trained_run / "last.pt").read_bytes()))
    before = snapshot(tmp_path)
    assert_user_error(invoke("train", recipe, "--resume"), tmp_path / "run" / "last.pt")
    assert snapshot(tmp_path) == before


def test_train_missing_validation_volume_writes_nothing(tmp_path, tiny_recipe, tiny_em_volumes):
    recipe = tiny_recipe(data={"val_raw": "missing.zarr/raw",
                               "val_labels": tiny_em_volumes["labels"]})
    before = snapshot(tmp_path)
    assert_user_error(invoke("train", recipe), tmp_path / "missing.zarr")
    assert snapshot(tmp_path) == before


def test_train_in_channels_mismatch_is_a_user_error(tmp_path, tiny_recipe):
    recipe = tiny_recipe()
    assert_user_error(invoke("train", recipe, "--set", "model.in_channels=2"), "in_channels")


@pytest.mark.parametrize("existing", ["recipe.toml", "log.jsonl"])
def test_train_never_replaces_a_recipe_or_log_in_its_run_folder(tmp_path, tiny_recipe, existing):
    recipe = tiny_recipe()
    folder = tmp_path / "here"
    folder.mkdir()
    if existing == "recipe.toml":  # train recipe.toml --output-dir . : the input itself
        target = folder / "recipe.toml"
        target.write_text(recipe.read_text() + "# my comments\n")
        source = target
    else:
        (folder / "log.jsonl").write_text('{"step": 1, "loss": 0.5}\n')
        source = recipe
    before = snapshot(tmp_path)
    assert_user_error(invoke("train", source, "--output-dir", folder), folder / existing)
    assert snapshot(tmp_path) == before
