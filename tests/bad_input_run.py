"""Bad-input catalogue rows of the infer, detect, evaluate, curves and demo verbs (see
test_bad_input_catalogue.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import zarr
from bad_input_cases import (
    KEPT,
    NO_GPU,
    Ctx,
    case,
    colour_tiff,
    complex_zarr,
    garbage_zarr_chunk,
    garbage_zarr_metadata,
    infer,
    missing_dataset_hdf5,
    missing_zarr_chunk,
    nan_volume,
    not_hdf5,
    string_hdf5,
    table,
    truncated_tiff,
    volume,
)
from cli_helpers import write

from masktwins_cli.io.volumes import write_volume

GOOD_PROBS = np.zeros((2, 4, 8, 8), np.float32)
TABLE = "kind,id,pre_id,z,y,x\npre,0,,1,2,3\npost,0,0,1,2,4\n"
LOG = '{"step": 1, "loss": 0.5, "lr": 0.001}\n{"step": 2, "loss": 0.4, "lr": 0.001}\n'


def rng_bytes(n: int = 1000, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).bytes(n)


def class_map_eval(*options: str, truth_values=(0, 1, 2)):
    """evaluate a 3-class map against a truth holding ``truth_values``."""
    def setup(ctx: Ctx):
        rng = np.random.default_rng(0)
        truth = np.asarray(truth_values, np.uint8)[rng.integers(0, len(truth_values), (2, 16, 16))]
        write(f"{ctx.tmp}/truth.zarr/labels", truth)
        write(f"{ctx.tmp}/pred.zarr/map", rng.integers(0, 3, (2, 16, 16)).astype(np.uint8))
        return ["evaluate", f"{ctx.tmp}/pred.zarr/map", f"{ctx.tmp}/truth.zarr/labels",
                "--num-classes", "3", "--json", ctx.out("s.json"), *options]
    return setup


def bytes_checkpoint(data: bytes):
    def make(ctx: Ctx) -> Path:
        (ctx.tmp / "bad.pt").write_bytes(data)
        return ctx.tmp / "bad.pt"
    return make


def truncated_checkpoint(ctx: Ctx) -> Path:
    data = (ctx.trained_run / "last.pt").read_bytes()
    (ctx.tmp / "half.pt").write_bytes(data[: len(data) // 2])
    return ctx.tmp / "half.pt"


def foreign_checkpoint(ctx: Ctx) -> Path:
    torch.save({"model": {"weight": torch.zeros(2)}}, ctx.tmp / "other.pt")
    return ctx.tmp / "other.pt"


def checkpoint_3d(ctx: Ctx) -> Path:
    """The tiny checkpoint's recipe made 3-D, with freshly initialised 3-D weights (no training)."""
    from masktwins_cli.config.recipe import recipe_from_dict
    from masktwins_cli.io.checkpoints import load_checkpoint, save_checkpoint
    from masktwins_cli.runtime.networks import build_from_recipe

    payload = load_checkpoint(ctx.trained_run / "last.pt")
    values = payload["recipe"]
    values["model"].update(spatial_dims=3, pool=[[1, 2, 2]] * 4)
    values["data"]["patch_size"] = [8, 32, 32]
    values["method"]["block_size"] = [2, 8, 8]
    state = build_from_recipe(recipe_from_dict(values)).state_dict()
    payload.update(model=state, teacher=state)
    return save_checkpoint(ctx.tmp / "model3d.pt", payload)


def infer_output_is_input(ctx: Ctx):
    image = ctx.image()
    return ["infer", ctx.checkpoint(), "in.zarr/raw", "-o", image, "--device", "cpu", "--overwrite"]


def infer_output_in_file(ctx: Ctx):
    ctx.out("pred.zarr").write_text("a file, not a zarr container\n")
    return ["infer", ctx.checkpoint(), ctx.image(), "-o", f"{ctx.tmp}/pred.zarr/p", "--device",
            "cpu"]


def infer_existing_output(ctx: Ctx):
    output = ctx.image("pred.zarr/probabilities")
    ctx.out("pred.zarr")
    return ["infer", ctx.checkpoint(), ctx.image(), "-o", output, "--device", "cpu"]


def infer_mask_wrong_shape(ctx: Ctx):
    mask = write(f"{ctx.tmp}/m.zarr/m", np.ones((3, 32, 32), np.uint8))
    return infer("--mask", mask)(ctx)


def zarr_group(ctx: Ctx) -> str:
    """A group of two images: no one array it stands for (one image would be read as it)."""
    ctx.image("in.zarr/raw")
    ctx.image("in.zarr/other")
    return f"{ctx.tmp}/in.zarr"


def late_damage(kind: str):
    """A volume just large enough (> 4M voxels) that infer's intensity sample reads every other
    slice only, so damage in the last slice is found when its block is read, after the other
    blocks were predicted; a tissue mask keeps the prediction cheap. Returns the infer argv."""
    def setup(ctx: Ctx):
        shape = (16, 512, 512)
        data = np.random.default_rng(4).integers(0, 255, shape).astype(
            np.float32 if kind == "nan" else np.uint8)
        if kind == "nan":
            data[15, 1, 1] = np.nan
        write_volume(f"{ctx.tmp}/big.zarr/raw", data, (1.0, 1.0, 1.0), chunks=(1, 512, 512))
        if kind == "missing":
            array = zarr.open_array(f"{ctx.tmp}/big.zarr", path="raw", mode="r")
            (ctx.tmp / "big.zarr/raw" / array.metadata.encode_chunk_key((15, 0, 0))).unlink()
        mask = np.zeros((16, 16, 16), np.uint8)
        mask[:, 0, 0] = 1
        write(f"{ctx.tmp}/mask.zarr/m", mask)
        return infer("--set", "infer.block_size=[1,512,512]", "--mask", f"{ctx.tmp}/mask.zarr/m",
                     input_=lambda ctx: f"{ctx.tmp}/big.zarr/raw")(ctx)
    return setup


def detect(array: np.ndarray | None, *options: str, output: str = "det.csv"):
    def setup(ctx: Ctx):
        uri = f"{ctx.tmp}/probs.zarr/p"
        if array is not None and array.dtype.kind == "c":
            complex_zarr(ctx.tmp, "probs.zarr/p", array)
        elif array is not None:
            write(uri, array)
        return ["detect", uri, "-o", ctx.out(output), *options]
    return setup


def detect_damaged(make: Callable[[Ctx], str]):
    def setup(ctx: Ctx):
        return ["detect", make(ctx), "-o", ctx.out("det.csv")]
    return setup


def detect_pre_only(ctx: Ctx):
    pre = write(f"{ctx.tmp}/probs.zarr/pre", GOOD_PROBS[0])
    return ["detect", "--pre", pre, "-o", ctx.out("det.csv")]


def detect_existing(ctx: Ctx):
    uri = write(f"{ctx.tmp}/probs.zarr/p", GOOD_PROBS)
    ctx.out("det.csv").write_text("kind,id,pre_id,z,y,x\n")
    return ["detect", uri, "-o", ctx.tmp / "det.csv"]


def evaluate(prediction: Callable[[Ctx], object] | None = None,
             truth: Callable[[Ctx], object] | None = None, *options: str):
    def setup(ctx: Ctx):
        pred = prediction(ctx) if prediction else ctx.image("pred.zarr/p")
        true = truth(ctx) if truth else write(f"{ctx.tmp}/truth.zarr/labels",
                                              np.zeros((2, 32, 32), np.uint8))
        ctx.out("scores.json")
        return ["evaluate", pred, true, "--json", ctx.tmp / "scores.json", *options]
    return setup


def truth_with(values):
    def make(ctx: Ctx) -> str:
        rng = np.random.default_rng(5)
        data = np.asarray(values)[rng.integers(0, len(values), (2, 32, 32))]
        data = data.astype(np.int16 if data.dtype.kind == "i" else data.dtype)
        return write(f"{ctx.tmp}/truth.zarr/t", data)
    return make


def synapse(prediction, *options: str):
    def setup(ctx: Ctx):
        truth = table(TABLE, "truth.csv")(ctx)
        pred = prediction(ctx)
        ctx.out("scores.json")
        return ["evaluate", "--task", "synapse", pred, truth, "--json", ctx.tmp / "scores.json",
                *options]
    return setup


def evaluate_existing_json(ctx: Ctx):
    ctx.out("scores.json").write_text("earlier scores")
    return evaluate()(ctx)


def curves(log: str | bytes | None, *options: str, out: str = "curves.png"):
    def setup(ctx: Ctx):
        run = ctx.tmp / "run"
        run.mkdir()
        if log is not None:
            (run / "log.jsonl").write_bytes(log if isinstance(log, bytes) else log.encode())
        return ["curves", run, "-o", ctx.out(out), *options]
    return setup


def curves_existing(ctx: Ctx):
    (ctx.tmp / "run").mkdir()
    (ctx.tmp / "run" / "log.jsonl").write_text(LOG)
    ctx.out("curves.png").write_bytes(b"an earlier figure")
    return ["curves", ctx.tmp / "run", "-o", ctx.tmp / "curves.png"]


def demo(*options: str):
    def setup(ctx: Ctx):
        return ["demo", ctx.out("demo"), *options]
    return setup


def demo_existing(ctx: Ctx):
    (ctx.out("demo") / "seed0").mkdir(parents=True)
    (ctx.tmp / "demo" / "seed0" / "results.json").write_text("{}\n")
    return ["demo", ctx.tmp / "demo", "--iterations", "1"]


RUN_CASES = [
    # infer
    case("infer", "missing-checkpoint", infer(checkpoint=lambda ctx: ctx.tmp / "missing.pt"),
         "{tmp}/missing.pt", "not found"),
    case("infer", "checkpoint-random-bytes", infer(checkpoint=bytes_checkpoint(rng_bytes())),
         "{tmp}/bad.pt"),
    case("infer", "checkpoint-text", infer(checkpoint=bytes_checkpoint(b"hello\n")), "{tmp}/bad.pt"),
    case("infer", "checkpoint-empty", infer(checkpoint=bytes_checkpoint(b"")), "{tmp}/bad.pt"),
    case("infer", "checkpoint-truncated", infer(checkpoint=truncated_checkpoint), "{tmp}/half.pt"),
    case("infer", "checkpoint-foreign-torch-file", infer(checkpoint=foreign_checkpoint),
         "{tmp}/other.pt", "not a masktwins checkpoint"),
    case("infer", "checkpoint-is-folder", infer(checkpoint=lambda ctx: ctx.tmp),
         "{tmp}"),
    case("infer", "checkpoint-3d-on-2d-image",
         infer(checkpoint=checkpoint_3d, input_=lambda ctx: ctx.image("img.zarr/raw", (32, 32))),
         "{tmp}/img.zarr", "{tmp}/model3d.pt", "3-D"),
    case("infer", "device-cuda", infer("--device", "cuda", device=False), "--device",
         marks=[NO_GPU]),
    case("infer", "device-bogus", infer("--device", "tpu", device=False), "--device", "tpu"),
    case("infer", "device-cuda-0", infer("--device", "cuda:0", device=False), "--device",
         marks=[NO_GPU]),
    case("infer", "shard-0-of-3", infer("--shard", "0/3"), "--shard", "'0/3'"),
    case("infer", "shard-4-of-3", infer("--shard", "4/3"), "--shard", "'4/3'"),
    case("infer", "weights-bogus", infer("--weights", "bogus"), "--weights", "bogus"),
    case("infer", "output-is-input", infer_output_is_input, "{tmp}/in.zarr/raw", "input"),
    case("infer", "output-container-is-a-file", infer_output_in_file, "{tmp}/pred.zarr"),
    case("infer", "output-not-zarr", infer(output="pred.tif"), "pred.tif", "zarr"),
    case("infer", "existing-output", infer_existing_output, "{tmp}/pred.zarr/probabilities",
         "--overwrite"),
    case("infer", "set-non-infer-key", infer("--set", "train.lr=0.1"), "--set 'train.lr=0.1'"),
    case("infer", "set-overlap-1", infer("--set", "infer.overlap=1.0"), "--set", "infer.overlap"),
    case("infer", "set-unknown-infer-key", infer("--set", "infer.bogus=1"), "'infer.bogus'"),
    case("infer", "set-without-equals", infer("--set", "infer.overlap"), "infer.overlap"),
    case("infer", "input-missing", infer(input_=lambda ctx: f"{ctx.tmp}/missing.zarr/raw"),
         "{tmp}/missing.zarr"),
    case("infer", "input-nan", infer(input_=nan_volume()), "{tmp}/nan.zarr", "NaN"),
    case("infer", "input-1d", infer(input_=volume((32,))), "{tmp}/odd.zarr"),
    case("infer", "input-channels-differ", infer(input_=volume((3, 2, 32, 32))), "{tmp}/odd.zarr",
         "3 channel(s)", "model.in_channels = 1"),
    case("infer", "input-5d", infer(input_=volume((1, 1, 2, 32, 32))), "{tmp}/odd.zarr"),
    case("infer", "input-complex", infer(input_=volume((2, 32, 32), np.complex64)),
         "{tmp}/odd.zarr"),
    case("infer", "input-zarr-group", infer(input_=zarr_group), "{tmp}/in.zarr", "group"),
    case("infer", "input-hdf5-missing-dataset", infer(input_=missing_dataset_hdf5), "{tmp}/d.h5",
         "raw"),
    case("infer", "worker-command-without-workers", infer("--worker-command", "srun {cmd}"),
         "--workers"),
    case("infer", "restart-with-shard", infer("--shard", "1/2", "--restart"), "--restart",
         "--shard"),
    case("infer", "input-colour-tiff", infer(input_=colour_tiff), "{tmp}/colour.tif"),
    case("infer", "input-truncated-tiff",
         infer(input_=lambda ctx: truncated_tiff(ctx, (3, 32, 32))), "{tmp}/stack.tif"),
    case("infer", "input-not-hdf5", infer(input_=not_hdf5), "{tmp}/bad.h5"),
    case("infer", "input-zarr-json-garbage", infer(input_=garbage_zarr_metadata), "{tmp}/bad.zarr"),
    case("infer", "input-zarr-chunk-garbage", infer(input_=garbage_zarr_chunk), "{tmp}/bad.zarr"),
    case("infer", "input-zarr-chunk-missing", infer(input_=missing_zarr_chunk), "{tmp}/lost.zarr",
         "missing"),
    case("infer", "input-chunk-missing-in-last-block", late_damage("missing"),
         "{tmp}/big.zarr/raw", "c/15/0/0", "missing", kept=KEPT),
    case("infer", "input-nan-in-last-block", late_damage("nan"), "{tmp}/big.zarr/raw", "NaN",
         kept=KEPT),
    case("infer", "mask-missing", infer("--mask", "nomask.zarr/m"), "nomask.zarr"),
    case("infer", "mask-wrong-shape", infer_mask_wrong_shape, "{tmp}/m.zarr"),
    # detect
    case("detect", "three-channels", detect(np.zeros((3, 4, 8, 8), np.float32)),
         "{tmp}/probs.zarr/p", "3 channels"),
    case("detect", "probabilities-above-1", detect(GOOD_PROBS + 2), "{tmp}/probs.zarr/p", "[0, 1]"),
    case("detect", "complex-probabilities", detect(GOOD_PROBS.astype(np.complex64)),
         "{tmp}/probs.zarr/p"),
    case("detect", "zarr-json-garbage", detect_damaged(garbage_zarr_metadata), "{tmp}/bad.zarr"),
    case("detect", "pre-without-post", detect_pre_only, "--pre", "--post"),
    case("detect", "threshold-above-1", detect(GOOD_PROBS, "--pre-threshold", "1.5"),
         "threshold"),
    case("detect", "min-size-negative", detect(GOOD_PROBS, "--min-size", "-1"), "min"),
    case("detect", "input-missing", detect(None), "{tmp}/probs.zarr/p"),
    case("detect", "output-suffix", detect(GOOD_PROBS, output="det.txt"), "det.txt", ".csv"),
    case("detect", "block-shape-two-values", detect(GOOD_PROBS, "--block-shape", "8,8"),
         "--block-shape", "'8,8'"),
    case("detect", "offset-text", detect(GOOD_PROBS, "--offset", "a,b,c"), "--offset"),
    case("detect", "existing-output", detect_existing, "{tmp}/det.csv", "--overwrite"),
    # evaluate
    case("evaluate", "truth-value-7", evaluate(None, truth_with((0, 7))), "{tmp}/truth.zarr", "7"),
    case("evaluate", "truth-value-minus-1", evaluate(None, truth_with((0, -1))), "{tmp}/truth.zarr",
         "-1"),
    case("evaluate", "truth-value-half", evaluate(None, truth_with((0.0, 0.5))), "{tmp}/truth.zarr",
         "0.5"),
    case("evaluate", "shape-mismatch", evaluate(lambda ctx: ctx.image("pred.zarr/p", (2, 16, 32))),
         "{tmp}/pred.zarr/p", "(2, 16, 32)", "(2, 32, 32)"),
    case("evaluate", "prediction-nan", evaluate(nan_volume("pred.zarr/p")), "{tmp}/pred.zarr"),
    case("evaluate", "prediction-complex",
         evaluate(lambda ctx: complex_zarr(ctx.tmp, "pred.zarr/p",
                                           np.ones((2, 32, 32), np.complex64))), "{tmp}/pred.zarr"),
    case("evaluate", "truth-strings", evaluate(None, string_hdf5), "{tmp}/text.h5", "|S2"),
    case("evaluate", "truth-zarr-chunk-missing",
         evaluate(None, lambda ctx: missing_zarr_chunk(ctx, labels=True)), "{tmp}/lost.zarr",
         "missing"),
    case("evaluate", "threshold-above-1", evaluate(None, None, "--threshold", "1.5"), "threshold"),
    case("evaluate --task synapse", "negative-radius", synapse(table(TABLE), "--pre-radius", "-1"),
         "radius"),
    case("evaluate", "prediction-uint8-255",
         evaluate(lambda ctx: write(f"{ctx.tmp}/pred.zarr/p", np.full((2, 32, 32), 255, np.uint8))),
         "{tmp}/pred.zarr/p", "[0, 1]"),
    case("evaluate", "classes-truth-outside-the-classes", class_map_eval(truth_values=(0, 1, 7)),
         "{tmp}/truth.zarr/labels", "7", "0..2 or 255"),
    case("evaluate", "classes-subset-outside", class_map_eval("--classes", "0,5"),
         "--classes 5", "outside the 3 classes"),
    case("evaluate", "classes-subset-not-numbers", class_map_eval("--classes", "0,x"),
         "--classes '0,x'"),
    case("evaluate", "num-classes-one", class_map_eval("--num-classes", "1"), "--num-classes 1"),
    case("evaluate", "class-probabilities-wrong-shape",
         evaluate(lambda ctx: ctx.image("pred.zarr/p", (2, 2, 16, 32))), "{tmp}/pred.zarr/p",
         "does not match"),
    case("evaluate", "overlay-raw-missing",
         evaluate(None, None, "--overlay", "overlays", "--raw", "missing.zarr/raw"), "missing.zarr"),
    case("evaluate", "prediction-missing", evaluate(lambda ctx: f"{ctx.tmp}/missing.zarr/p"),
         "{tmp}/missing.zarr"),
    case("evaluate", "truth-not-hdf5", evaluate(None, not_hdf5), "{tmp}/bad.h5"),
    case("evaluate", "mode-bogus", evaluate(None, None, "--mode", "bogus"), "--mode", "bogus"),
    case("evaluate", "task-bogus", evaluate(None, None, "--task", "bogus"), "--task", "bogus"),
    case("evaluate", "existing-json", evaluate_existing_json, "{tmp}/scores.json", "--overwrite"),
    case("evaluate --task synapse", "bad-header", synapse(table("kind,id,z,y,x\npre,0,1,2,3\n")),
         "{tmp}/pred.csv", "header"),
    case("evaluate --task synapse", "missing-table", synapse(lambda ctx: ctx.tmp / "missing.csv"),
         "{tmp}/missing.csv"),
    case("evaluate --task synapse", "table-not-hdf5", synapse(table(b"garbage", "pred.h5")),
         "{tmp}/pred.h5"),
    case("evaluate --task synapse", "pair-one-file", synapse(table(TABLE), "--pair", "x.csv"), "--pair",
         "PRED,TRUTH"),
    # curves
    case("curves", "log-missing", curves(None), "{tmp}/run", "log.jsonl"),
    case("curves", "log-garbage", curves(b"\x00\xffgarbage\n"), "{tmp}/run/log.jsonl"),
    case("curves", "log-not-json", curves("{step: 1\n"), "{tmp}/run/log.jsonl:1"),
    case("curves", "log-empty", curves(""), "{tmp}/run/log.jsonl", "empty"),
    case("curves", "log-record-without-step", curves('{"loss": 0.5}\n'), "{tmp}/run/log.jsonl:1",
         "step"),
    case("curves", "out-not-png", curves(LOG, out="curves.jpg"), "{tmp}/curves.jpg", ".png"),
    case("curves", "out-folder-missing", curves(LOG, out="nowhere/curves.png"), "{tmp}/nowhere"),
    case("curves", "terms-bogus", curves(LOG, "--terms", "bogus"), "--terms", "bogus"),
    case("curves", "labels-count", curves(LOG, "--label", "a", "--label", "b"), "2 labels"),
    case("curves", "existing-out", curves_existing, "{tmp}/curves.png", "--overwrite"),
    # demo
    case("demo", "iterations-0", demo("--iterations", "0"), "train.iterations", "0"),
    case("demo", "seed-negative", demo("--seed", "-1"), "seed"),
    case("demo", "dims-4", demo("--dims", "4"), "--dims", "4"),
    case("demo", "set-unknown-key", demo("--set", "train.bogus=1"), "'train.bogus'"),
    case("demo", "existing-seed-folder", demo_existing, "{tmp}/demo/seed0", "--overwrite"),
]
