"""Synapse detection on the synthetic synapse pair: NoAdapt vs MaskTwins (vs Oracle), scored with
the WASP-SYN rules on the held-out target volume.

Per seed: ``masktwins prepare synthetic --task synapse --seed S`` (source with point labels, an
unlabeled target training volume, both 128^3, and a labeled target test volume, 128x256x256 by
default (--test-shape); 8 nm voxels), then every
method trains with ``recipes/synthetic_synapse.toml`` (only the switch under test differs),
predicts the target test volume with ``masktwins infer``, detects points (pre >= 0.75,
post >= 0.65, 26-connected components, nearest-pre links) and is scored (F1_pre within 11
voxels, F1_post within 6.5, score = their mean). Oracle trains on the target training volume's
labels instead of the source.

    python bench/synthetic_synapse.py                          # seeds 0 and 1, CPU size
    python bench/synthetic_synapse.py --scale gpu --seeds 0 1  # larger network, crops, runs

Writes OUT/results.json, OUT/results.md and OUT/curves.png (the logged loss terms and
pseudo-label counts of the first seed's runs); keeps finished runs between calls (same settings).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from masktwins_cli.cli_options import zyx_counts
from masktwins_cli.config.recipe import load_recipe
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
    markdown_table,
    summarise,
    train_and_score,
)
from masktwins_cli.io.atomic import write_text_atomic
from masktwins_cli.prepare.synthetic_synapses import write_synapse_pair
from masktwins_cli.synapse.detect_run import detect_to_file
from masktwins_cli.synapse.detection import DetectionSettings
from masktwins_cli.synapse.points import read_points
from masktwins_cli.synapse.scoring import score_synapses
from masktwins_cli.terminal import StageLog

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "synthetic_synapse.toml"
METRICS = ("f1_pre", "f1_post", "score")
HEADERS = ("F1_pre", "F1_post", "score")
TEST_SHAPE = (128, 256, 256)
ORACLE_DATA = ('data.source=[{raw = "target_train.zarr/raw", '
               'points = "target_train_points.csv"}]',)

METHODS = (
    MethodSpec("NoAdapt", ("method.adapt=false",)),
    MethodSpec("MaskTwins", ()),
    MethodSpec("Oracle", ("method.adapt=false", *ORACLE_DATA), every_seed=False),
)

SCALES = {
    "cpu": (),
    "gpu": ("model.features=[28,36,48,64,80]", "data.patch_size=[96,96,96]", "train.batch_size=4",
            "train.target_batch_size=4", "train.iterations=3000", "train.lr=1e-3",
            "train.warmup_iterations=100", "train.checkpoint_every=1000", "infer.batch_size=4"),
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_table_arguments(parser, SCALES, REPO / "runs" / "synthetic_synapse")
    parser.add_argument("--test-shape", type=lambda text: zyx_counts(text, "--test-shape"),
                        default=TEST_SHAPE, metavar="Z,Y,X",
                        help="size of the target test volume (default %(default)s: about 30 pre "
                        "points, so that F1 is not coarse)")
    return parser.parse_args(argv)


def seed_data(out: Path, seed: int, test_shape=TEST_SHAPE) -> tuple[Path, TestVolume]:
    """The synthetic synapse pair of ``seed`` under OUT/data (generated once; source and
    target_train 128^3, target_test of ``test_shape``) and its test volume."""
    data = out / "data" / f"seed{seed}"
    if not (data / "dataset.json").exists():
        write_synapse_pair(data, seed=seed, overwrite=True, test_shape=test_shape)
    return data, TestVolume(str(data / "target_test.zarr" / "raw"), str(data / "target_test_points.csv"))


def synapse_scores(prediction: str, test: TestVolume) -> dict:
    """Detect points in a (2, z, y, x) prediction and score them against ``test.labels`` (a point
    table): F1_pre, F1_post, score and the point counts."""
    table = Path(prediction).parent.with_suffix(".csv")
    detected = detect_to_file(prediction, table, DetectionSettings(), overwrite=True).points
    truth = read_points(test.labels)
    score = score_synapses(detected, truth)
    return {"f1_pre": score.f1_pre, "f1_post": score.f1_post, "score": score.score,
            "pred_pre": detected.n_pre, "pred_post": detected.n_post,
            "true_pre": truth.n_pre, "true_post": truth.n_post}


def detection_counts(runs: list[dict]) -> str:
    """Per run, detected against true points: shows over- and under-detection behind an F1."""
    lines = ["| method | seed | pre detected / true | post detected / true | score |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['seed']} | {r['pred_pre']} / {r['true_pre']} | "
              f"{r['pred_post']} / {r['true_post']} | {r['score']:.3f} |" for r in runs]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    methods = chosen_methods(args.methods, METHODS)
    common = [*SCALES[args.scale], *args.overrides]
    load_recipe(RECIPE, common)  # bad overrides fail before any work
    if args.out.exists() and args.overwrite:
        shutil.rmtree(args.out)
    settings = check_settings(args.out / "settings.json", common,
                              {"test_shape": list(args.test_shape)})
    started = time.perf_counter()
    with StageLog() as stages:
        runs = run_table(args, methods, METHODS, common,
                         lambda seed: seed_data(args.out, seed, args.test_shape),
                         lambda run_dir, overrides, test, label: train_and_score(
                             RECIPE, overrides, run_dir, test, label, stages.update, synapse_scores))
    summary = summarise(runs, [m.name for m in METHODS], METRICS)
    device, name = device_of(runs)
    meta = {"scale": args.scale, **settings, "seeds": sorted({r["seed"] for r in runs}),
            "device": device, "device_name": name, "torch_threads": torch.get_num_threads(),
            "wall_seconds": round(time.perf_counter() - started, 1)}
    write_text_atomic(args.out / "results.json", json.dumps(
        {**meta, "runs": runs, "summary": summary}, indent=2, default=float) + "\n")
    title = (f"Synthetic synapse pair, target test volume, scale {args.scale} on {device} ({name}), "
             f"seeds {meta['seeds']}; WASP-SYN scoring, mean ± std over seeds")
    table = markdown_table(summary, title, METRICS, HEADERS) + "\n" + detection_counts(runs)
    write_text_atomic(args.out / "results.md", table)
    curves = write_training_curves(args.out, runs, args.seeds[0],
                                   f"Synthetic synapse pair, seed {args.seeds[0]}: training curves")
    print(table)
    print(f"results: {args.out / 'results.json'}" + (f", curves: {curves}" if curves else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
