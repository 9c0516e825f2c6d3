"""Bad-input catalogue rows of the prepare, train and recipe verbs (see
test_bad_input_catalogue.py)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import tifffile
from bad_input_cases import (
    NO_GPU,
    Ctx,
    case,
    colour_tiff,
    garbage_zarr_chunk,
    garbage_zarr_metadata,
    missing_dataset_hdf5,
    missing_zarr_chunk,
    nan_volume,
    not_hdf5,
    stack,
    string_hdf5,
    truncated_tiff,
    volume,
)
from cli_helpers import write
from PIL import Image

from masktwins_cli.io.volumes import write_volume


def png_folder(ctx: Ctx, name: str = "raw", depth: int = 3, shape=(12, 10)) -> Path:
    folder = ctx.tmp / name
    folder.mkdir(parents=True, exist_ok=True)
    for z in range(depth):
        Image.fromarray(np.full(shape, 10 * z + 5, np.uint8)).save(folder / f"s{z}.png")
    return folder


def synthetic(*options: str):
    def setup(ctx: Ctx):
        return ["prepare", "synthetic", ctx.out("syn"), *options]
    return setup


def synthetic_out_file(ctx: Ctx):
    ctx.out("syn").write_text("a file\n")
    return ["prepare", "synthetic", ctx.tmp / "syn", "--shape", "2,32,32"]


def synthetic_existing(ctx: Ctx):
    out = ctx.out("syn")
    write(f"{out}/source.zarr/raw", np.zeros((2, 8, 8), np.uint8))
    (out / "dataset.json").write_text('{"keep": true}\n')
    return ["prepare", "synthetic", out, "--shape", "2,16,16"]


def empty_folder(ctx: Ctx) -> Path:
    (ctx.tmp / "empty").mkdir()
    return ctx.tmp / "empty"


def empty_file_tif(ctx: Ctx) -> Path:
    (ctx.tmp / "empty.tif").write_bytes(b"")
    return ctx.tmp / "empty.tif"


def garbage_png(ctx: Ctx) -> Path:
    folder = png_folder(ctx)
    (folder / "s1.png").write_bytes(b"not a png at all")
    return folder


def truncated_png(ctx: Ctx) -> Path:
    folder = png_folder(ctx)
    good = (folder / "s1.png").read_bytes()
    (folder / "s1.png").write_bytes(good[: len(good) - 40])
    return folder


def colour_png(ctx: Ctx) -> Path:
    folder = ctx.tmp / "rgb"
    folder.mkdir()
    for z in range(2):
        plane = np.zeros((12, 10, 3), np.uint8)
        plane[..., 0] = 200
        Image.fromarray(plane).save(folder / f"s{z}.png")
    return folder


def label_slices(values):
    def make(ctx: Ctx) -> Path:
        folder = ctx.tmp / "lab"
        folder.mkdir()
        for z in range(3):
            plane = np.asarray(values, np.uint8)[np.indices((12, 10)).sum(0) % len(values)]
            Image.fromarray(plane).save(folder / f"s{z}.png")
        return folder
    return make


def stack_out(name: str):
    def setup(ctx: Ctx):
        return ["prepare", "stack", ctx.out(name), "--images", png_folder(ctx)]
    return setup


def stack_existing(ctx: Ctx):
    out = ctx.out("out.zarr")
    write(f"{out}/raw", np.ones((3, 12, 10), np.uint8))
    return ["prepare", "stack", out, "--images", png_folder(ctx)]


def stack_own_input(ctx: Ctx):
    out = ctx.out("x.zarr")
    write(f"{out}/raw", np.ones((3, 12, 10), np.uint8))
    return ["prepare", "stack", out, "--images", f"{out}/raw", "--overwrite"]


def preset(name: str, layout: Callable[[Path], None] | None, *options: str):
    """``prepare NAME DIR OUT``: DIR built by ``layout`` (None: DIR does not exist)."""
    def setup(ctx: Ctx):
        root = ctx.tmp / "dataset"
        if layout is not None:
            root.mkdir()
            layout(root)
        return ["prepare", name, root, ctx.out("prepared"), *options]
    return setup


def wrong_layout(root: Path) -> None:
    """Slices lying loose in the folder: the layout of no preset."""
    for z in range(2):
        Image.fromarray(np.zeros((12, 10), np.uint8)).save(root / f"{z:02d}.png")


def lucchi_without_truth(root: Path) -> None:
    for split in ("training", "testing"):
        tifffile.imwrite(root / f"{split}.tif", np.zeros((3, 12, 10), np.uint8),
                         photometric="minisblack")
    tifffile.imwrite(root / "training_groundtruth.tif", np.zeros((3, 12, 10), np.uint8),
                     photometric="minisblack")


def lucchi_truncated(root: Path) -> None:
    for split in ("training", "testing"):
        for suffix in ("", "_groundtruth"):
            tifffile.imwrite(root / f"{split}{suffix}.tif", np.zeros((3, 12, 10), np.uint8),
                             photometric="minisblack")
    data = (root / "testing.tif").read_bytes()
    (root / "testing.tif").write_bytes(data[: len(data) // 2])


def cdeep3m_missing_label(root: Path) -> None:
    for split in ("training", "validation"):
        for z in range(2):
            for kind, name in (("images", "images"), ("labels", "mitos_3D")):
                (root / split / kind).mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.zeros((12, 10), np.uint8)).save(
                    root / split / kind / f"{name}.{z:03d}.png")
    (root / "validation" / "labels" / "mitos_3D.001.png").unlink()
    (root / "testset").mkdir()
    Image.fromarray(np.zeros((12, 10), np.uint8)).save(root / "testset" / "images.081.png")


def waspsyn_layout(kind: str):
    def layout(root: Path) -> None:
        from waspsyn_data import LABELED, OFFSET, coordinate_image, make_layout, range_name
        files = make_layout(root, unlabeled=(kind == "unlabeled"))
        if kind == "not-hdf5":
            files["image"].write_bytes(b"this is not HDF5\n" * 10)
        elif kind == "no-main":
            with h5py.File(files["image"], "w") as h5file:
                h5file["raw"] = coordinate_image()
        elif kind == "empty":
            files["labels"].write_bytes(b"")
        assert (root / LABELED / range_name("img", OFFSET)).exists()
    return layout


def train_with(*options: str, verb: str = "train", **sections):
    def setup(ctx: Ctx):
        ctx.out("run")
        return [verb, ctx.recipe(**sections), *options]
    return setup


def recipe_text(text: str | bytes, verb: str = "train"):
    def setup(ctx: Ctx):
        ctx.out("run")
        path = ctx.tmp / "recipe.toml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return [verb, path]
    return setup


def train_data(key: str, make: Callable[[Ctx], str], *options: str):
    def setup(ctx: Ctx):
        ctx.out("run")
        recipe = ctx.recipe(data={key: make(ctx)})
        return ["train", recipe, *options]
    return setup


def train_tables(**tables):
    """train with ``[[data.<role>]]`` tables instead of the tiny recipe's single-volume keys;
    table values may be callables of the context (volumes made for the case)."""
    def setup(ctx: Ctx):
        ctx.out("run")
        data = {"source_raw": "", "source_labels": "", "target_raw": ""}
        for role, entries in tables.items():
            data[role] = [entry(ctx) if callable(entry) else entry for entry in entries]
        return ["train", ctx.recipe(data=data)]
    return setup


def source_at(voxel: tuple[float, float, float], name: str):
    """A source volume table entry (raw + labels) written with voxel size ``voxel``."""
    def make(ctx: Ctx) -> dict:
        rng = np.random.default_rng(0)
        write_volume(f"{ctx.tmp}/{name}.zarr/raw", rng.integers(0, 255, (2, 32, 32), np.uint8), voxel)
        write_volume(f"{ctx.tmp}/{name}.zarr/labels", np.zeros((2, 32, 32), np.uint8), voxel)
        return {"raw": f"{ctx.tmp}/{name}.zarr/raw", "labels": f"{ctx.tmp}/{name}.zarr/labels"}
    return make


def train_output_dir_file(ctx: Ctx):
    recipe = ctx.recipe()
    ctx.out("notes.txt").write_text("a file\n")
    return ["train", recipe, "--output-dir", ctx.tmp / "notes.txt"]


def train_existing_run(ctx: Ctx):
    recipe = ctx.recipe()
    ctx.out("run").mkdir()
    shutil.copyfile(ctx.trained_run / "last.pt", ctx.tmp / "run" / "last.pt")
    return ["train", recipe]


def labels_volume(values, dtype=np.uint8):
    def make(ctx: Ctx) -> str:
        rng = np.random.default_rng(3)
        data = np.asarray(values)[rng.integers(0, len(values), (3, 32, 32))].astype(dtype)
        return write(f"{ctx.tmp}/labels.zarr/labels", data)
    return make


PREPARE_AND_TRAIN_CASES = [
    # prepare synthetic
    case("prepare synthetic", "shape-two-values", synthetic("--shape", "8,8"), "--shape", "'8,8'"),
    case("prepare synthetic", "shape-zero", synthetic("--shape", "0,16,16"), "--shape"),
    case("prepare synthetic", "dims-4", synthetic("--dims", "4"), "dims", "4"),
    case("prepare synthetic", "task-bogus", synthetic("--task", "bogus"), "task", "'bogus'"),
    case("prepare synthetic", "test-shape-for-mito", synthetic("--test-shape", "2,16,16"),
         "--test-shape"),
    case("prepare synthetic", "seed-negative", synthetic("--seed", "-1"), "seed", "-1"),
    case("prepare synthetic", "out-is-a-file", synthetic_out_file, "{tmp}/syn"),
    case("prepare synthetic", "existing-output", synthetic_existing, "{tmp}/syn", "--overwrite"),
    # prepare stack
    case("prepare stack", "missing-folder", stack(lambda ctx: ctx.tmp / "nothing"),
         "{tmp}/nothing"),
    case("prepare stack", "empty-folder", stack(empty_folder), "{tmp}/empty", "no TIFF or PNG"),
    case("prepare stack", "empty-file", stack(empty_file_tif), "{tmp}/empty.tif"),
    case("prepare stack", "garbage-png", stack(garbage_png), "{tmp}/raw/s1.png"),
    case("prepare stack", "truncated-png", stack(truncated_png), "{tmp}/raw/s1.png"),
    case("prepare stack", "truncated-tiff", stack(truncated_tiff), "{tmp}/stack.tif"),
    case("prepare stack", "colour-png", stack(colour_png), "{tmp}/rgb/s0.png", "colour"),
    case("prepare stack", "out-not-zarr", stack_out("out.h5"), "out.h5"),
    case("prepare stack", "not-hdf5", stack(not_hdf5), "{tmp}/bad.h5"),
    case("prepare stack", "hdf5-missing-dataset", stack(missing_dataset_hdf5), "{tmp}/d.h5", "raw"),
    case("prepare stack", "hdf5-strings", stack(string_hdf5), "{tmp}/text.h5"),
    case("prepare stack", "zarr-json-garbage", stack(garbage_zarr_metadata), "{tmp}/bad.zarr"),
    case("prepare stack", "zarr-chunk-garbage", stack(garbage_zarr_chunk), "{tmp}/bad.zarr"),
    case("prepare stack", "zarr-chunk-missing", stack(missing_zarr_chunk), "{tmp}/lost.zarr",
         "missing"),
    case("prepare stack", "volume-1d", stack(volume((32,))), "{tmp}/odd.zarr", "(32,)"),
    case("prepare stack", "volume-4d", stack(volume((1, 2, 8, 8))), "{tmp}/odd.zarr"),
    case("prepare stack", "complex-dtype", stack(volume((2, 8, 8), np.complex64)), "{tmp}/odd.zarr"),
    case("prepare stack", "nan-image", stack(nan_volume()), "{tmp}/nan.zarr", "NaN"),
    case("prepare stack", "label-map-equals", stack(png_folder, "--label-map", "191=1",
                                                    labels=label_slices((0, 191))),
         "--label-map", "'191=1'"),
    case("prepare stack", "voxel-size-two-values", stack(png_folder, "--voxel-size", "50,4"),
         "--voxel-size", "'50,4'"),
    case("prepare stack", "resample-to-negative", stack(png_folder, "--resample-to", "1,-2,2"),
         "--resample-to"),
    case("prepare stack", "labels-outside-classes", stack(png_folder, labels=label_slices((0, 191))),
         "191", "--label-value", "{tmp}/lab"),
    case("prepare stack", "labels-shape-mismatch",
         stack(png_folder, labels=lambda ctx: png_folder(ctx, "lab", shape=(6, 10))),
         "12x10", "6x10"),
    case("prepare stack", "existing-output", stack_existing, "{tmp}/out.zarr", "--overwrite"),
    case("prepare stack", "output-is-input", stack_own_input, "{tmp}/x.zarr", "inside the output"),
    # prepare presets
    case("prepare vnc3", "missing-folder", preset("vnc3", None), "{tmp}/dataset"),
    case("prepare vnc3", "wrong-layout", preset("vnc3", wrong_layout), "{tmp}/dataset", "stack1"),
    case("prepare vnc3", "stack-bogus", preset("vnc3", wrong_layout, "--stack", "stack9"),
         "--stack", "stack9"),
    case("prepare cdeep3m", "wrong-layout", preset("cdeep3m", wrong_layout), "{tmp}/dataset"),
    case("prepare cdeep3m", "image-without-label", preset("cdeep3m", cdeep3m_missing_label),
         "2 images", "1 labels"),
    case("prepare lucchi", "truth-missing", preset("lucchi", lucchi_without_truth),
         "testing_groundtruth.tif"),
    case("prepare lucchi", "truncated-tiff", preset("lucchi", lucchi_truncated),
         "{tmp}/dataset/testing.tif"),
    case("prepare lucchi", "voxel-size-text", preset("lucchi", lucchi_truncated, "--voxel-size",
                                                     "5,5,five"), "--voxel-size", "5,5,five"),
    case("prepare mitoem", "tissue-mouse", preset("mitoem", wrong_layout, "--tissue", "mouse"),
         "mouse"),
    case("prepare mitoem", "wrong-layout", preset("mitoem", wrong_layout, "--tissue", "rat"),
         "{tmp}/dataset"),
    case("prepare waspsyn", "missing-folder", preset("waspsyn", None), "{tmp}/dataset"),
    case("prepare waspsyn", "wrong-layout", preset("waspsyn", wrong_layout), "{tmp}/dataset"),
    case("prepare waspsyn", "image-not-hdf5", preset("waspsyn", waspsyn_layout("not-hdf5")),
         "{tmp}/dataset/train_sample3_vol0/img_zyx_40-64_100-140_200-248.h5"),
    case("prepare waspsyn", "no-main-dataset", preset("waspsyn", waspsyn_layout("no-main")),
         "img_zyx_40-64_100-140_200-248.h5", "main"),
    case("prepare waspsyn", "empty-label-file", preset("waspsyn", waspsyn_layout("empty")),
         "syns_zyx_40-64_100-140_200-248.h5"),
    case("prepare waspsyn", "unlabeled-without-flag", preset("waspsyn", waspsyn_layout("unlabeled")),
         "img_zyx_8-32_16-56_24-72.h5", "--unlabeled"),
    case("prepare waspsyn", "as-with-two-volumes", preset("waspsyn", waspsyn_layout("unlabeled"),
                                                          "--as", "source", "--unlabeled"), "--volume"),
    case("prepare waspsyn", "voxel-size-x", preset("waspsyn", waspsyn_layout("ok"), "--voxel-size",
                                                   "8,8"), "--voxel-size"),
    # train
    case("train", "missing-recipe", lambda ctx: ["train", ctx.tmp / "missing.toml"],
         "{tmp}/missing.toml", "not found"),
    case("train", "empty-recipe", recipe_text(""), "[[data.source]]", "empty"),
    case("train", "toml-syntax-error", recipe_text("[train]\nlr = = 1\n"), "{tmp}/recipe.toml",
         "line 2"),
    case("train", "binary-recipe", recipe_text(b"[train]\nlr = \xff\xfe\n"), "{tmp}/recipe.toml"),
    case("train", "unknown-key", train_with(train={"lrr": 0.1}), "'train.lrr'", "did you mean 'lr'"),
    case("train", "unknown-section", train_with(bogus={"x": 1}), "bogus"),
    case("train", "wrong-type", train_with(train={"iterations": "ten"}), "'train.iterations'",
         "ten"),
    case("train", "negative-lr", train_with("--set", "train.lr=-1"), "'train.lr'", "-1"),
    case("train", "mask-ratio-above-1", train_with(method={"mask_ratio": 1.5}),
         "'method.mask_ratio'", "1.5"),
    case("train", "patch-larger-than-volume", train_with(data={"patch_size": [64, 64]}),
         "data.patch_size", "64"),
    case("train", "set-without-equals", train_with("--set", "train.lr"), "--set 'train.lr'"),
    case("train", "set-unknown-key", train_with("--set", "train.bogus=1"), "'train.bogus'"),
    case("train", "resume-without-checkpoint", train_with("--resume"), "{tmp}/run/last.pt"),
    case("train", "existing-run-without-resume", train_existing_run, "{tmp}/run", "--resume"),
    case("train", "lr-nan", train_with("--set", "train.lr=nan"), "'train.lr'", "nan"),
    case("train", "val-labels-missing", train_with(data={"val_raw": "data/tiny.zarr/raw"}),
         "data.val_labels"),
    case("train", "patch-size-3d-for-2d-model", train_with(data={"patch_size": [8, 32, 32]}),
         "'data.patch_size'", "model.spatial_dims = 2"),
    case("train", "output-dir-is-a-file", train_output_dir_file, "{tmp}/notes.txt"),
    case("train", "raw-colour-tiff", train_data("source_raw", colour_tiff), "{tmp}/colour.tif"),
    case("train", "data-missing", train_with(data={"source_raw": "missing.zarr/raw"}),
         "{tmp}/missing.zarr"),
    case("train", "raw-nan", train_data("source_raw", nan_volume()), "{tmp}/nan.zarr", "NaN"),
    case("train", "raw-channels-differ", train_data("source_raw", volume((3, 3, 32, 32))),
         "{tmp}/odd.zarr", "3 channel(s)", "model.in_channels = 1"),
    case("train", "raw-grey-for-colour-model",
         train_data("source_raw", volume((3, 32, 32)), "--set", "model.in_channels=3"),
         "{tmp}/odd.zarr", "1 channel(s)", "model.in_channels = 3"),
    case("train", "raw-5d", train_data("source_raw", volume((1, 1, 3, 32, 32))), "{tmp}/odd.zarr",
         "(1, 1, 3, 32, 32)"),
    case("train", "fixed-mean-wrong-length",
         train_with("--set", "data.normalization=fixed", "--set", "data.mean=[1, 2]",
                    "--set", "data.std=[1, 2]"), "'data.mean'", "model.in_channels"),
    case("train", "mean-without-fixed", train_with("--set", "data.mean=[1]"), "'data.mean'",
         "fixed"),
    case("train", "std-not-positive",
         train_with("--set", "data.normalization=fixed", "--set", "data.mean=[1]",
                    "--set", "data.std=[0]"), "data.std"),
    case("train", "labels-outside-classes", train_data("source_labels", labels_volume((0, 5))),
         "{tmp}/labels.zarr", "5", "model.num_classes"),
    case("train", "labels-garbage-chunk",
         train_data("source_labels", lambda ctx: garbage_zarr_chunk(ctx, (3, 32, 32))),
         "{tmp}/bad.zarr"),
    case("train", "cuda-without-gpu", train_with("--set", "train.device=cuda"), "train.device",
         marks=[NO_GPU]),
    case("train", "sources-of-two-voxel-sizes",
         train_tables(source=[source_at((1.0, 1.0, 1.0), "a"), source_at((1.0, 2.0, 2.0), "b")],
                      target=[{"raw": "data/tiny.zarr/raw"}]),
         "'data.source[1].raw'", "'data.source[0].raw'", "voxel size"),
    case("train", "both-volume-forms",
         train_with(data={"source": [{"raw": "data/tiny.zarr/raw", "labels": "data/tiny.zarr/labels"}]}),
         "data.source_raw", "[[data.source]] tables both"),
    case("train", "target-table-with-labels",
         train_tables(source=[source_at((1.0, 1.0, 1.0), "a")],
                      target=[{"raw": "data/tiny.zarr/raw", "labels": "data/tiny.zarr/labels"}]),
         "'data.target[0].labels'", "unlabeled"),
    case("train", "source-weight-negative",
         train_tables(source=[{"raw": "data/tiny.zarr/raw", "labels": "data/tiny.zarr/labels",
                               "weight": -1.0}]), "'data.source[0].weight'"),
    case("train", "source-weights-partial",
         train_tables(source=[{**entry, "weight": w} if w else entry for entry, w in (
             ({"raw": "data/tiny.zarr/raw", "labels": "data/tiny.zarr/labels"}, 2.0),
             ({"raw": "data/tiny.zarr/raw", "labels": "data/tiny.zarr/labels"}, 0.0))],
             target=[{"raw": "data/tiny.zarr/raw"}]), "'data.source[1].weight' is 0"),
    case("train", "val-table-without-labels",
         train_tables(source=[source_at((1.0, 1.0, 1.0), "a")], val=[{"raw": "data/tiny.zarr/raw"}]),
         "'data.val[0].labels' is empty"),
    case("train", "source-table-unknown-key",
         train_tables(source=[{"raw": "data/tiny.zarr/raw", "label": "data/tiny.zarr/labels"}]),
         "'data.source[0].label'", "did you mean 'labels'"),
    case("train", "no-source-volume", train_tables(target=[{"raw": "data/tiny.zarr/raw"}]),
         "[[data.source]]", "empty"),
    case("train", "ignore-label-is-a-class", train_with(data={"ignore_label": 1}),
         "'data.ignore_label' = 1"),
    case("train", "raw-complex", train_data("source_raw", volume((3, 32, 32), np.complex64)),
         "{tmp}/odd.zarr"),
    # recipe
    case("recipe", "recipe-is-a-folder", lambda ctx: ["recipe", ctx.tmp], "{tmp}"),
    case("recipe", "toml-syntax-error", recipe_text("[model\n", verb="recipe"), "{tmp}/recipe.toml"),
    case("recipe", "unknown-section", train_with(verb="recipe", evaluation={"mode": "volume"}),
         "evaluation"),
    case("recipe", "choice-bogus", train_with("--set", "model.norm=bogus", verb="recipe"),
         "'model.norm'", "'bogus'"),
    case("recipe", "set-overlap-1", train_with("--set", "infer.overlap=1.0", verb="recipe"),
         "'infer.overlap'"),
]
