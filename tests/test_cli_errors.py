"""Bad input at the command line: exit code 2, one line on stderr naming the file or key, no
traceback, and nothing written or overwritten."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from masktwins_cli.cli import app
from masktwins_cli.io.volumes import write_volume


def _runner() -> CliRunner:
    try:
        return CliRunner(mix_stderr=False)   # click < 8.2 mixes stderr into stdout by default
    except TypeError:                        # click >= 8.2 always keeps stderr apart
        return CliRunner()


RUNNER = _runner()


def invoke(*args: object):
    return RUNNER.invoke(app, [str(a) for a in args])


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` (relative path -> bytes), plus the empty folders."""
    files: dict[str, bytes] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file():
            files[rel] = path.read_bytes()
        elif path.is_dir() and not any(path.iterdir()):
            files[rel + "/"] = b""
    return files


def assert_user_error(result, *names: object) -> str:
    """Exit code 2, exactly one stderr line 'masktwins: error: ...' naming ``names``."""
    output = result.output + (result.stderr or "")
    assert "Traceback" not in output, output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2, output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("masktwins: error: "), lines[0]
    for name in names:
        assert str(name) in lines[0], f"{name!s} not in {lines[0]!r}"
    assert result.stdout == ""
    return lines[0]


def write(uri: str, array: np.ndarray) -> str:
    write_volume(uri, array, (1.0,) * min(array.ndim, 3))
    return uri


RNG = np.random.default_rng(0)


def random_image(shape, dtype=np.float32) -> np.ndarray:
    return RNG.random(shape).astype(dtype)




def corrupt_checkpoint_bytes(kind: str, good: bytes) -> bytes:
    """Bytes of a broken checkpoint; the seeds are fixed so torch.load fails the same way."""
    return {"random": np.random.default_rng(0).bytes(1000),        # UnpicklingError
            "empty": b"",                                            # EOFError
            "text": b"hello\n",                                      # KeyError(101)
            "random-index": np.random.default_rng(21).bytes(1000),   # IndexError
            "truncated": good[: len(good) // 2]}[kind]               # OSError (EINVAL)


CORRUPT_KINDS = ["random", "empty", "text", "random-index", "truncated"]


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


def _not_hdf5(folder: Path) -> str:
    (folder / "bad.h5").write_bytes(b"this is not HDF5\n" * 10)
    return f"{folder}/bad.h5:/raw"


def _not_tiff(folder: Path) -> str:
    (folder / "bad.tif").write_bytes(b"II*\x00garbage")
    return f"{folder}/bad.tif"


@pytest.mark.parametrize("make", [_corrupt_zarr_metadata, _corrupt_zarr_chunk, _not_hdf5,
                                  _not_tiff])
def test_train_corrupt_volume(tmp_path, tiny_recipe, make):
    uri = make(tmp_path)
    recipe = tiny_recipe(data={"source_raw": uri})
    before = snapshot(tmp_path)
    line = assert_user_error(invoke("train", recipe))
    assert "bad." in line and str(tmp_path) in line
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("shape", [(1, 3, 32, 32), (32,)])
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


# --------------------------------------------------------------------------------- infer
@pytest.fixture
def infer_input(tmp_path) -> str:
    return write(f"{tmp_path}/in.zarr/raw", random_image((2, 32, 32)))


def infer(checkpoint, input_uri, output, *extra):
    return invoke("infer", checkpoint, input_uri, "-o", output, "--device", "cpu", *extra)


def test_infer_missing_checkpoint(tmp_path, infer_input):
    before = snapshot(tmp_path)
    missing = tmp_path / "missing.pt"
    assert_user_error(infer(missing, infer_input, tmp_path / "out.zarr/p"), missing, "not found")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("kind", CORRUPT_KINDS)
def test_infer_corrupt_checkpoint(tmp_path, infer_input, tiny_trained_run, kind):
    checkpoint = tmp_path / "bad.pt"
    checkpoint.write_bytes(corrupt_checkpoint_bytes(kind, (tiny_trained_run / "last.pt")
                                                    .read_bytes()))
    before = snapshot(tmp_path)
    assert_user_error(infer(checkpoint, infer_input, tmp_path / "out.zarr/p"), checkpoint)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("payload", [{"a": 1}, [1, 2, 3],
                                     {"format": "masktwins-checkpoint", "version": 99}])
def test_infer_foreign_torch_file(tmp_path, infer_input, payload):
    checkpoint = tmp_path / "other.pt"
    torch.save(payload, checkpoint)
    before = snapshot(tmp_path)
    assert_user_error(infer(checkpoint, infer_input, tmp_path / "out.zarr/p"), checkpoint)
    assert snapshot(tmp_path) == before


def test_infer_3d_checkpoint_on_2d_image(tmp_path, tiny_recipe):
    from masktwins_cli.config.recipe import load_recipe
    from masktwins_cli.training.run import train

    raw = write(f"{tmp_path}/vol.zarr/raw", random_image((16, 32, 32)))
    labels = write(f"{tmp_path}/vol.zarr/labels", (random_image((16, 32, 32)) > 0.5)
                   .astype(np.uint8))
    recipe = tiny_recipe(
        data={"source_raw": raw, "source_labels": labels, "target_raw": raw,
              "patch_size": [16, 32, 32]},
        model={"spatial_dims": 3, "pool": [[1, 2, 2]] * 4},
        method={"block_size": [8, 8, 8]}, train={"iterations": 1})
    checkpoint = train(load_recipe(recipe)).last_checkpoint
    image = write(f"{tmp_path}/image.zarr/raw", random_image((32, 32)))
    before = snapshot(tmp_path)
    assert_user_error(infer(checkpoint, image, tmp_path / "out.zarr/p"), image, checkpoint,
                      "3-D")
    assert snapshot(tmp_path) == before


def test_infer_output_exists_without_overwrite(tmp_path, infer_input, tiny_trained_run):
    output = f"{tmp_path}/out.zarr/probabilities"
    write(output, random_image((2, 32, 32)))
    before = snapshot(tmp_path)
    assert_user_error(infer(tiny_trained_run / "last.pt", infer_input, output), output,
                      "--overwrite")
    assert snapshot(tmp_path) == before


def test_infer_output_container_default_dataset_exists(tmp_path, infer_input, tiny_trained_run):
    write(f"{tmp_path}/out.zarr/probabilities", random_image((2, 32, 32)))
    before = snapshot(tmp_path)
    assert_user_error(infer(tiny_trained_run / "last.pt", infer_input, tmp_path / "out.zarr"),
                      "probabilities", "--overwrite")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("overwrite", [False, True])
def test_infer_output_is_input(tmp_path, infer_input, tiny_trained_run, overwrite, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    extra = ["--overwrite"] if overwrite else []
    # the same array spelled differently: relative input, absolute output
    assert_user_error(infer(tiny_trained_run / "last.pt", "in.zarr/raw", infer_input, *extra),
                      infer_input, "input")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("output", ["out.h5:/p", "out.tif", "out.tiff"])
def test_infer_output_not_zarr(tmp_path, infer_input, tiny_trained_run, output):
    before = snapshot(tmp_path)
    assert_user_error(infer(tiny_trained_run / "last.pt", infer_input, tmp_path / output),
                      output, "zarr")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("override,fragments", [
    ("model.features=[2,2,2,2,4]", ["--set 'model.features=[2,2,2,2,4]'", "[infer]"]),
    ("train.lr=0.1", ["--set 'train.lr=0.1'"]),
    ("infer.overlap=2", ["'infer.overlap'", "2"]),
    ("infer.blend=bogus", ["'infer.blend'", "'bogus'"]),
    ("infer.bogus=1", ["'infer.bogus'"]),
    ("infer.window=[32,32,32]", ["'infer.window'"]),
])
def test_infer_bad_set(tmp_path, infer_input, tiny_trained_run, override, fragments):
    before = snapshot(tmp_path)
    result = infer(tiny_trained_run / "last.pt", infer_input, tmp_path / "out.zarr/p",
                   "--set", override)
    assert_user_error(result, *fragments)
    assert snapshot(tmp_path) == before


def test_infer_bad_weights_option(tmp_path, infer_input, tiny_trained_run):
    before = snapshot(tmp_path)
    result = infer(tiny_trained_run / "last.pt", infer_input, tmp_path / "out.zarr/p",
                   "--weights", "bogus")
    assert_user_error(result, "--weights", "bogus")
    assert snapshot(tmp_path) == before


def _nan_image(folder: Path) -> str:
    image = random_image((2, 32, 32))
    image[1, 3, 3] = np.nan
    return write(f"{folder}/nan.zarr/raw", image)


@pytest.mark.parametrize("make,fragment", [
    (lambda folder: f"{folder}/missing.zarr/raw", "missing.zarr"),
    (lambda folder: write(f"{folder}/odd.zarr/raw", random_image((1, 2, 32, 32))), "odd.zarr"),
    (_nan_image, "nan.zarr"),
    (_not_hdf5, "bad.h5"),
])
def test_infer_bad_input_volume(tmp_path, tiny_trained_run, make, fragment):
    uri = make(tmp_path)
    before = snapshot(tmp_path)
    assert_user_error(infer(tiny_trained_run / "last.pt", uri, tmp_path / "out.zarr/p"), fragment)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("override", ["infer.block_size=[0,0,0]", "infer.window=[-16,-16]"])
def test_infer_bad_sizes_are_user_errors(tmp_path, infer_input, tiny_trained_run, override):
    result = infer(tiny_trained_run / "last.pt", infer_input, tmp_path / "out.zarr/p",
                   "--set", override)
    assert_user_error(result, override.split("=")[0])


# ------------------------------------------------------------------------------ evaluate
@pytest.fixture
def eval_truth(tmp_path) -> str:
    return write(f"{tmp_path}/truth.zarr/labels", (random_image((2, 32, 32)) > 0.5)
                 .astype(np.uint8))


@pytest.fixture
def eval_prediction(tmp_path) -> str:
    return write(f"{tmp_path}/pred.zarr/p", random_image((2, 32, 32)))


def test_evaluate_shape_mismatch_names_both(tmp_path, eval_truth):
    prediction = write(f"{tmp_path}/pred.zarr/p", random_image((2, 16, 32)))
    before = snapshot(tmp_path)
    assert_user_error(invoke("evaluate", prediction, eval_truth, "--json", tmp_path / "s.json"),
                      prediction, eval_truth, "(2, 16, 32)", "(2, 32, 32)")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("mode", ["per_slice", "volume"])
@pytest.mark.parametrize("bad", [2.5, -0.5, np.nan])
def test_evaluate_prediction_outside_unit_interval(tmp_path, eval_truth, mode, bad):
    image = random_image((2, 32, 32))
    image[1, 4, 4] = bad
    prediction = write(f"{tmp_path}/pred.zarr/p", image)
    before = snapshot(tmp_path)
    result = invoke("evaluate", prediction, eval_truth, "--mode", mode, "--json",
                    tmp_path / "s.json")
    line = assert_user_error(result, "probability")
    assert "[0, 1]" in line or "NaN" in line
    assert snapshot(tmp_path) == before


def test_evaluate_prediction_outside_unit_interval_names_the_file(tmp_path, eval_truth):
    prediction = write(f"{tmp_path}/pred.zarr/p", random_image((2, 32, 32)) * 3)
    assert_user_error(invoke("evaluate", prediction, eval_truth), prediction)


@pytest.mark.parametrize("which", ["prediction", "truth"])
def test_evaluate_missing_file(tmp_path, eval_prediction, eval_truth, which):
    missing = f"{tmp_path}/missing.zarr/x"
    args = (missing, eval_truth) if which == "prediction" else (eval_prediction, missing)
    before = snapshot(tmp_path)
    assert_user_error(invoke("evaluate", *args), tmp_path / "missing.zarr")
    assert snapshot(tmp_path) == before


def test_evaluate_overlay_without_raw(tmp_path, eval_prediction, eval_truth):
    before = snapshot(tmp_path)
    result = invoke("evaluate", eval_prediction, eval_truth, "--overlay", tmp_path / "overlays",
                    "--json", tmp_path / "s.json")
    assert_user_error(result, "--overlay", "--raw")
    assert snapshot(tmp_path) == before


def test_evaluate_overlay_raw_shape_mismatch(tmp_path, eval_prediction, eval_truth):
    raw = write(f"{tmp_path}/raw.zarr/raw", random_image((2, 32, 16)))
    before = snapshot(tmp_path)
    result = invoke("evaluate", eval_prediction, eval_truth, "--overlay", tmp_path / "overlays",
                    "--raw", raw)
    assert_user_error(result, raw, "(2, 32, 16)")
    assert not (tmp_path / "overlays").exists()
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("args,fragment", [
    (["--mode", "bogus"], "--mode"),
    (["--threshold", "1.5"], "threshold"),
    (["--threshold", "0"], "threshold"),
    (["--threshold", "nan"], "threshold"),
])
def test_evaluate_bad_options(tmp_path, eval_prediction, eval_truth, args, fragment):
    before = snapshot(tmp_path)
    assert_user_error(invoke("evaluate", eval_prediction, eval_truth, *args), fragment)
    assert snapshot(tmp_path) == before


# ----------------------------------------------------------------------- prepare synthetic
def test_prepare_existing_output_without_overwrite(tmp_path):
    out = tmp_path / "synthetic"
    write(f"{out}/source.zarr/raw", random_image((2, 16, 16)))
    (out / "dataset.json").write_text('{"keep": true}\n')
    before = snapshot(tmp_path)
    assert_user_error(invoke("prepare", "synthetic", out), out, "source.zarr", "--overwrite")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("args,fragment", [
    (["--dims", "4"], "4"),
    (["--dims", "1"], "1"),
    (["--task", "bogus"], "'bogus'"),
])
def test_prepare_bad_options_write_nothing(tmp_path, args, fragment):
    out = tmp_path / "synthetic"
    line = assert_user_error(invoke("prepare", "synthetic", out, *args), fragment)
    assert ("dims" in line) or ("task" in line)
    assert list(tmp_path.iterdir()) == []
