"""The ``masktwins`` command line: parse options, call one library function, print the result.

Heavy imports (torch, zarr, MONAI) happen inside the verbs so ``masktwins --help`` is instant.
User errors (:class:`MaskTwinsError`, unreadable files) are printed as one line on stderr with
exit code 2; no traceback.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer

from . import cli_options as parse
from .cli_prepare import prepare_app
from .cli_support import refuse_existing_outputs, user_errors
from .errors import MaskTwinsError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="MaskTwins: complementary-mask domain adaptation for EM segmentation.")
app.add_typer(prepare_app, name="prepare")

# Every TIFF problem becomes one masktwins error line; tifffile's own log records about the same
# file (e.g. "invalid page offset") would only add lines to stderr.
logging.getLogger("tifffile").setLevel(logging.CRITICAL)

SET_HELP = "Override a recipe value, e.g. --set train.lr=1e-4 (repeatable)."


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

    resolved = load_recipe(recipe, list(set_), output_dir)  # before the heavy imports: bad recipes fail fast
    from .terminal import TrainProgress
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
    mask: str | None = typer.Option(
        None, metavar="URI", help="Predict only where this volume is non-zero (same shape as "
        "the input or coarser, e.g. a tissue mask); output 0 elsewhere (infer.mask)."),
    tta: bool = typer.Option(
        False, "--tta", help="Flip test-time augmentation: mean over every flip of the "
        "window axes, 4x (2-D) or 8x (3-D) the compute (infer.tta)."),
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
        from .inference.distributed import infer_with_daisy  # checks the options first

        result = infer_with_daisy(checkpoint, input_volume, output, workers,
                                  overrides=list(set_), weights=weights, device=device,
                                  overwrite=overwrite, restart=restart,
                                  worker_command=worker_command, host=host, mask=mask, tta=tta)
        typer.echo(_infer_summary(result))
        return
    from .inference.predict import infer_volume

    result = infer_volume(checkpoint, input_volume, output, overrides=list(set_), weights=weights,
                          device=device, overwrite=overwrite, shard=parse.shard(shard),
                          restart=restart, mask=mask, tta=tta)
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
    """What this infer process did, with its block counts (and a note for a checkpoint of an
    unfinished training run)."""
    line = _infer_line(result)
    if getattr(result, "class_map", ""):
        line += f"\nclass map: {result.class_map} (argmax of the probabilities)"
    if getattr(result, "unfinished", ""):
        line += (f"\nnote: the checkpoint comes from an unfinished training run "
                 f"({result.unfinished})")
    return line


def _infer_line(result) -> str:
    from .inference.records import shard_text

    who = f"shard {shard_text(result.shard)}: " if result.shard else ""
    outside = f", {result.outside} outside the mask" if getattr(result, "outside", 0) else ""
    counts = (f"{result.predicted} predicted, {result.skipped} already done{outside}, "
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
    from .synapse.detect_run import detect_to_file
    from .synapse.detection import DetectionSettings

    settings = DetectionSettings(
        pre_threshold, post_threshold, min_size if pre_min_size is None else pre_min_size,
        min_size if post_min_size is None else post_min_size, max_link_distance)
    run = detect_to_file(probabilities, output, settings, pre, post,
                         parse.zyx_counts(block_shape, "--block-shape", "64,128,128"),
                         parse.zyx_offset(offset, "--offset"), overwrite)
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
    overwrite: bool = typer.Option(False, help="Replace an existing --json file and overlay PNGs."),
    num_classes: int | None = typer.Option(
        None, help="K: score an integer class map as K classes (default for infer's class maps: "
        "the recipe's model.num_classes; per-class probabilities (K, z, y, x) give K)."),
    ignore: int = typer.Option(
        255, help="K classes: truth value left out of every score (-1: none)."),
    classes: str | None = typer.Option(
        None, metavar="C,C,...", help="K classes: the classes the mIoU averages, e.g. the SYNTHIA "
        "16 (default: all)."),
    protocol: str | None = typer.Option(
        None, help="K classes: also report a benchmark's figures: synthia (SYNTHIA -> Cityscapes, "
        "19 classes: the 13 classes' IoUs, mIoU13 and mIoU16, the papers' Table 1)."),
    upsample: bool = typer.Option(
        False, help="K-class probabilities of a down-scaled input: resize them in-plane to the "
        "truth's size (bilinear) before the argmax, as Cityscapes scores full-resolution labels."),
) -> None:
    """Score a prediction: IoU, F1, MCC at the threshold and average precision (mAP).

    K classes (an integer class map with --num-classes or from infer, or per-class
    probabilities (K, z, y, x)): one confusion matrix over the whole volume, per-class IoU,
    mIoU over all classes or --classes, pixel accuracy; truth voxels equal to --ignore do not
    count.

    With --task synapse: F1_pre, F1_post and score = (F1_pre + F1_post) / 2 with the WASP-SYN
    rules (Hungarian matching, radii 11 and 6.5 voxels), averaged over volumes. A WASP-SYN .h5
    table whose name holds a crop offset (syns_zyx_<z0>-<z1>_...) is shifted by it, as the
    challenge does for its ground truth; other tables hold local voxel coordinates.
    """
    refuse_existing_outputs(json_out, overlay, overwrite)
    if task == "synapse":
        from .evaluation.synapse_run import evaluate_synapses
        from .terminal import print_synapse_scores

        pairs = [(prediction, ground_truth)] + [parse.file_pair(text) for text in pair]
        print_synapse_scores(evaluate_synapses(pairs, pre_radius, post_radius, overlay, raw,
                                               json_out))
        return
    if task not in ("mito", "segmentation"):
        raise MaskTwinsError(f"--task {task!r}: expected mito (segmentation) or synapse")
    if pair:
        raise MaskTwinsError("--pair is for --task synapse (point tables)")
    from .evaluation.run import evaluate as run_evaluation
    from .terminal import print_scores

    if mode not in ("per_slice", "volume"):
        raise MaskTwinsError(f"--mode {mode!r}: expected per_slice or volume")
    print_scores(run_evaluation(prediction, ground_truth, threshold, mode, overlay, raw,
                                json_out=json_out, num_classes=num_classes,
                                ignore=None if ignore == -1 else ignore,
                                classes=parse.class_list(classes), protocol=protocol,
                                upsample=upsample))


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
    from .experiments.demo import run_demo
    from .terminal import StageLog, print_demo_table

    with StageLog() as stages:
        result = run_demo(out_dir, dims=dims, seeds=list(seed), iterations=iterations,
                          overwrite=overwrite, report=stages.update, overrides=list(set_))
    print_demo_table(result)


@app.command()
@user_errors
def curves(
    runs: list[Path] = typer.Argument(..., help="Run folders (each with log.jsonl) or log.jsonl files."),
    out: Path = typer.Option(Path("curves.png"), "--out", "-o", help="PNG to write."),
    terms: str = typer.Option("", help="Comma-separated terms to plot (default: every logged term "
                                       "but lr), e.g. loss_sup,loss_cl,loss_cm,pseudo_foreground,val_iou."),
    label: list[str] = typer.Option([], help="Legend name per run, in order (repeatable; default: "
                                             "the shortest folder names that tell the runs apart)."),
    title: str = typer.Option("", help="Figure title."),
    overwrite: bool = typer.Option(False, help="Replace an existing --out file."),
) -> None:
    """Plot training curves from log.jsonl: loss terms, pseudo-label statistics, validation scores."""
    from .evaluation.curves import choose_terms, load_runs, write_curves

    refuse_existing_outputs(out, None, overwrite, "--out")

    logs = load_runs(runs, list(label) or None)
    chosen = choose_terms(logs, [t.strip() for t in terms.split(",") if t.strip()])
    path = write_curves(out, logs, chosen, title)
    typer.echo(f"wrote {path}: {len(chosen)} terms ({', '.join(chosen)}) x {len(logs)} runs")


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
