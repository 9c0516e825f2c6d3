"""Bad input to `masktwins infer`, `evaluate` and `prepare`: exit code 2, one line on stderr
naming the file or key, no traceback, nothing written or overwritten."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import (
    CORRUPT_KINDS,
    assert_user_error,
    corrupt_checkpoint_bytes,
    invoke,
    not_hdf5,
    random_image,
    snapshot,
    write,
)


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


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_infer_cuda_without_gpu_names_the_option(tmp_path, infer_input, tiny_trained_run):
    before = snapshot(tmp_path)
    result = invoke("infer", tiny_trained_run / "last.pt", infer_input, "-o",
                    tmp_path / "out.zarr/p", "--device", "cuda")
    line = assert_user_error(result, "--device")
    assert "train.device" not in line
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
    (lambda folder: write(f"{folder}/odd.zarr/raw", random_image((2, 2, 32, 32))), "odd.zarr"),
    (_nan_image, "nan.zarr"),
    (not_hdf5, "bad.h5"),
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


def test_infer_says_when_the_checkpoint_is_from_an_unfinished_run(tmp_path, infer_input,
                                                                   tiny_trained_run):
    from masktwins_cli.io.checkpoints import load_checkpoint, save_checkpoint

    payload = load_checkpoint(tiny_trained_run / "last.pt")
    payload["step"] = 1  # of the recipe's 2 iterations
    payload.pop("format"), payload.pop("version")
    save_checkpoint(tmp_path / "early.pt", payload)
    done = infer(tmp_path / "early.pt", infer_input, tmp_path / "out.zarr/p")
    assert done.exit_code == 0 and "unfinished training run (step 1 of 2)" in done.output
    finished = infer(tiny_trained_run / "last.pt", infer_input, tmp_path / "out2.zarr/p")
    assert finished.exit_code == 0 and "unfinished" not in finished.output


def test_evaluate_refuses_to_replace_an_existing_json_without_overwrite(tmp_path, eval_prediction,
                                                                        eval_truth):
    scores = tmp_path / "s.json"
    scores.write_text("earlier scores")
    before = snapshot(tmp_path)
    assert_user_error(invoke("evaluate", eval_prediction, eval_truth, "--json", scores),
                      scores, "--overwrite")
    assert snapshot(tmp_path) == before
    done = invoke("evaluate", eval_prediction, eval_truth, "--json", scores, "--overwrite")
    assert done.exit_code == 0 and '"iou"' in scores.read_text()


def test_evaluate_refuses_a_folder_of_earlier_overlays(tmp_path, eval_prediction, eval_truth):
    folder = tmp_path / "overlays"
    folder.mkdir()
    (folder / "overlay_z0000.png").write_bytes(b"earlier")
    before = snapshot(tmp_path)
    assert_user_error(invoke("evaluate", eval_prediction, eval_truth, "--overlay", folder,
                             "--raw", eval_prediction), folder, "--overwrite")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("values, shown", [((0, 7), "7"), ((0, 1, 7), "7"), ((0, -1), "-1"),
                                           ((0.0, 0.5), "0.5"), ((0.0, np.nan), "nan")])
def test_evaluate_truth_outside_the_classes_is_an_error(tmp_path, eval_prediction, values, shown):
    rng = np.random.default_rng(0)
    truth = np.asarray(values)[rng.integers(0, len(values), (2, 32, 32))]
    uri = write(f"{tmp_path}/truth.zarr/t", truth.astype(np.int16 if truth.dtype.kind == "i"
                                                           else truth.dtype))
    before = snapshot(tmp_path)
    line = assert_user_error(invoke("evaluate", eval_prediction, uri, "--json", tmp_path / "s.json"),
                             tmp_path / "truth.zarr")
    assert shown in line and "outside the classes" in line
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("override, key", [("infer.overlap=1.0", "infer.overlap"),
                                           ("infer.batch_size=0", "infer.batch_size"),
                                           ("infer.blend=\"box\"", "infer.blend")])
def test_infer_bad_override_names_the_override_not_the_checkpoint(tmp_path, infer_input,
                                                                   tiny_trained_run, override, key):
    before = snapshot(tmp_path)
    line = assert_user_error(infer(tiny_trained_run / "last.pt", infer_input,
                                   tmp_path / "out.zarr/p", "--set", override), "--set", key)
    assert "checkpoint" not in line
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("verb", ["infer", "train"])
def test_a_missing_chunk_stops_infer_and_train(tmp_path, tiny_trained_run, tiny_recipe, verb):
    import shutil

    import zarr

    uri = write(f"{tmp_path}/in.zarr/raw", random_image((3, 32, 32)))
    array = zarr.open_array(f"{tmp_path}/in.zarr", path="raw", mode="r")
    (tmp_path / "in.zarr" / "raw" / array.metadata.encode_chunk_key((0, 0, 0))).unlink()
    if verb == "infer":
        before = snapshot(tmp_path)
        assert_user_error(infer(tiny_trained_run / "last.pt", uri, tmp_path / "out.zarr/p"),
                          "in.zarr", "missing")
        assert snapshot(tmp_path) == before
    else:
        recipe = tiny_recipe()
        shutil.rmtree(tmp_path / "run", ignore_errors=True)
        assert_user_error(invoke("train", recipe, "--set", f'data.source_raw="{uri}"'),
                          "in.zarr", "missing")
        assert not (tmp_path / "run" / "last.pt").exists()
