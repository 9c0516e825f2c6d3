"""``masktwins prepare``: write datasets (synthetic, generic stacks, published layouts) as
chunked zarr volumes. Heavy imports happen inside the commands."""

from __future__ import annotations

from pathlib import Path

import typer

from . import cli_options as parse
from .cli_support import user_errors

prepare_app = typer.Typer(no_args_is_help=True, help="Write datasets as chunked zarr volumes.")


@prepare_app.command("synthetic")
@user_errors
def prepare_synthetic_cmd(
    out_dir: Path = typer.Argument(..., help="Folder for source.zarr, target_train.zarr, target_test.zarr."),
    task: str = typer.Option(
        "mito", help="mito (volumes + labels) or synapse (3-D volumes + <name>_points.csv)."),
    dims: int = typer.Option(
        2, help="mito: 2 (stacks of independent sections) or 3 (anisotropic volumes); "
        "synapse is always 3-D (8 nm isotropic)."),
    seed: int = typer.Option(0, help="Seed of the generator."),
    shape: str | None = typer.Option(
        None, help="Volume size Z,Y,X (default: 24,256,256 in 2-D, 48,160,160 in 3-D; "
        "synapse 128,128,128)."),
    test_shape: str | None = typer.Option(
        None, help="Synapse only: size Z,Y,X of target_test (default: --shape); a larger test "
        "volume holds more synapses."),
    overwrite: bool = typer.Option(False, help="Replace existing volumes in OUT_DIR."),
) -> None:
    """Generate a synthetic EM source/target domain pair: mitochondria labels or synapse points.

    \b
    OUT_DIR/{source,target_train,target_test}.zarr/raw   (+ /labels for --task mito)
    OUT_DIR/{source,target_train,target_test}_points.csv (--task synapse)
    OUT_DIR/dataset.json                                 seed, shapes, voxel sizes, styles
    """
    from .prepare.synthetic import prepare_synthetic

    result = prepare_synthetic(out_dir, task=task, dims=dims, seed=seed, overwrite=overwrite,
                               shape=parse.zyx_counts(shape, "--shape"),
                               test_shape=parse.zyx_counts(test_shape, "--test-shape"))
    for name, shape in result.shapes.items():
        if result.points is not None:
            counts = result.points[name]
            what = f"{counts['pre']} pre, {counts['post']} post points"
        else:
            what = f"{100 * result.foreground[name]:.1f}% mitochondria"
        typer.echo(f"{name}: {'x'.join(map(str, shape))} voxels, {what}")
    typer.echo(f"wrote {result.out_dir} (volumes + dataset.json)")


VOXEL_HELP = "Voxel size Z,Y,X in nm (overrides the file metadata or the preset's)."
RESAMPLE_HELP = ("Resample to this voxel size Z,Y,X (nm): raw linearly, labels by nearest neighbour; "
                 "voxels per axis = round(n * source / target).")
OVERWRITE_HELP = "Replace existing output zarr(s)."


def _calibration(voxel_size: str | None, resample_to: str | None) -> tuple:
    """(--voxel-size, --resample-to) as (z, y, x) nm tuples or None."""
    return (parse.zyx_nanometres(voxel_size, "--voxel-size"),
            parse.zyx_nanometres(resample_to, "--resample-to"))


def _echo_prepared(result) -> None:
    """Print a prepare result: one line per zarr (and its notes), then a total."""
    for line in result.lines():
        typer.echo(line)
    typer.echo(f"prepared {len(result.stacks)} zarr group(s) with {result.name}")


@prepare_app.command("stack")
@user_errors
def prepare_stack_cmd(
    out: Path = typer.Argument(..., metavar="OUT.zarr",
                               help="Output zarr group, e.g. data/source.zarr (gets raw, labels)."),
    images: str = typer.Option(
        ..., help="Image slices: a folder of TIFF/PNG slices, a glob 'dir/*.png', a multi-page "
        "TIFF, an HDF5 dataset f.h5:/raw or a zarr array x.zarr/raw."),
    labels: str | None = typer.Option(None, help="Label slices, same kinds of input as --images."),
    label_value: int | None = typer.Option(None, help="Labels equal to this value -> 1, the rest 0."),
    label_map: str | None = typer.Option(
        None, help="Map label values to classes, e.g. '191:1,223:2'; unlisted values -> 0."),
    voxel_size: str | None = typer.Option(None, help=VOXEL_HELP),
    resample_to: str | None = typer.Option(None, help=RESAMPLE_HELP),
    rgb: bool = typer.Option(False, "--rgb", help="Colour images: keep R, G and B as three "
                             "channels, OUT/raw (3, z, y, x) (train with model.in_channels = 3); "
                             "without it colour images are refused unless R = G = B."),
    overwrite: bool = typer.Option(False, help=OVERWRITE_HELP),
) -> None:
    """Write an image stack (and labels) as OUT/raw + OUT/labels, chunked zarr with voxel sizes.

    Slices are ordered by natural sort of their file names (img2 before img10). Without
    --label-value/--label-map the labels must already be class indices 0..15 (255: ignored).
    """
    from .prepare.real import prepare_stack

    _echo_prepared(prepare_stack(out, images, labels, label_value, parse.label_map(label_map),
                                 parse.zyx_nanometres(voxel_size, "--voxel-size"),
                                 parse.zyx_nanometres(resample_to, "--resample-to"), overwrite,
                                 rgb))


@prepare_app.command("vnc3")
@user_errors
def prepare_vnc3_cmd(
    root: Path = typer.Argument(..., metavar="DIR", help="The VNC III folder (holds stack1/, stack2/)."),
    out: Path = typer.Argument(..., metavar="OUT.zarr", help="Output zarr group, e.g. data/vnc3.zarr."),
    stack: str = typer.Option("stack1", help="stack1 (raw + labels) or stack2 (unlabeled, raw only)."),
    voxel_size: str | None = typer.Option(None, help=VOXEL_HELP),
    resample_to: str | None = typer.Option(None, help=RESAMPLE_HELP),
    overwrite: bool = typer.Option(False, help=OVERWRITE_HELP),
) -> None:
    """VNC III (Gerhard et al., ssTEM, 50 x 4.6 x 4.6 nm): mitochondria (label 191) -> 1.

    \b
    DIR/stack1/raw/NN.tif                  20 x 1024 x 1024 uint8 slices
    DIR/stack1/labels/labelsNNNNNNNN.png   merged labels: 191 = mitochondria -> 1
    DIR/stack2/raw/NN.tif                  unlabeled (--stack stack2: raw only)
    """
    from .prepare.real import prepare_preset

    _echo_prepared(prepare_preset("vnc3", root, out, *_calibration(voxel_size, resample_to),
                                  overwrite, stack=stack))


@prepare_app.command("cdeep3m")
@user_errors
def prepare_cdeep3m_cmd(
    root: Path = typer.Argument(..., metavar="DIR", help="The CDeep3M sample folder (mito_testsample)."),
    out_dir: Path = typer.Argument(..., metavar="OUT_DIR",
                                   help="Folder for training.zarr, validation.zarr, testset.zarr."),
    voxel_size: str | None = typer.Option(None, help=VOXEL_HELP + " Unpublished: 1.0 without it."),
    resample_to: str | None = typer.Option(None, help=RESAMPLE_HELP),
    overwrite: bool = typer.Option(False, help=OVERWRITE_HELP),
) -> None:
    """CDeep3M mitochondria sample (SBEM): palette-PNG labels 0/1; pixel size unknown.

    \b
    DIR/training/images/images.NNN.png     -> OUT_DIR/training.zarr (raw)
    DIR/training/labels/mitos_3D.NNN.png   palette PNG 0/1 -> labels
    DIR/validation/images/*.png            -> OUT_DIR/validation.zarr (raw)
    DIR/validation/labels/*.png            -> labels
    DIR/testset/*.png                      -> OUT_DIR/testset.zarr (raw only)
    """
    from .prepare.real import prepare_preset

    _echo_prepared(prepare_preset("cdeep3m", root, out_dir, *_calibration(voxel_size, resample_to),
                                  overwrite))


@prepare_app.command("lucchi")
@user_errors
def prepare_lucchi_cmd(
    root: Path = typer.Argument(..., metavar="DIR", help="The Lucchi (EPFL) or Lucchi++ folder."),
    out_dir: Path = typer.Argument(..., metavar="OUT_DIR", help="Folder for training.zarr and testing.zarr."),
    voxel_size: str | None = typer.Option(None, help=VOXEL_HELP),
    resample_to: str | None = typer.Option(None, help=RESAMPLE_HELP),
    overwrite: bool = typer.Option(False, help=OVERWRITE_HELP),
) -> None:
    """Lucchi / Lucchi++ (FIB-SEM, 5 nm isotropic): labels 255 -> 1.

    \b
    DIR/training.tif, DIR/training_groundtruth.tif   -> OUT_DIR/training.zarr
    DIR/testing.tif,  DIR/testing_groundtruth.tif    -> OUT_DIR/testing.zarr
      (EPFL multi-page TIFFs). Also accepted, per split:
    DIR/training/*.png + DIR/training_groundtruth/*.png         (PNG slices)
    DIR/Train_In/*.png + DIR/Train_Out/*.png, Test_In, Test_Out (Lucchi++)
    """
    from .prepare.real import prepare_preset

    _echo_prepared(prepare_preset("lucchi", root, out_dir, *_calibration(voxel_size, resample_to),
                                  overwrite))


SCALE_HELP = ("Resize every image (bilinear) and label (nearest) by this factor first, e.g. "
              "0.5 for DAFormer's 1024x512 Cityscapes.")
LIMIT_HELP = "Only the first N images (a quick look at a large dataset)."
SIZE_HELP = "Resize every image to WIDTHxHEIGHT (instead of --scale), e.g. 1280x720."


@prepare_app.command("cityscapes")
@user_errors
def prepare_cityscapes_cmd(
    root: Path = typer.Argument(..., metavar="DIR",
                                help="The Cityscapes folder (holds leftImg8bit/, gtFine/)."),
    out: Path = typer.Argument(..., metavar="OUT.zarr", help="Output zarr group, e.g. data/cs_train.zarr."),
    split: str = typer.Option("train", help="train, val or test."),
    scale: float = typer.Option(1.0, help=SCALE_HELP),
    size: str | None = typer.Option(None, metavar="WxH", help=SIZE_HELP),
    limit: int | None = typer.Option(None, min=1, help=LIMIT_HELP),
    overwrite: bool = typer.Option(False, help=OVERWRITE_HELP),
) -> None:
    """Cityscapes: label ids -> the 19 train ids (others 255), one image at a time.

    \b
    DIR/leftImg8bit/<split>/<city>/<name>_leftImg8bit.png
    DIR/gtFine/<split>/<city>/<name>_gtFine_labelIds.png
    -> OUT/raw (3, N, y, x) uint8, OUT/labels (N, y, x) train ids, per-image class pixel counts
    """
    from .prepare.scenes import CITYSCAPES, prepare_scenes

    for line in prepare_scenes(CITYSCAPES, root, out, split, scale, overwrite, limit,
                               parse.image_size(size)).lines():
        typer.echo(line)


@prepare_app.command("synthia")
@user_errors
def prepare_synthia_cmd(
    root: Path = typer.Argument(..., metavar="DIR",
                                help="The SYNTHIA RAND_CITYSCAPES folder (holds RGB/, GT/)."),
    out: Path = typer.Argument(..., metavar="OUT.zarr", help="Output zarr group, e.g. data/synthia.zarr."),
    scale: float = typer.Option(1.0, help=SCALE_HELP),
    size: str | None = typer.Option(None, metavar="WxH", help=SIZE_HELP),
    limit: int | None = typer.Option(None, min=1, help=LIMIT_HELP),
    overwrite: bool = typer.Option(False, help=OVERWRITE_HELP),
) -> None:
    """SYNTHIA RAND_CITYSCAPES: 16-bit label ids (R channel, read at full depth) -> the 19
    Cityscapes train ids (others 255), one image at a time.

    \b
    DIR/RGB/<name>.png
    DIR/GT/LABELS/<name>.png      16-bit RGB, the class id in R
    -> OUT/raw (3, N, y, x) uint8, OUT/labels (N, y, x) train ids, per-image class pixel counts
    """
    from .prepare.scenes import SYNTHIA, prepare_scenes

    for line in prepare_scenes(SYNTHIA, root, out, "train", scale, overwrite, limit,
                               parse.image_size(size)).lines():
        typer.echo(line)


@prepare_app.command("gta5")
@user_errors
def prepare_gta5_cmd(
    root: Path = typer.Argument(..., metavar="DIR", help="The GTA5 folder (holds images/, labels/)."),
    out: Path = typer.Argument(..., metavar="OUT.zarr", help="Output zarr group, e.g. data/gta5.zarr."),
    size: str | None = typer.Option(None, metavar="WxH", help=SIZE_HELP + " GTA5's images differ "
                                    "in size: needed unless they all match (DAFormer: 1280x720)."),
    limit: int | None = typer.Option(None, min=1, help=LIMIT_HELP),
    overwrite: bool = typer.Option(False, help=OVERWRITE_HELP),
) -> None:
    """GTA5: palette label PNGs whose indices are the Cityscapes ids -> the 19 train ids
    (others 255), one image at a time.

    \b
    DIR/images/<name>.png
    DIR/labels/<name>.png
    -> OUT/raw (3, N, y, x) uint8, OUT/labels (N, y, x) train ids, per-image class pixel counts
    """
    from .prepare.scenes import GTA5, prepare_scenes

    for line in prepare_scenes(GTA5, root, out, "train", 1.0, overwrite, limit,
                               parse.image_size(size)).lines():
        typer.echo(line)


@prepare_app.command("mitoem")
@user_errors
def prepare_mitoem_cmd(
    root: Path = typer.Argument(..., metavar="DIR", help="The MitoEM-R or MitoEM-H folder."),
    out_dir: Path = typer.Argument(..., metavar="OUT_DIR",
                                   help="Folder for <tissue>_train.zarr and <tissue>_val.zarr."),
    tissue: str = typer.Option(..., help="rat (MitoEM-R) or human (MitoEM-H): names the outputs."),
    voxel_size: str | None = typer.Option(None, help=VOXEL_HELP),
    resample_to: str | None = typer.Option(None, help=RESAMPLE_HELP),
    overwrite: bool = typer.Option(False, help=OVERWRITE_HELP),
) -> None:
    """MitoEM (multi-beam SEM, 30 x 8 x 8 nm): instance labels, ids > 0 -> 1.

    \b
    DIR/im/im0000.png ... im0999.png     (published: all 1000 slices)
    DIR/mito_train/seg0000.tif ...       instance labels of slices 0-399
    DIR/mito_val/seg0400.tif ...         instance labels of slices 400-499
      (mito-train-v2 / mito-val-v2 also accepted; images picked by slice number)
    or split folders: DIR/{train,val}/im/im*.png + DIR/{train,val}/mito/*.tif|png
    -> OUT_DIR/<tissue>_train.zarr, OUT_DIR/<tissue>_val.zarr
    """
    from .prepare.real import prepare_preset

    _echo_prepared(prepare_preset("mitoem", root, out_dir, *_calibration(voxel_size, resample_to),
                                  overwrite, tissue=tissue))


@prepare_app.command("waspsyn")
@user_errors
def prepare_waspsyn_cmd(
    root: Path = typer.Argument(..., metavar="DIR", help="A WASP-SYN folder (volume folders or files)."),
    out_dir: Path = typer.Argument(
        ..., metavar="OUT_DIR", help="Folder for <name>.zarr + <name>_points.csv."),
    volume: list[str] = typer.Option(
        [], "--volume", help="Prepare only this volume (its folder name; repeatable)."),
    as_name: str | None = typer.Option(
        None, "--as", metavar="NAME", help="Write the one selected volume as NAME.zarr + "
        "NAME_points.csv (e.g. target0 ... target3: names recipes/waspsyn.toml reads)."),
    unlabeled: bool = typer.Option(
        False, help="Accept images without a label file (raw only), e.g. the target volume."),
    voxel_size: str | None = typer.Option(None, help="Voxel size Z,Y,X in nm (default 8,8,8)."),
    overwrite: bool = typer.Option(False, help="Replace existing outputs in OUT_DIR."),
) -> None:
    """WASP-SYN (FIB-SEM, 8 nm isotropic): image HDF5 + point labels -> zarr + point tables.

    \b
    DIR/<volume>/img_zyx_<z0>-<z1>_<y0>-<y1>_<x0>-<x1>.h5    dataset 'main' (z, y, x)
    DIR/<volume>/syns_zyx_<z0>-<z1>_<y0>-<y1>_<x0>-<x1>.h5   'pre' N x 3 (z, y, x), 'post' M x 4
                                          (pre row, z, y, x); global coordinates
      (files may also lie in DIR itself). Image and labels pair up by the crop offset in their
      names (the range starts z0, y0, x0), which is subtracted from the label coordinates.
    -> OUT_DIR/<volume>.zarr/raw (chunks 64^3, voxel 8 nm, offset in nm)
       OUT_DIR/<volume>_points.csv (kind,id,pre_id,z,y,x in local voxels)
    e.g. for recipes/waspsyn.toml:
      masktwins prepare waspsyn wasp data/waspsyn --volume train_sample3_vol0 ... (vol0-vol4)
      masktwins prepare waspsyn target_chunks/0 data/waspsyn --as target0 --unlabeled
    """
    from .prepare.waspsyn import prepare_waspsyn

    result = prepare_waspsyn(root, out_dir, list(volume), as_name, unlabeled,
                             parse.zyx_nanometres(voxel_size, "--voxel-size"), overwrite)
    for line in result.lines():
        typer.echo(line)
    typer.echo(f"prepared {len(result.volumes)} WASP-SYN volume(s) in {result.out_dir}")
