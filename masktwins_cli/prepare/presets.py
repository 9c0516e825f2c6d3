"""Named layouts of published EM datasets for ``masktwins prepare <preset>``.

Each preset turns a dataset folder, as its authors distribute it, into :class:`StackJob` s (one
per output zarr): where the image and label slices are, how the labels are decoded and the voxel
size (z, y, x nm). Each ``*_jobs`` docstring gives the expected tree (also shown by the command's
``--help`` and in the README). Only names are looked at here; pixels are read by :mod:`.real`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import MaskTwinsError
from .stacks import LabelDecoder

Spec = str | tuple[Path, ...]

VNC3_VOXEL = (50.0, 4.6, 4.6)
LUCCHI_VOXEL = (5.0, 5.0, 5.0)
MITOEM_VOXEL = (30.0, 8.0, 8.0)
VNC3_MITO = 191  # value of mitochondria in VNC III stack1/labels (merged label images)


@dataclass(frozen=True)
class StackJob:
    """One output zarr: ``out`` (.../name.zarr), its image and optional label slices (a spec for
    :func:`.stacks.resolve_stack`), the label decoder and, when known, the voxel size (z, y, x
    nm) with where it comes from; ``resample_to`` (nm) asks for resampling; ``rgb`` reads colour
    slices as three channels."""

    out: Path
    images: Spec
    labels: Spec | None = None
    decoder: LabelDecoder = LabelDecoder()
    voxel_size: tuple[float, float, float] | None = None
    voxel_from: str = ""
    resample_to: tuple[float, float, float] | None = None
    rgb: bool = False  # colour slices -> (3, z, y, x)


def _need_dir(path: Path, preset: str) -> Path:
    """``path`` if it is a folder; else an error pointing at the preset's help."""
    if not path.is_dir():
        raise MaskTwinsError(f"{path}: folder not found; expected the {preset} layout "
                             f"(see masktwins prepare {preset} --help)")
    return path


def vnc3_jobs(root: Path, out: Path, stack: str = "stack1") -> list[StackJob]:
    """VNC III: ``stack1`` (raw + labels, mitochondria = 191) or ``stack2`` (raw only) -> ``out``.

    ``root/stack1/raw/NN.tif`` (20 x 1024 x 1024 uint8), ``root/stack1/labels/labelsNNNNNNNN.png``
    (merged labels), ``root/stack2/raw/NN.tif``; 50 x 4.6 x 4.6 nm.
    """
    if stack not in ("stack1", "stack2"):
        raise MaskTwinsError(f"--stack {stack!r}: expected stack1 (labeled) or stack2 (unlabeled)")
    folder = _need_dir(_need_dir(root, "vnc3") / stack, "vnc3")
    labels = str(folder / "labels" / "*.png") if stack == "stack1" else None
    return [StackJob(out, str(folder / "raw" / "*.tif"), labels, LabelDecoder(value=VNC3_MITO),
                     VNC3_VOXEL, "preset vnc3")]  # fmt: skip


def cdeep3m_jobs(root: Path, out_dir: Path) -> list[StackJob]:
    """CDeep3M mito_testsample: training and validation (palette 0/1 labels), testset raw only.

    ``root/{training,validation}/images/images.NNN.png`` + ``.../labels/mitos_3D.NNN.png`` and
    ``root/testset/images.NNN.png`` -> ``out_dir/{training,validation,testset}.zarr``.
    """
    _need_dir(root, "cdeep3m")
    jobs = [StackJob(out_dir / f"{split}.zarr", str(root / split / "images"),
                     str(root / split / "labels")) for split in ("training", "validation")]
    return jobs + [StackJob(out_dir / "testset.zarr", str(root / "testset"))]


def _lucchi_split(root: Path, split: str) -> tuple[str, str]:
    """(images, labels) specs of one Lucchi split in whichever accepted variant is present."""
    plus = {"training": "Train", "testing": "Test"}[split]
    variants = [(root / f"{split}.tif", root / f"{split}_groundtruth.tif"),
                (root / split, root / f"{split}_groundtruth"),
                (root / f"{plus}_In", root / f"{plus}_Out")]  # fmt: skip
    for images, labels in variants:
        if images.exists():
            if not labels.exists():
                raise MaskTwinsError(f"{images} has no ground truth: {labels} not found")
            return str(images), str(labels)
    names = ", ".join(str(images.relative_to(root)) for images, _ in variants)
    raise MaskTwinsError(f"{root}: no Lucchi {split} images ({names}); "
                         "see masktwins prepare lucchi --help")


def lucchi_jobs(root: Path, out_dir: Path) -> list[StackJob]:
    """Lucchi / Lucchi++: training and testing volumes, labels 255 -> 1, 5 nm isotropic.

    Per split, the first present of ``root/training.tif`` + ``training_groundtruth.tif`` (EPFL),
    ``root/training/`` + ``training_groundtruth/`` (PNG slices), ``root/Train_In/`` +
    ``Train_Out/`` (Lucchi++); same for testing / Test -> ``out_dir/{training,testing}.zarr``.
    """
    _need_dir(root, "lucchi")
    jobs = []
    for split in ("training", "testing"):
        images, labels = _lucchi_split(root, split)
        jobs.append(StackJob(out_dir / f"{split}.zarr", images, labels, LabelDecoder(value=255),
                             LUCCHI_VOXEL, "preset lucchi"))  # fmt: skip
    return jobs


def _numbered(folder: Path, pattern: str) -> dict[int, Path]:
    """{slice number: file} for files in ``folder`` matching ``pattern`` (one number group)."""
    regex = re.compile(pattern, re.IGNORECASE)
    found = {}
    for path in folder.iterdir() if folder.is_dir() else ():
        match = regex.fullmatch(path.name)
        if match:
            found[int(match.group(1))] = path
    return found


def _mitoem_published(root: Path, split: str) -> tuple[Spec, Spec]:
    """Images picked from DIR/im by the slice numbers of DIR/mito_<split>/seg<N>.tif."""
    names = (f"mito_{split}", f"mito-{split}-v2", f"mito_{split}_v2")
    label_dir = next((root / n for n in names if (root / n).is_dir()), None)
    if label_dir is None:
        raise MaskTwinsError(f"{root}: no MitoEM {split} labels ({', '.join(names)}); "
                             "see masktwins prepare mitoem --help")
    labels = _numbered(label_dir, r"seg(\d+)\.(tif|tiff|png)")
    images = _numbered(root / "im", r"im(\d+)\.(png|tif|tiff)")
    if not labels:
        raise MaskTwinsError(f"{label_dir}: no seg<N>.tif label slices in this folder")
    missing = sorted(set(labels) - set(images))
    if missing:
        raise MaskTwinsError(f"{labels[missing[0]]} has no image slice im{missing[0]:04d}.png in "
                             f"{root / 'im'} ({len(missing)} of {len(labels)} missing)")
    order = sorted(labels)
    return tuple(images[n] for n in order), tuple(labels[n] for n in order)


def mitoem_jobs(root: Path, out_dir: Path, tissue: str = "rat") -> list[StackJob]:
    """MitoEM-R/-H: train and val volumes, instance ids > 0 -> 1, 30 x 8 x 8 nm.

    ``root/{train,val}/im/im*.png`` + ``root/{train,val}/mito/*`` when present, else the published
    ``root/im/imNNNN.png`` with ``root/mito_{train,val}/segNNNN.tif`` (or ``mito-{train,val}-v2``)
    -> ``out_dir/<tissue>_{train,val}.zarr``.
    """
    if tissue not in ("rat", "human"):
        raise MaskTwinsError(f"--tissue {tissue!r}: expected rat (MitoEM-R) or human (MitoEM-H)")
    _need_dir(root, "mitoem")
    jobs = []
    for split in ("train", "val"):
        if (root / split / "im").is_dir():
            images: Spec = str(root / split / "im" / "im*.png")
            labels: Spec = str(root / split / "mito")
        else:
            images, labels = _mitoem_published(root, split)
        jobs.append(StackJob(out_dir / f"{tissue}_{split}.zarr", images, labels,
                             LabelDecoder(nonzero=True), MITOEM_VOXEL, "preset mitoem"))  # fmt: skip
    return jobs


PRESETS = {"vnc3": vnc3_jobs, "cdeep3m": cdeep3m_jobs, "lucchi": lucchi_jobs, "mitoem": mitoem_jobs}


def preset_jobs(name: str, root: str | Path, out: str | Path, voxel_size: Sequence[float] | None = None,
                resample_to: Sequence[float] | None = None, **options: str) -> list[StackJob]:  # fmt: skip
    """The jobs of preset ``name``; ``voxel_size`` (nm) overrides the preset's, ``resample_to``
    (nm) is applied to every output; ``options`` are the preset's own (stack, tissue)."""
    if name not in PRESETS:
        raise MaskTwinsError(f"unknown preset {name!r}; known: {', '.join(sorted(PRESETS))}")
    jobs = PRESETS[name](Path(root), Path(out), **options)
    voxel = tuple(float(v) for v in voxel_size) if voxel_size else None
    target = tuple(float(v) for v in resample_to) if resample_to else None
    return [StackJob(job.out, job.images, job.labels, job.decoder,
                     voxel or job.voxel_size, "--voxel-size" if voxel else job.voxel_from, target)
            for job in jobs]  # fmt: skip
