"""One table of bad input over every verb of the CLI: each row is refused the same way.

For every case: exit code 2, no traceback, exactly one stderr line ``masktwins: error: ...``
naming the offending file, option or recipe key; and "nothing written, nothing changed": the
case's whole folder (inputs, existing outputs, the checkpoint copy) is byte-identical afterwards
(sha256 of every file, empty folders included), and nothing appears at the output path.

A row is ``case(verb, id, setup, *expected)``: ``setup(ctx)`` builds the inputs inside the case's
own ``tmp_path`` (the working directory while the command runs) and returns the argv; the
expected substrings may hold ``{tmp}``, the case's folder. No case trains: infer cases use a
copy of the session's tiny trained checkpoint.

The command runs in-process (CliRunner), with log records and warnings printed on stderr as in
a ``masktwins`` process (pytest would capture them), so "exactly one stderr line" holds for the
real command line too.

The only thing a refused command may leave is the hidden staging folder of an ``infer`` that met
damage in its input after finishing other blocks (``kept``): it keeps them for a rerun, and its
error line says so. A case that reveals a bug may be marked ``xfail(strict=True)`` with what
happens instead (none is now).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import shutil
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
import torch
import zarr
from cli_helpers import assert_user_error, invoke, snapshot, write
from conftest import write_tiny_em_volumes, write_tiny_recipe
from PIL import Image

from masktwins_cli.io.volumes import write_volume

VERBS = ("prepare synthetic", "prepare stack", "prepare vnc3", "prepare cdeep3m", "prepare lucchi",
         "prepare mitoem", "prepare waspsyn", "train", "infer", "detect", "evaluate",
         "evaluate --task synapse", "curves", "recipe", "demo")
KEPT = ".pred.zarr.probabilities.partial"  # infer keeps finished blocks for a rerun
TIFF_LOG = ("a truncated TIFF: tifffile logs '<tifffile.TiffPages @8> invalid page offset N' "
            "(a logging warning, printed on stderr by a masktwins process) before the error "
            "line: two stderr lines")
NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")


# ------------------------------------------------------------------------------- the context
@dataclass
class Ctx:
    """What a setup function gets: the case's folder and the session's trained run."""

    tmp: Path
    trained_run: Path
    outputs: list[Path] = field(default_factory=list)

    def out(self, relative: str) -> Path:
        """The output path of the command (must not appear, or stay as it was)."""
        path = self.tmp / relative.split(":")[0]
        self.outputs.append(path)
        return self.tmp / relative

    def checkpoint(self, name: str = "last.pt") -> Path:
        """A copy of the tiny trained checkpoint in the case's folder."""
        path = self.tmp / name
        shutil.copyfile(self.trained_run / "last.pt", path)
        return path

    def image(self, name: str = "in.zarr/raw", shape=(2, 32, 32), dtype=np.float32,
              chunks=None) -> str:
        """A random float image written by masktwins (every chunk stored)."""
        data = np.random.default_rng(0).random(shape).astype(dtype)
        write_volume(f"{self.tmp}/{name}", data, (1.0,) * min(len(shape), 3), chunks=chunks)
        return f"{self.tmp}/{name}"

    def recipe(self, name: str = "recipe.toml", **sections) -> Path:
        volumes = write_tiny_em_volumes(self.tmp / "data")
        return write_tiny_recipe(self.tmp, volumes, name, **sections)


@dataclass(frozen=True)
class Case:
    verb: str
    setup: Callable[[Ctx], Sequence[object]]
    expected: tuple[str, ...]
    kept: str = ""
    """A hidden folder the command may leave, which its error line must name: infer keeps the
    blocks it finished before it met damage in the input, for a rerun."""


def case(verb: str, name: str, setup: Callable[[Ctx], Sequence[object]], *expected: str,
         xfail: str | None = None, marks: Sequence = (), kept: str = ""):
    """One row: ``verb`` (e.g. 'prepare stack'), a readable id, the setup, expected substrings."""
    assert verb in VERBS, verb
    marks = [*marks, *([pytest.mark.xfail(strict=True, reason=xfail)] if xfail else [])]
    prefix = verb.replace(" --task ", "-").replace(" ", "-")
    return pytest.param(Case(verb, setup, expected, kept), id=f"{prefix}/{name}", marks=marks)


# -------------------------------------------------------------------------- damaged files
def rng_bytes(n: int = 1000, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).bytes(n)


def chunk_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "zarr.json")


def garbage_zarr_metadata(ctx: Ctx) -> str:
    uri = ctx.image("bad.zarr/raw")
    (ctx.tmp / "bad.zarr/raw/zarr.json").write_text("{garbage")
    return uri


def garbage_zarr_chunk(ctx: Ctx, shape=(2, 32, 32)) -> str:
    uri = ctx.image("bad.zarr/raw", shape)
    chunk_files(ctx.tmp / "bad.zarr/raw")[-1].write_bytes(b"\x00garbage" * 8)
    return uri


def missing_zarr_chunk(ctx: Ctx, labels: bool = False) -> str:
    """A volume written whole by masktwins (every chunk stored) with its last chunk lost."""
    if labels:
        uri = f"{ctx.tmp}/lost.zarr/raw"
        write_volume(uri, np.zeros((2, 32, 32), np.uint8), (1.0, 1.0, 1.0), chunks=(1, 32, 32))
    else:
        uri = ctx.image("lost.zarr/raw", chunks=(1, 32, 32))
    array = zarr.open_array(f"{ctx.tmp}/lost.zarr", path="raw", mode="r")
    (ctx.tmp / "lost.zarr/raw" / array.metadata.encode_chunk_key((1, 0, 0))).unlink()
    return uri


def not_hdf5(ctx: Ctx) -> str:
    (ctx.tmp / "bad.h5").write_bytes(b"this is not HDF5\n" * 10)
    return f"{ctx.tmp}/bad.h5:/raw"


def truncated_tiff(ctx: Ctx, shape=(3, 12, 10)) -> Path:
    path = ctx.tmp / "stack.tif"
    tifffile.imwrite(path, np.random.default_rng(6).integers(0, 255, shape, np.uint8),
                     photometric="minisblack")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def png_folder(ctx: Ctx, name: str = "raw", depth: int = 3, shape=(12, 10)) -> Path:
    folder = ctx.tmp / name
    folder.mkdir(parents=True, exist_ok=True)
    for z in range(depth):
        Image.fromarray(np.full(shape, 10 * z + 5, np.uint8)).save(folder / f"s{z}.png")
    return folder


# ----------------------------------------------------------------------------- prepare
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


def stack(images: Callable[[Ctx], object], *options: str, labels=None):
    def setup(ctx: Ctx):
        argv = ["prepare", "stack", ctx.out("out.zarr"), "--images", images(ctx)]
        return argv + (["--labels", labels(ctx)] if labels else []) + list(options)
    return setup


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


def volume(shape, dtype=np.float32, name="odd.zarr/raw"):
    def make(ctx: Ctx) -> str:
        data = np.random.default_rng(1).random(shape)
        if np.dtype(dtype).kind == "c":  # masktwins refuses to write it: zarr directly
            return complex_zarr(ctx.tmp, name, (data + 1j * data).astype(dtype))
        return write(f"{ctx.tmp}/{name}", data.astype(dtype))
    return make


def complex_zarr(folder: Path, name: str, data: np.ndarray) -> str:
    """A zarr array of complex numbers (not something masktwins writes)."""
    container, path = name.split(".zarr/")
    array = zarr.create_array(f"{folder}/{container}.zarr", name=path, shape=data.shape,
                              dtype=data.dtype, chunks=data.shape)
    array[...] = data
    return f"{folder}/{name}"


def string_hdf5(ctx: Ctx) -> str:
    with h5py.File(ctx.tmp / "text.h5", "w") as h5file:
        h5file["raw"] = np.full((2, 32, 32), b"ab", dtype="S2")
    return f"{ctx.tmp}/text.h5:/raw"


def missing_dataset_hdf5(ctx: Ctx) -> str:
    with h5py.File(ctx.tmp / "d.h5", "w") as h5file:
        h5file["other"] = np.zeros((2, 8, 8), np.uint8)
    return f"{ctx.tmp}/d.h5:/raw"


def nan_volume(name: str = "nan.zarr/raw"):
    def make(ctx: Ctx) -> str:
        image = np.random.default_rng(2).random((2, 32, 32)).astype(np.float32)
        image[1, 3, 3] = np.nan
        return write(f"{ctx.tmp}/{name}", image)
    return make


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


# ------------------------------------------------------------------------------- train/recipe
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


def train_data(key: str, make: Callable[[Ctx], str]):
    def setup(ctx: Ctx):
        ctx.out("run")
        recipe = ctx.recipe(data={key: make(ctx)})
        return ["train", recipe]
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


# ----------------------------------------------------------------------------------- infer
def infer(*options: str, input_: Callable[[Ctx], object] | None = None,
          checkpoint: Callable[[Ctx], Path] | None = None, output: str = "pred.zarr/probabilities",
          device: bool = True):
    def setup(ctx: Ctx):
        image = input_(ctx) if input_ else ctx.image()
        ckpt = checkpoint(ctx) if checkpoint else ctx.checkpoint()
        extra = ["--device", "cpu"] if device else []
        return ["infer", ckpt, image, "-o", ctx.out(output), *extra, *options]
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


def colour_tiff(ctx: Ctx) -> str:
    plane = np.zeros((32, 32, 3), np.uint8)
    plane[..., 0] = 200
    tifffile.imwrite(ctx.tmp / "colour.tif", plane, photometric="rgb")
    return f"{ctx.tmp}/colour.tif"


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


# ---------------------------------------------------------------------------------- detect
def detect(array: np.ndarray | None, *options: str, output: str = "det.csv"):
    def setup(ctx: Ctx):
        uri = f"{ctx.tmp}/probs.zarr/p"
        if array is not None and array.dtype.kind == "c":
            complex_zarr(ctx.tmp, "probs.zarr/p", array)
        elif array is not None:
            write(uri, array)
        return ["detect", uri, "-o", ctx.out(output), *options]
    return setup


GOOD_PROBS = np.zeros((2, 4, 8, 8), np.float32)


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


# -------------------------------------------------------------------------------- evaluate
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


TABLE = "kind,id,pre_id,z,y,x\npre,0,,1,2,3\npost,0,0,1,2,4\n"


def table(text: str | bytes, name: str = "pred.csv"):
    def make(ctx: Ctx) -> Path:
        path = ctx.tmp / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return path
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


# ---------------------------------------------------------------------------------- curves
LOG = '{"step": 1, "loss": 0.5, "lr": 0.001}\n{"step": 2, "loss": 0.4, "lr": 0.001}\n'


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


# ------------------------------------------------------------------------------------ demo
def demo(*options: str):
    def setup(ctx: Ctx):
        return ["demo", ctx.out("demo"), *options]
    return setup


def demo_existing(ctx: Ctx):
    (ctx.out("demo") / "seed0").mkdir(parents=True)
    (ctx.tmp / "demo" / "seed0" / "results.json").write_text("{}\n")
    return ["demo", ctx.tmp / "demo", "--iterations", "1"]


# ----------------------------------------------------------------------------------- table
CASES = [
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
    case("train", "raw-4d", train_data("source_raw", volume((1, 3, 32, 32))), "{tmp}/odd.zarr",
         "(1, 3, 32, 32)"),
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
    case("infer", "input-4d", infer(input_=volume((1, 2, 32, 32))), "{tmp}/odd.zarr"),
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


def _show_on_stderr(message, category, filename, lineno, file=None, line=None) -> None:
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


@contextlib.contextmanager
def printed_as_in_a_process():
    """Log records and warnings reach stderr as they do in a ``masktwins`` process, instead of
    being captured by pytest: no logging handler configured (``logging.lastResort`` prints
    WARNING and above) and Python's default warning filters, shown on stderr."""
    root = logging.getLogger()
    handlers, root.handlers = root.handlers, []
    try:
        with warnings.catch_warnings():
            warnings.resetwarnings()
            warnings.simplefilter("default")
            for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning,
                             ResourceWarning):
                warnings.simplefilter("ignore", category)
            warnings.showwarning = _show_on_stderr
            yield
    finally:
        root.handlers = handlers


def hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file below ``folder`` (and '' for each empty folder)."""
    return {path: hashlib.sha256(data).hexdigest() if not path.endswith("/") else ""
            for path, data in snapshot(folder).items()}


@pytest.mark.parametrize("row", CASES)
def test_bad_input_is_refused_and_nothing_changes(row: Case, tmp_path, tiny_trained_run,
                                                  monkeypatch):
    case_dir = tmp_path / "case"
    case_dir.mkdir()
    monkeypatch.chdir(case_dir)
    ctx = Ctx(case_dir, tiny_trained_run)
    argv = [str(a) for a in row.setup(ctx)]
    assert argv[: len(row.verb.split())] == row.verb.split(), (argv, row.verb)
    before = hashes(case_dir)
    existed = {path: path.exists() for path in ctx.outputs}
    trained = hashes(tiny_trained_run)

    with printed_as_in_a_process():
        result = invoke(*argv)

    expected = [*row.expected, *([row.kept, "kept"] if row.kept else [])]
    assert_user_error(result, *(text.format(tmp=case_dir) for text in expected))
    after = {path: digest for path, digest in hashes(case_dir).items()
             if not (row.kept and str(path).startswith(row.kept))}
    changed = sorted(p for p in before.keys() & after.keys() if before[p] != after[p])
    assert (sorted(after.keys() - before.keys()), sorted(before.keys() - after.keys()),
            changed) == ([], [], []), "(written, removed, changed)"
    for path, was_there in existed.items():
        assert path.exists() == was_there, path
    assert hashes(tiny_trained_run) == trained
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case"]


def test_the_catalogue_covers_every_verb():
    rows = [param.values[0] for param in CASES]
    ids = [param.id for param in CASES]
    assert len(rows) >= 45
    assert len(set(ids)) == len(ids)
    assert {row.verb for row in rows} == set(VERBS)
