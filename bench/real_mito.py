"""Real cross-domain mitochondria benchmark: VNC III (ssTEM, fly) -> CDeep3M (SBEM, mammal).

Prepares ../shared/data with ``masktwins prepare`` (VNC III stack1 resampled from 4.6 to 7.5 nm
so that mitochondria have the same width in pixels as in CDeep3M), trains every method of the
paper's Tables 2 and 4 with one recipe (``recipes/vnc3_to_cdeep3m.toml``, only the switch under
test differs), predicts the CDeep3M validation slices (held out, labeled) and scores them with
the per-slice IoU / F1 / MCC / mAP of the paper's baselines.

    python bench/real_mito.py                              # CPU scale, seeds 0 and 1
    python bench/real_mito.py --scale gpu --all-seeds      # GPU scale (one H100/H200)

``--data`` is the raw stacks' folder (``vnc3/``, ``cdeep3m/``) or a folder of the prepared
volumes (``vnc3.zarr``, ``cdeep3m/``: ``bench/device_check.py --pack-data``).

Writes OUT/results.json (every run: scores, wall times, device, final loss terms), OUT/results.md
(the table, mean ± population std over seeds), OUT/comparison.png (validation slices: image,
truth, NoAdapt, MaskTwins) and OUT/curves.png (the first seed's logged loss terms, pseudo-label
statistics and, with [[data.val]] volumes, validation scores over the iterations). Exits 0 with a
note when the data folder is absent.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import torch

from masktwins_cli.config.recipe import load_recipe
from masktwins_cli.errors import MaskTwinsError
from masktwins_cli.evaluation.figures import write_comparison_figure
from masktwins_cli.experiments.bench_runs import (
    add_table_arguments,
    check_settings,
    chosen_methods,
    device_of,
    run_table,
    write_training_curves,
)
from masktwins_cli.experiments.comparison import (
    MethodSpec,
    TestVolume,
    gap_closed,
    markdown_table,
    summarise,
    train_and_score,
)
from masktwins_cli.io.atomic import write_text_atomic
from masktwins_cli.io.volumes import open_volume
from masktwins_cli.prepare.real import prepare_preset
from masktwins_cli.terminal import StageLog

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "vnc3_to_cdeep3m.toml"
PIXEL_NM = 7.5  # in-plane scale both domains are brought to (see the README)
ORACLE_DATA = ('data.source=[{raw = "cdeep3m/training.zarr/raw", '
               'labels = "cdeep3m/training.zarr/labels"}]',)

METHODS = (
    MethodSpec("NoAdapt", ("method.adapt=false",)),
    MethodSpec("MIC (single mask)", ('method.mask_mode="single"',), every_seed=False),
    MethodSpec("RMask (random twins)", ('method.mask_mode="random"',), every_seed=False),
    MethodSpec("MaskTwins w/o EMA", ("method.ema=false",), every_seed=False),
    MethodSpec("MaskTwins w/o AdaIN", ("method.adain=false",), every_seed=False),
    MethodSpec("MaskTwins w/o L_cm", ("method.lambda_cm=0.0",), every_seed=False),
    MethodSpec("MaskTwins", ()),
    MethodSpec("Oracle", ("method.adapt=false", *ORACLE_DATA), every_seed=False),
)

# Settings per scale on top of the recipe, the same for every method.
SCALES = {
    "cpu": (),
    "gpu": ("model.features=[32,64,128,256,512]", "data.patch_size=[256,256]",
            "method.block_size=[32,32]", "train.batch_size=8", "train.target_batch_size=8",
            "train.iterations=4000", "train.lr=1e-3", "train.warmup_iterations=100",
            "method.ema_alpha=0.999", "train.checkpoint_every=1000", "train.log_every=200",
            "infer.batch_size=16"),
    # toy sizes (bench/device_check.py --scale smoke): prepare, train, infer, score in seconds
    "smoke": ("model.features=[4,4,4,4,4]", "data.patch_size=[64,64]", "method.block_size=[16,16]",
              "train.batch_size=1", "train.target_batch_size=1", "train.iterations=2",
              "train.checkpoint_every=2", "train.log_every=1", "train.val_every=0", "data.val=[]",
              "infer.batch_size=4"),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                        help="folder with vnc3/ and cdeep3m/ (default ../shared/data)")
    add_table_arguments(parser, SCALES, REPO / "runs" / "real_mito")
    return parser.parse_args(argv)


def prepare_data(data: Path, out: Path) -> Path:
    """Canonical zarr volumes under ``out`` (the recipe's data.root): vnc3.zarr, cdeep3m/."""
    prepare_preset("vnc3", data / "vnc3", out / "vnc3.zarr",
                   resample_to=(50, PIXEL_NM, PIXEL_NM))
    prepare_preset("cdeep3m", data / "cdeep3m", out / "cdeep3m",
                   voxel_size=(50, PIXEL_NM, PIXEL_NM))
    return out


def write_figure(out: Path, runs: list[dict], test: TestVolume, seed: int) -> Path | None:
    """comparison.png: three validation slices, image / truth / NoAdapt / MaskTwins."""
    mine = {r["method"]: r["prediction"] for r in runs if r["seed"] == seed}
    if not {"NoAdapt", "MaskTwins"} <= mine.keys():
        return None
    raw = open_volume(test.raw).read_all()
    truth = open_volume(test.labels).read_all() == 1
    predictions = {name: open_volume(mine[name]).read_all() for name in ("NoAdapt", "MaskTwins")}
    slices = [0, raw.shape[0] // 2, raw.shape[0] - 1]
    return write_comparison_figure(out / "comparison.png", raw, truth, predictions, slices, scale=0.4)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    packed = (args.data / "vnc3.zarr").is_dir()  # prepared already (bench/device_check.py --pack-data)
    if not packed and (not (args.data / "vnc3").is_dir() or not (args.data / "cdeep3m").is_dir()):
        print(f"skipped: {args.data} has no vnc3/ and cdeep3m/ (the real EM stacks of ../shared/data)")
        return 0
    methods = chosen_methods(args.methods, METHODS)
    common = [*SCALES[args.scale], *args.overrides]
    load_recipe(RECIPE, common)  # bad overrides fail before any work
    if args.out.exists() and args.overwrite:
        shutil.rmtree(args.out)
    settings = check_settings(args.out / "settings.json", common)
    root = args.data if packed else args.out / "data"
    if not (root / "cdeep3m" / "validation.zarr").exists():
        prepare_data(args.data, root)
    test = TestVolume(str(root / "cdeep3m" / "validation.zarr" / "raw"),
                      str(root / "cdeep3m" / "validation.zarr" / "labels"))
    started = time.perf_counter()
    with StageLog() as stages:
        runs = run_table(args, methods, METHODS, common, lambda seed: (root, test),
                         lambda run_dir, overrides, test_volume, label: train_and_score(
                             RECIPE, overrides, run_dir, test_volume, label, stages.update))
    summary = summarise(runs, [m.name for m in METHODS])
    device, gpu = device_of(runs)
    meta = {"scale": args.scale, **settings, "seeds": sorted({r["seed"] for r in runs}), "device": device,
            "device_name": gpu, "torch_threads": torch.get_num_threads(),
            "wall_seconds": round(time.perf_counter() - started, 1),
            "gap_closed_iou": gap_closed(summary, "MaskTwins")}
    write_text_atomic(args.out / "results.json", json.dumps(
        {**meta, "runs": runs, "summary": summary}, indent=2, default=float) + "\n")
    title = (f"VNC III -> CDeep3M validation slices, scale {args.scale} on {device} ({gpu}), "
             f"seeds {meta['seeds']}; per-slice metrics, mean ± std over seeds")
    table = markdown_table(summary, title)
    write_text_atomic(args.out / "results.md", table)
    figure = write_figure(args.out, runs, test, args.seeds[0])
    curves = write_training_curves(args.out, runs, args.seeds[0],
                                   f"VNC III -> CDeep3M, seed {args.seeds[0]}: training curves")
    print(table)
    closed = meta["gap_closed_iou"]
    print(f"MaskTwins closes {closed:.0%} of the NoAdapt-Oracle IoU gap" if closed is not None
          else "gap closed: n/a (needs NoAdapt, MaskTwins and Oracle with Oracle above NoAdapt)")
    print(f"results: {args.out / 'results.json'}" + (f", figure: {figure}" if figure else "")
          + (f", curves: {curves}" if curves else ""))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except MaskTwinsError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
