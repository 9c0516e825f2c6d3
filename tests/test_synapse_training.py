"""Synapse training and inference (model.task = synapse): point tables become cube targets on
the fly, NoAdapt and MaskTwins train with weighted BCE and every term logged, resume equals an
uninterrupted run, ``infer`` writes both sigmoid channels, bad point labels are one-line errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from masktwins_cli.config.recipe import recipe_from_dict
from masktwins_cli.data.normalization import IntensityStats
from masktwins_cli.data.patches import PatchSampler, VolumeCrops
from masktwins_cli.errors import MaskTwinsError
from masktwins_cli.inference.predict import infer_volume
from masktwins_cli.io.checkpoints import load_checkpoint
from masktwins_cli.io.volumes import open_volume
from masktwins_cli.prepare.synthetic_synapses import write_synapse_pair
from masktwins_cli.synapse.points import SynapsePoints, write_points_csv
from masktwins_cli.training.data import open_training_data
from masktwins_cli.training.metrics_log import read_log
from masktwins_cli.training.run import train

SHAPE = (48, 48, 48)
ADAPT_TERMS = ("loss", "loss_sup", "loss_cl", "loss_cm", "confident_fraction", "confident_pre",
               "confident_post", "pseudo_pre_ppm", "pseudo_post_ppm", "lr")


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The synthetic synapse pair at 48^3 (8 nm isotropic)."""
    root = tmp_path_factory.mktemp("synapse_pair")
    write_synapse_pair(root, seed=0, shape=SHAPE)
    return root


def synapse_recipe(root, out, data=None, method=None, model=None, train_=None):
    """A tiny synapse recipe (resunet 4-8 widths, 32^3 crops, 3 iterations) with overrides."""
    values = {
        "data": {"root": str(root), "source_raw": "source.zarr/raw",
                 "source_points": "source_points.csv", "target_raw": "target_train.zarr/raw",
                 "patch_size": [32, 32, 32], "foreground_oversample": 0.5, **(data or {})},
        "model": {"task": "synapse", "name": "resunet", "spatial_dims": 3,
                  "features": [4, 4, 8, 8, 8], "norm": "instance", **(model or {})},
        "method": {"block_size": [6, 6, 6], "lambda_cm": 0.1, "ema_alpha": 0.9, **(method or {})},
        "train": {"iterations": 3, "batch_size": 2, "target_batch_size": 1, "lr": 1e-3,
                  "log_every": 1, "checkpoint_every": 2, "output_dir": str(out), "threads": 1,
                  "device": "cpu", **(train_ or {})},
        "infer": {"batch_size": 1, "block_size": [16, 48, 48]},
    }
    return recipe_from_dict(values)


def loss_records(out):
    return [r for r in read_log(out / "log.jsonl") if "loss" in r]


@pytest.fixture(scope="module")
def masktwins_run(pair, tmp_path_factory):
    """A 3-iteration MaskTwins synapse run."""
    out = tmp_path_factory.mktemp("synapse_run") / "run"
    return train(synapse_recipe(pair, out))


def test_masktwins_logs_every_term_and_writes_a_checkpoint(masktwins_run):
    records = loss_records(masktwins_run.output_dir)
    assert [r["step"] for r in records] == [1, 2, 3]
    for record in records:
        for key in ADAPT_TERMS:
            assert key in record and math.isfinite(record[key]), key
        assert 0.0 <= record["confident_pre"] <= 1.0 and 0.0 <= record["confident_post"] <= 1.0
    payload = load_checkpoint(masktwins_run.last_checkpoint)
    assert payload["step"] == 3 and payload["teacher"] is not None
    assert payload["recipe"]["model"]["task"] == "synapse"
    assert payload["model"]["head.conv.weight"].shape[0] == 2


@pytest.mark.parametrize("switches", [
    {"method": {"adapt": False}},
    {"method": {"consistency_on": "probabilities", "bce_weighting": "none", "adain": False},
     "model": {"norm": "batch"}},
    {"method": {"synapse_pseudo_labels": "cubes", "adapt_start": 1}},
], ids=["noadapt", "batchnorm-probabilities-unweighted", "cube-pseudo-labels-after-warm-up"])
def test_switches_train_with_finite_terms(pair, tmp_path, switches):
    result = train(synapse_recipe(pair, tmp_path / "run", **switches))
    records = loss_records(result.output_dir)
    adapt = switches["method"].get("adapt", True)
    start = switches["method"].get("adapt_start", 0)
    for record in records:
        adapting = adapt and record["step"] > start
        for key in ADAPT_TERMS if adapting else ("loss", "loss_sup", "lr"):
            assert key in record and math.isfinite(record[key]), key
        assert adapting or "loss_cl" not in record
    assert result.last_checkpoint.exists()


def test_resume_equals_uninterrupted_run(pair, tmp_path):
    full = synapse_recipe(pair, tmp_path / "full", train_={"iterations": 4})
    train(full)
    split = synapse_recipe(pair, tmp_path / "split", train_={"iterations": 4})

    def stop_after_two(step, total, record):
        if step > 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(split, report=stop_after_two)
    train(split, resume=True)
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in loss_records(tmp_path / "full")]
    again = [{k: v for k, v in r.items() if k != "seconds"} for r in loss_records(tmp_path / "split")]
    assert strip == again
    a, b = load_checkpoint(tmp_path / "full" / "last.pt"), load_checkpoint(tmp_path / "split" / "last.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def test_source_targets_are_the_point_cubes(pair):
    recipe = synapse_recipe(pair, pair / "unused", data={"cube_size": 5})
    crops = open_training_data(recipe).source.samplers[0].crops
    assert crops.channel_targets and crops.labels.shape == (2, *SHAPE)
    assert crops.labels.dtype == np.uint8 and set(np.unique(crops.labels)) <= {0, 1}
    assert crops.labels[0].any() and crops.labels[1].any()


def test_sampler_flips_channel_targets_with_the_image():
    """Targets built from the image's own values stay aligned through flips and turns."""
    raw = np.arange(8 * 8 * 8, dtype=np.float32).reshape(8, 8, 8)
    targets = np.stack([(raw % 7 == 0), (raw % 5 == 0)]).astype(np.uint8)
    crops = VolumeCrops(raw, IntensityStats(0.0, 1.0), targets, names=("raw", "points"),
                        channel_targets=True)
    sampler = PatchSampler(crops, (8, 8, 8), 3, augment=True)
    images, labels = sampler.sample(6, np.random.default_rng(0))
    assert images.shape == (6, 1, 8, 8, 8) and labels.shape == (6, 2, 8, 8, 8)
    assert labels.dtype == np.float32
    values = np.rint(images[:, 0]).astype(np.int64)
    np.testing.assert_array_equal(labels[:, 0], values % 7 == 0)
    np.testing.assert_array_equal(labels[:, 1], values % 5 == 0)


def test_infer_writes_both_sigmoid_channels(masktwins_run, pair, tmp_path):
    source = f"{pair}/target_test.zarr/raw"
    output = tmp_path / "pred.zarr" / "probabilities"
    result = infer_volume(masktwins_run.last_checkpoint, source, str(output), device="cpu")
    assert result.state == "written" and result.blocks == 3 and result.channels == 2
    written = open_volume(str(output))
    assert written.shape == (2, *SHAPE) and written.chunks[0] == 1
    assert written.voxel_size == open_volume(source).voxel_size == (8.0, 8.0, 8.0)
    probs = written.read_all()
    assert probs.dtype == np.float32 and probs.min() >= 0.0 and probs.max() <= 1.0
    assert not np.allclose(probs[0], probs[1])  # two distinct channels, not a copy
    rerun = infer_volume(masktwins_run.last_checkpoint, source, str(output), device="cpu")
    assert rerun.state == "up-to-date"


def test_sharded_infer_equals_single_run(masktwins_run, pair, tmp_path):
    source = f"{pair}/target_test.zarr/raw"
    whole = infer_volume(masktwins_run.last_checkpoint, source, str(tmp_path / "a.zarr" / "p"),
                         device="cpu")
    sharded = tmp_path / "b.zarr" / "p"
    first = infer_volume(masktwins_run.last_checkpoint, source, str(sharded), device="cpu",
                         shard=(1, 2))
    assert first.state == "pending"
    second = infer_volume(masktwins_run.last_checkpoint, source, str(sharded), device="cpu",
                          shard=(2, 2))
    assert second.state == "written"
    np.testing.assert_array_equal(open_volume(str(sharded)).read_all(),
                                  open_volume(whole.output).read_all())


def test_interrupted_infer_resumes_from_recorded_blocks(masktwins_run, pair, tmp_path, monkeypatch):
    from masktwins_cli.inference import predict

    source = f"{pair}/target_test.zarr/raw"
    reference = infer_volume(masktwins_run.last_checkpoint, source, str(tmp_path / "a.zarr" / "p"),
                             device="cpu")
    real, calls = predict.predict_box, []

    def fails_at_the_second_block(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise MaskTwinsError("simulated failure")
        return real(*args, **kwargs)

    output = tmp_path / "b.zarr" / "p"
    with monkeypatch.context() as patch:
        patch.setattr(predict, "predict_box", fails_at_the_second_block)
        with pytest.raises(MaskTwinsError, match="simulated"):
            infer_volume(masktwins_run.last_checkpoint, source, str(output), device="cpu")
    assert not output.exists()
    result = infer_volume(masktwins_run.last_checkpoint, source, str(output), device="cpu")
    assert (result.predicted, result.skipped) == (2, 1)
    np.testing.assert_array_equal(open_volume(str(output)).read_all(),
                                  open_volume(reference.output).read_all())


def one_line_error(recipe) -> str:
    with pytest.raises(MaskTwinsError) as info:
        open_training_data(recipe)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_missing_point_table_is_a_one_line_error(pair, tmp_path):
    message = one_line_error(synapse_recipe(pair, tmp_path / "run", data={"source_points": ""}))
    assert "data.source_points" in message
    message = one_line_error(synapse_recipe(pair, tmp_path / "run",
                                            data={"source_points": "missing.csv"}))
    assert "missing.csv" in message


def test_points_outside_the_volume_are_a_one_line_error(pair, tmp_path):
    table = tmp_path / "outside.csv"
    write_points_csv(table, SynapsePoints(np.array([[10.0, 10.0, 10.0], [60.0, 5.0, 5.0]]),
                                          np.array([[12.0, 10.0, 10.0]]), np.array([0])))
    message = one_line_error(synapse_recipe(pair, tmp_path / "run", data={"source_points": str(table)}))
    assert str(table) in message


@pytest.mark.parametrize("values, key", [
    ({"model": {"spatial_dims": 2}, "data": {"patch_size": [32, 32]},
      "method": {"block_size": [6, 6]}}, "model.spatial_dims"),
    ({"data": {"cube_size": 4}}, "data.cube_size"),
    ({"data": {"source_labels": "source.zarr/labels"}}, "data.source_labels"),
    ({"method": {"confidence": "quality"}}, "method.confidence"),
    ({"method": {"synapse_thresholds": [0.75, 0.4]}}, "method.synapse_thresholds"),
    ({"method": {"bce_weighting": "focal"}}, "method.bce_weighting"),
])
def test_bad_synapse_recipes_name_the_key(values, key):
    base = {"model": {"task": "synapse", "name": "resunet", "spatial_dims": 3},
            "data": {"patch_size": [32, 32, 32]}, "method": {"block_size": [6, 6, 6]}}
    for section, entries in values.items():
        base[section] = {**base[section], **entries}
    with pytest.raises(MaskTwinsError, match=key.replace(".", r"\.")) as info:
        recipe_from_dict(base)
    assert "\n" not in str(info.value)


def test_point_table_on_a_segmentation_recipe_is_rejected():
    with pytest.raises(MaskTwinsError, match=r"data\.source_points"):
        recipe_from_dict({"data": {"source_points": "points.csv"}})
