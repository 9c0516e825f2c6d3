"""recipes/synthia_to_cityscapes.toml end to end on fixture trees in the published layouts:
prepare synthia / cityscapes, train a tiny MiT with the full recipe (ClassMix, quality weight
with margins, rare-class sampling, complementary twins, EMA) for a few iterations, infer,
evaluate with the SYNTHIA protocol; a missing model.pretrained is one line. HRDA is on, as in
the recipe: the fixture images are prepared at twice their size (64 x 128), as the recipe's
header prepares SYNTHIA, so that 64 x 64 crops hold a 32 x 32 detail window."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import invoke

pytest.importorskip("transformers", reason="the test extra installs it (masktwins[cityscapes])")

from scene_fixtures import cityscapes_tree, synthia_tree  # noqa: E402

from masktwins_cli.io.volumes import open_volume  # noqa: E402

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "synthia_to_cityscapes.toml"
SIZES = ["--set", 'model.encoder="mit_tiny"', "--set", "model.decoder_channels=16",
         "--set", "data.patch_size=[64, 64]", "--set", "model.hrda_detail=[32, 32]",
         "--set", "method.block_size=[8, 8]",
         "--set", "method.pseudo_margin=[2, 6, 2, 2]", "--set", "data.rare_class_min_pixels=16",
         "--set", "train.iterations=4", "--set", "train.warmup_iterations=2",
         "--set", "train.val_every=4", "--set", "train.checkpoint_every=4",
         "--set", "train.log_every=1", "--set", "infer.window=[64, 64]",
         "--set", "train.threads=1"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A working folder laid out as the recipe's header says: data/cityscapes/*.zarr and
    pretrained/mit_b5.pth (here random weights of the tiny MiT in the original layout)."""
    from masktwins_cli.models.mit_weights import to_original
    from masktwins_cli.models.segformer import SegFormer

    work = tmp_path_factory.mktemp("cityscapes_work")
    synthia_tree(work / "SYNTHIA", count=3)
    cityscapes_tree(work / "Cityscapes")
    data = work / "data" / "cityscapes"
    for argv in (["synthia", work / "SYNTHIA", data / "synthia.zarr", "--scale", "2"],
                 ["cityscapes", work / "Cityscapes", data / "cityscapes_train.zarr", "--scale", "2"],
                 ["cityscapes", work / "Cityscapes", data / "cityscapes_val.zarr", "--split", "val",
                  "--scale", "2"]):
        result = invoke("prepare", *argv)
        assert result.exit_code == 0, result.output
    (work / "pretrained").mkdir()
    torch.manual_seed(3)
    torch.save(to_original(SegFormer(3, 19, "mit_tiny", 16).encoder.state_dict()),
               work / "pretrained" / "mit_b5.pth")
    return work


@pytest.fixture
def in_work(prepared):
    before = os.getcwd()
    os.chdir(prepared)
    yield prepared
    os.chdir(before)


def test_the_recipe_trains_infers_and_evaluates_as_written(in_work):
    result = invoke("train", RECIPE, *SIZES)
    assert result.exit_code == 0, result.output
    run = in_work / "runs" / "synthia_to_cityscapes"
    recorded = (run / "recipe.toml").read_text()
    assert "hrda = true" in recorded and "classmix = true" in recorded
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    assert len(steps) == 4
    for key in ("loss_sup", "loss_cl", "loss_cm", "loss_mix", "loss_fd", "confident_fraction"):
        assert all(np.isfinite(r[key]) for r in steps), key
    assert any("val_miou" in r for r in records)
    lrs = [r["lr"] for r in steps]
    assert lrs[0] < lrs[1] and max(lrs) <= 6e-5  # linear warm-up to 6e-5, then poly decay
    out = in_work / "pred.zarr"
    result = invoke("infer", run / "last.pt", "data/cityscapes/cityscapes_val.zarr/raw",
                    "-o", f"{out}/classes", "--device", "cpu")
    assert result.exit_code == 0, result.output
    classes = open_volume(f"{out}/classes")
    assert classes.dtype == np.uint8 and tuple(classes.shape) == (2, 64, 128)
    result = invoke("evaluate", f"{out}/classes", "data/cityscapes/cityscapes_val.zarr/labels",
                    "--protocol", "synthia", "--json", in_work / "scores.json")
    assert result.exit_code == 0, result.output
    assert "mIoU13" in result.output
    scores = json.loads((in_work / "scores.json").read_text())
    assert scores["num_classes"] == 19 and "miou13" in scores and "miou16" in scores


def test_a_missing_pretrained_file_is_one_line_and_writes_nothing(in_work):
    result = invoke("train", RECIPE, *SIZES, "--set", 'model.pretrained="pretrained/nope.pth"',
                    "--set", 'train.output_dir="runs/no_weights"')
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "model.pretrained" in lines[0] and "nope.pth" in lines[0]
    assert not (in_work / "runs" / "no_weights").exists()
