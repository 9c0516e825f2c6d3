"""The ``masktwins`` command line: parse options, call one library function, print the result.

Heavy imports (torch, zarr, MONAI) happen inside the verbs so ``masktwins --help`` is instant.
User errors (:class:`MaskTwinsError`, unreadable files) are printed as one line on stderr with
exit code 2; no traceback.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import typer

from .errors import MaskTwinsError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="MaskTwins: complementary-mask domain adaptation for EM segmentation.")
prepare_app = typer.Typer(no_args_is_help=True, help="Write datasets as chunked zarr volumes.")
app.add_typer(prepare_app, name="prepare")

SET_HELP = "Override a recipe value, e.g. --set train.lr=1e-4 (repeatable)."


def fail(message: str, code: int = 2) -> None:
    """Print one error line and exit."""
    typer.echo(f"masktwins: error: {message}", err=True)
    raise typer.Exit(code)


def user_errors(func):
    """Turn user errors into one line on stderr and a non-zero exit code."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except MaskTwinsError as err:
            fail(str(err).replace("\n", " "), err.exit_code)
        except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as err:
            fail(f"{err.filename or ''}: {err.strerror or err}")
        except OSError as err:
            fail(f"{getattr(err, 'filename', None) or 'I/O'}: {err.strerror or err}")
        except KeyboardInterrupt:
            fail("interrupted", 130)

    return wrapper


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
    overwrite: bool = typer.Option(False, help="Replace existing volumes in OUT_DIR."),
) -> None:
    """Generate a synthetic EM source/target domain pair: mitochondria labels or synapse points.

    \b
    OUT_DIR/{source,target_train,target_test}.zarr/raw   (+ /labels for --task mito)
    OUT_DIR/{source,target_train,target_test}_points.csv (--task synapse)
    OUT_DIR/dataset.json                                 seed, shapes, voxel sizes, styles
    """
    from .prepare.synthetic import parse_shape, prepare_synthetic

    result = prepare_synthetic(out_dir, task=task, dims=dims, seed=seed, overwrite=overwrite,
                               shape=parse_shape(shape) if shape else None)
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
    overwrite: bool = typer.Option(False, help=OVERWRITE_HELP),
) -> None:
    """Write an image stack (and labels) as OUT/raw + OUT/labels, chunked zarr with voxel sizes.

    Slices are ordered by natural sort of their file names (img2 before img10). Without
    --label-value/--label-map the labels must already be class indices 0..15.
    """
    from .prepare.real import prepare_stack

    _echo_prepared(prepare_stack(out, images, labels, label_value, label_map, voxel_size,
                                 resample_to, overwrite))


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

    _echo_prepared(prepare_preset("vnc3", root, out, voxel_size, resample_to, overwrite, stack=stack))


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

    _echo_prepared(prepare_preset("cdeep3m", root, out_dir, voxel_size, resample_to, overwrite))


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

    _echo_prepared(prepare_preset("lucchi", root, out_dir, voxel_size, resample_to, overwrite))


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

    _echo_prepared(prepare_preset("mitoem", root, out_dir, voxel_size, resample_to, overwrite,
                                  tissue=tissue))


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
        "NAME_points.csv (source / target: the names recipes/waspsyn.toml reads)."),
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
      masktwins prepare waspsyn wasp/train_sample3_vol0 data/waspsyn --as source
      masktwins prepare waspsyn wasp/test_sample1_vol0 data/waspsyn --as target --unlabeled
    """
    from .prepare.real import parse_triple
    from .prepare.waspsyn import prepare_waspsyn

    result = prepare_waspsyn(root, out_dir, list(volume), as_name, unlabeled,
                             parse_triple(voxel_size, "--voxel-size"), overwrite)
    for line in result.lines():
        typer.echo(line)
    typer.echo(f"prepared {len(result.volumes)} WASP-SYN volume(s) in {result.out_dir}")


@app.command()
@user_errors
def train(
    recipe: Path = typer.Argument(..., help="TOML recipe, e.g. recipes/synthetic_mito2d.toml."),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    resume: bool = typer.Option(False, help="Continue from OUTPUT_DIR/last.pt where it stopped."),
    output_dir: Path | None = typer.Option(None, help="Run folder (overrides train.output_dir)."),
) -> None:
    """Train a model (NoAdapt, MaskTwins or an ablation) as the recipe says.

    On several GPUs: torchrun --nproc_per_node=N -m masktwins_cli.cli train RECIPE (rank 0 prints
    and writes; see the README).
    """
    from .config.recipe import load_recipe

    overrides = list(set_) + ([f"train.output_dir={json.dumps(str(output_dir))}"] if output_dir else [])
    resolved = load_recipe(recipe, overrides)  # before the heavy imports: bad recipes fail fast
    from .progress import TrainProgress
    from .training.distributed import is_main_process
    from .training.run import train as run_training

    if not is_main_process():  # a torchrun worker with RANK > 0: train quietly
        run_training(resolved, resume=resume)
        return
    with TrainProgress(resolved.train.iterations, resolved.train.log_every) as progress:
        result = run_training(resolved, resume=resume, report=progress.update)
    final = {k: v for k, v in result.final_record.items() if k.startswith(("loss", "val_"))}
    typer.echo(f"trained {result.iterations} iterations on {result.device} in "
               f"{result.seconds:.0f} s; " + ", ".join(f"{k}={v:.4g}" for k, v in final.items()
                                                      if v is not None))
    typer.echo(f"checkpoint: {result.last_checkpoint}"
               + (f" (best: {result.best_checkpoint})" if result.best_checkpoint else ""))


@app.command()
@user_errors
def infer(
    checkpoint: Path = typer.Argument(..., help="A checkpoint written by masktwins train (last.pt)."),
    input_volume: str = typer.Argument(
        ..., metavar="INPUT", help="Image volume URI: x.zarr/raw, f.h5:/raw, f.tif."),
    output: str = typer.Option(
        ..., "-o", "--output", help="Output URI, e.g. pred.zarr/probabilities."),
    set_: list[str] = typer.Option(
        [], "--set", help="Override [infer] values, e.g. --set infer.overlap=0.5."),
    weights: str = typer.Option(
        "student", help="student (default, as evaluated in the paper) or teacher (EMA)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    overwrite: bool = typer.Option(False, help="Replace an existing output."),
    shard: str | None = typer.Option(
        None, metavar="i/N", help="Predict only shard i of N (1-based): blocks i-1, i-1+N, ... "
        "Shards may run at the same time; the last to finish writes the output."),
    restart: bool = typer.Option(
        False, help="Discard the blocks an interrupted run left (never while shards run)."),
    workers: int | None = typer.Option(
        None, help="Predict with N worker processes pulling blocks from a daisy "
        "scheduler (each loads the model once; CPU workers get cores/N torch threads)."),
    worker_command: str | None = typer.Option(
        None, metavar="TEMPLATE", help="Start each of the --workers with this shell command, "
        "{cmd} standing for the worker command; it must block until the worker exits, e.g. "
        "'srun -N1 -n1 --gpus=1 {cmd}'."),
    host: str | None = typer.Option(
        None, help="Address the --workers connect to (default: 127.0.0.1, or this machine's "
        "detected address with --worker-command; also DAISY_HOST)."),
) -> None:
    """Predict foreground probabilities over a volume with sliding windows, block by block.

    Finished blocks are recorded in a hidden folder next to the output (.NAME.zarr.DATASET.partial).
    The output appears only when every block is written.
    After a crash or kill -9, rerun the same command: recorded blocks are skipped, and the result
    equals an uninterrupted run. A rerun with another checkpoint, input or infer settings is
    refused until --restart discards the recorded blocks.

    \b
    SLURM array job (1-based shards; each task loads the model once):
      #SBATCH --array=1-8
      masktwins infer last.pt raw.zarr/raw -o pred.zarr/probabilities \\
          --shard ${SLURM_ARRAY_TASK_ID}/8
    A task that ends while others run exits 0 and says how many blocks remain.
    The last task to finish moves the output into place.
    If a task failed, resubmit it (or run once without --shard) to finish.

    \b
    Several workers (daisy scheduler; blocks already recorded are skipped):
      masktwins infer last.pt raw.zarr/raw -o pred.zarr/probabilities --workers 4
    On SLURM, from a job holding 4 tasks (each worker started with srun):
      masktwins infer last.pt raw.zarr/raw -o pred.zarr/probabilities \\
          --workers 4 --worker-command 'srun -N1 -n1 --exact {cmd}'
    """
    if workers is None and (worker_command is not None or host is not None):
        raise MaskTwinsError("--worker-command and --host need --workers N")
    if workers is not None:
        if shard is not None:
            raise MaskTwinsError("--shard and --workers exclude each other: shards are "
                                 "independent jobs, --workers shares the blocks through a scheduler")
        from .inference.distributed import check_options

        check_options(workers, worker_command)  # before any heavy import
        from .inference.distributed import infer_with_daisy

        result = infer_with_daisy(checkpoint, input_volume, output, workers,
                                  overrides=list(set_), weights=weights, device=device,
                                  overwrite=overwrite, restart=restart,
                                  worker_command=worker_command, host=host)
        typer.echo(_infer_summary(result))
        return
    from .inference.predict import infer_volume
    from .inference.records import parse_shard

    result = infer_volume(checkpoint, input_volume, output, overrides=list(set_), weights=weights,
                          device=device, overwrite=overwrite, shard=parse_shard(shard),
                          restart=restart)
    typer.echo(_infer_summary(result))


@app.command("infer-worker", hidden=True)
@user_errors
def infer_worker(
    checkpoint: Path = typer.Argument(..., help="The checkpoint the coordinator was given."),
    input_volume: str = typer.Argument(..., metavar="INPUT", help="The coordinator's input URI."),
    output: str = typer.Option(..., "-o", "--output", help="The coordinator's output URI."),
    set_: list[str] = typer.Option([], "--set", help="The coordinator's --set values."),
    weights: str = typer.Option("student", help="The coordinator's --weights."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:K."),
    threads: int | None = typer.Option(
        None, min=1, help="Torch CPU threads (default: OMP_NUM_THREADS, else every core)."),
) -> None:
    """One worker of `masktwins infer --workers N`: serve blocks to its daisy scheduler.

    The coordinator runs this (through --worker-command) with DAISY_CONTEXT set to the
    scheduler's address; arguments must match the coordinator's (checked against the run's
    manifest). It loads the model once and predicts the blocks the scheduler hands out.
    """
    from .inference.distributed import WorkerSpec, log_to_stderr, serve_blocks

    log_to_stderr()
    spec = WorkerSpec(str(checkpoint), input_volume, output, tuple(set_), weights, device, threads)
    predicted = serve_blocks(spec)
    typer.echo(f"infer-worker: {predicted} blocks predicted")


def _infer_summary(result) -> str:
    """One line: what this infer process did, with its block counts."""
    from .inference.records import shard_text

    who = f"shard {shard_text(result.shard)}: " if result.shard else ""
    counts = (f"{result.predicted} predicted, {result.skipped} already done, "
              f"{result.blocks} blocks in all")
    timing = f"{result.seconds:.1f} s on {result.device}"
    if result.state == "up-to-date":
        return (f"{who}{result.output} is already complete ({result.blocks} blocks, same input, "
                "checkpoint and settings); nothing to do")
    if result.state == "pending":
        return (f"{who}{counts}; {result.remaining} remain for other shards or a rerun ({timing}); "
                f"the last to finish writes {result.output}")
    if result.state == "handed-over":
        return f"{who}{counts}; all done, another process writes {result.output} ({timing})"
    return f"{who}wrote {result.output} ({'x'.join(map(str, result.shape))}; {counts}; {timing})"


@app.command()
@user_errors
def detect(
    probabilities: str | None = typer.Argument(
        None, metavar="PROBABILITIES", help="(2, z, y, x) probability volume, channel 0 pre, "
        "1 post (masktwins infer output), e.g. pred.zarr/probabilities."),
    output: Path = typer.Option(
        ..., "-o", "--output", help="Point table: .csv (kind,id,pre_id,z,y,x) or .h5 (WASP-SYN "
        "'pre' N x 3, 'post' M x 4)."),
    pre: str | None = typer.Option(None, help="Pre probability volume (z, y, x), with --post."),
    post: str | None = typer.Option(None, help="Post probability volume (z, y, x), with --pre."),
    pre_threshold: float = typer.Option(0.75, help="Pre foreground: probability >= this."),
    post_threshold: float = typer.Option(0.65, help="Post foreground: probability >= this."),
    min_size: int = typer.Option(1, help="Drop components smaller than this (voxels), both channels."),
    pre_min_size: int | None = typer.Option(None, help="Minimum pre size (default: --min-size)."),
    post_min_size: int | None = typer.Option(None, help="Minimum post size (default: --min-size)."),
    max_link_distance: float | None = typer.Option(
        None, help="Drop posts farther than this (voxels) from every pre."),
    block_shape: str | None = typer.Option(
        None, help="Block Z,Y,X voxels read at a time (default: whole chunks, about 128)."),
    offset: str | None = typer.Option(
        None, help="Global offset Z,Y,X (voxels) added to .h5 output (e.g. a crop's offset; "
        "put it in the file name, ..._<z0>-<z1>_<y0>-<y1>_<x0>-<x1>.h5, so that evaluate "
        "subtracts it again)."),
    overwrite: bool = typer.Option(False, help="Replace an existing output."),
) -> None:
    """Detect synapses: threshold, 26-connected components, centroids, each post -> nearest pre.

    Runs block by block (components crossing block borders are merged exactly). Points are in
    local voxel coordinates (z, y, x) of the volume, as the WASP-SYN challenge expects.
    """
    from .synapse.detect_run import detect_to_file, parse_numbers
    from .synapse.detection import DetectionSettings

    settings = DetectionSettings(
        pre_threshold, post_threshold, min_size if pre_min_size is None else pre_min_size,
        min_size if post_min_size is None else post_min_size, max_link_distance)
    run = detect_to_file(probabilities, output, settings, pre, post,
                         parse_numbers(block_shape, "--block-shape", True),
                         parse_numbers(offset, "--offset", False), overwrite)
    typer.echo(run.summary())


@app.command()
@user_errors
def evaluate(
    prediction: str = typer.Argument(
        ..., help="Probability volume URI (masktwins infer output); --task synapse: predicted "
        "point table (.csv, or WASP-SYN .h5)."),
    ground_truth: str = typer.Argument(
        ..., help="Label volume URI; --task synapse: true point table (.csv or WASP-SYN .h5)."),
    task: str = typer.Option(
        "mito", help="mito (segmentation: IoU, F1, MCC, mAP) or synapse (WASP-SYN point scores)."),
    threshold: float = typer.Option(0.5, help="Binarisation threshold (mito)."),
    mode: str = typer.Option(
        "per_slice", help="per_slice (mean over z-slices, the paper's) or volume (mito)."),
    pair: list[str] = typer.Option(
        [], "--pair", metavar="PRED,TRUTH", help="--task synapse: one more volume's point tables "
        "(repeatable); scores are averaged over volumes."),
    pre_radius: float = typer.Option(11.0, help="--task synapse: pre match radius (voxels)."),
    post_radius: float = typer.Option(6.5, help="--task synapse: post match radius (voxels)."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the scores to this JSON file."),
    overlay: Path | None = typer.Option(
        None, help="Write PNG overlays here (FN red, FP green, TP blue; synapse: pre filled, "
        "post hollow markers)."),
    raw: str | None = typer.Option(None, help="Image volume for --overlay."),
) -> None:
    """Score a prediction: IoU, F1, MCC at the threshold and average precision (mAP).

    With --task synapse: F1_pre, F1_post and score = (F1_pre + F1_post) / 2 with the WASP-SYN
    rules (Hungarian matching, radii 11 and 6.5 voxels), averaged over volumes. A WASP-SYN .h5
    table whose name holds a crop offset (syns_zyx_<z0>-<z1>_...) is shifted by it, as the
    challenge does for its ground truth; other tables hold local voxel coordinates.
    """
    from .config.recipe import write_text_atomic

    if task == "synapse":
        from .evaluation.synapse_run import evaluate_synapses
        from .progress import print_synapse_scores

        pairs = [(prediction, ground_truth)] + [_split_pair(text) for text in pair]
        result = evaluate_synapses(pairs, pre_radius, post_radius, overlay, raw)
        print_synapse_scores(result)
        if json_out is not None:
            write_text_atomic(json_out, json.dumps(result.as_dict(), indent=2, allow_nan=False) + "\n")
        return
    if task not in ("mito", "segmentation"):
        raise MaskTwinsError(f"--task {task!r}: expected mito (segmentation) or synapse")
    if pair:
        raise MaskTwinsError("--pair is for --task synapse (point tables)")
    from .evaluation.run import evaluate as run_evaluation
    from .progress import print_scores

    if mode not in ("per_slice", "volume"):
        raise MaskTwinsError(f"--mode {mode!r}: expected per_slice or volume")
    result = run_evaluation(prediction, ground_truth, threshold, mode, overlay, raw)
    print_scores(result)
    if json_out is not None:
        write_text_atomic(json_out, json.dumps(result.as_dict(), indent=2, allow_nan=False) + "\n")


def _split_pair(text: str) -> tuple[str, str]:
    """``--pair pred.csv,truth.h5`` -> (prediction, truth)."""
    parts = text.split(",")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise MaskTwinsError(f"--pair {text!r}: expected PRED,TRUTH (two point tables)")
    return parts[0].strip(), parts[1].strip()


@app.command()
@user_errors
def demo(
    out_dir: Path = typer.Argument(Path("runs/demo"), help="Folder for data, runs and results."),
    dims: int = typer.Option(2, help="2 or 3 (the 3-D demo takes longer)."),
    seed: list[int] = typer.Option([0], help="Seeds (repeatable); each gives its own data and runs."),
    iterations: int | None = typer.Option(None, help="Training iterations (default: the recipe's)."),
    set_: list[str] = typer.Option([], "--set", help="Override a recipe value for every run (repeatable)."),
    overwrite: bool = typer.Option(False, help="Replace a previous demo in OUT_DIR."),
) -> None:
    """The main job: synthetic pair -> NoAdapt, MaskTwins, Oracle -> infer -> evaluate -> table."""
    from .demo import run_demo
    from .progress import StageLog, print_demo_table

    with StageLog() as stages:
        result = run_demo(out_dir, dims=dims, seeds=list(seed), iterations=iterations,
                          overwrite=overwrite, report=stages.update, overrides=list(set_))
    print_demo_table(result)


@app.command("recipe")
@user_errors
def show_recipe(
    recipe: Path = typer.Argument(..., help="TOML recipe."),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
) -> None:
    """Validate a recipe and print it resolved (every key, with its documentation)."""
    from .config.recipe import load_recipe, recipe_to_toml

    typer.echo(recipe_to_toml(load_recipe(recipe, list(set_))), nl=False)


@app.callback(invoke_without_command=True)
def main_options(version: bool = typer.Option(False, "--version", help="Print the version.")) -> None:
    if version:
        from . import __version__

        typer.echo(f"masktwins {__version__}")
        raise typer.Exit()


def main() -> None:
    """Console-script entry point."""
    app(prog_name="masktwins")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
