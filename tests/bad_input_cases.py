"""The bad-input catalogue's shared parts (see test_bad_input_catalogue.py): the verbs, the
case context and row builder, and the damaged or odd inputs more than one verb is given."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
import torch
import zarr
from cli_helpers import write
from conftest import write_tiny_em_volumes, write_tiny_recipe

from masktwins_cli.io.volumes import write_volume

VERBS = ("prepare synthetic", "prepare stack", "prepare vnc3", "prepare cdeep3m", "prepare lucchi",
         "prepare mitoem", "prepare waspsyn", "train", "infer", "detect", "evaluate",
         "evaluate --task synapse", "curves", "recipe", "demo")
KEPT = ".pred.zarr.probabilities.partial"  # infer keeps finished blocks for a rerun
NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")


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


def stack(images: Callable[[Ctx], object], *options: str, labels=None):
    def setup(ctx: Ctx):
        argv = ["prepare", "stack", ctx.out("out.zarr"), "--images", images(ctx)]
        return argv + (["--labels", labels(ctx)] if labels else []) + list(options)
    return setup


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


def infer(*options: str, input_: Callable[[Ctx], object] | None = None,
          checkpoint: Callable[[Ctx], Path] | None = None, output: str = "pred.zarr/probabilities",
          device: bool = True):
    def setup(ctx: Ctx):
        image = input_(ctx) if input_ else ctx.image()
        ckpt = checkpoint(ctx) if checkpoint else ctx.checkpoint()
        extra = ["--device", "cpu"] if device else []
        return ["infer", ckpt, image, "-o", ctx.out(output), *extra, *options]
    return setup


def colour_tiff(ctx: Ctx) -> str:
    plane = np.zeros((32, 32, 3), np.uint8)
    plane[..., 0] = 200
    tifffile.imwrite(ctx.tmp / "colour.tif", plane, photometric="rgb")
    return f"{ctx.tmp}/colour.tif"


def table(text: str | bytes, name: str = "pred.csv"):
    def make(ctx: Ctx) -> Path:
        path = ctx.tmp / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return path
    return make
