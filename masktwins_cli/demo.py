"""``masktwins demo``: the main job on the embedded synthetic default.

For each seed: generate a synthetic source/target pair, train NoAdapt (source only), MaskTwins
and Oracle (trained on target labels: the upper reference) with the shipped recipe, predict the
held-out target test volume with each, and score it. Writes ``results.json`` and
``results.md`` (mean and standard deviation over seeds) in the output folder.
"""

from __future__ import annotations

import json
import shutil
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .config.recipe import load_recipe, write_text_atomic
from .errors import MaskTwinsError
from .evaluation.run import evaluate
from .inference.predict import infer_volume
from .prepare.synthetic import prepare_synthetic
from .training.run import train

# method name -> recipe overrides on top of the shipped synthetic recipe
METHODS: dict[str, list[str]] = {
    "NoAdapt": ["method.adapt=false"],
    "MaskTwins": [],
    "Oracle": ["method.adapt=false", 'data.source_raw="target_train.zarr/raw"',
               'data.source_labels="target_train.zarr/labels"'],
}
METRICS = ("iou", "f1", "mcc", "ap")
Report = Callable[..., None]


@dataclass(frozen=True)
class DemoResult:
    """Per-run scores and the per-method summary."""

    dims: int
    seeds: list[int]
    runs: list[dict]
    summary: list[dict]
    results_json: Path


def shipped_recipe(name: str) -> Path:
    """Path of a recipe shipped inside the package (``recipes/`` in the source tree)."""
    path = Path(str(resources.files("masktwins_cli.recipes") / name))
    if not path.is_file():
        raise MaskTwinsError(f"shipped recipe {name} is missing from the installation")
    return path


def summarise(runs: list[dict]) -> list[dict]:
    """Mean and population standard deviation of every metric per method."""
    rows = []
    for method in METHODS:
        mine = [r for r in runs if r["method"] == method]
        row = {"method": method, "train_seconds": statistics.mean(r["train_seconds"] for r in mine)}
        for metric in METRICS:
            values = [r[metric] for r in mine if r[metric] is not None]
            row[metric] = {"mean": statistics.mean(values) if values else float("nan"),
                           "std": statistics.pstdev(values) if len(values) > 1 else 0.0}
        rows.append(row)
    return rows


def markdown_table(summary: list[dict], dims: int, seeds: list[int]) -> str:
    """The summary as a Markdown table (for the README)."""
    lines = [f"Synthetic mitochondria, {dims}-D, target test volume, seeds {seeds} "
             "(mean ± std over seeds, per-slice metrics)", "",
             "| method | IoU | F1 | MCC | mAP | train s |", "|---|---|---|---|---|---|"]
    for row in summary:
        cells = [f"{row[m]['mean']:.3f} ± {row[m]['std']:.3f}" for m in METRICS]
        lines.append(f"| {row['method']} | " + " | ".join(cells) + f" | {row['train_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def _run_seed(out: Path, dims: int, seed: int, iterations: int | None, report: Report,
              shape: tuple[int, int, int] | None, common: list[str]) -> list[dict]:
    seed_dir = out / f"seed{seed}"
    report(f"seed {seed}: generating the synthetic {dims}-D domain pair")
    data = prepare_synthetic(seed_dir / "data", task="mito", dims=dims, seed=seed, shape=shape)
    recipe_path = shipped_recipe(f"synthetic_mito{dims}d.toml")
    runs = []
    for method, extra in METHODS.items():
        run_dir = seed_dir / method.lower()
        overrides = [f"data.root={json.dumps(str(data.out_dir))}",
                     f"train.output_dir={json.dumps(str(run_dir))}", f"train.seed={seed}", *extra,
                     *common]
        if iterations is not None:
            overrides.append(f"train.iterations={iterations}")
        recipe = load_recipe(recipe_path, overrides)
        report(f"seed {seed}: training {method} ({recipe.train.iterations} iterations)")
        trained = train(recipe, report=lambda step, total, rec, m=method: report(
            f"{m} seed {seed}", step, total, rec))
        prediction = str(run_dir / "prediction.zarr" / "probabilities")
        infer_volume(trained.last_checkpoint, data.volumes["target_test/raw"], prediction)
        scores = evaluate(prediction, data.volumes["target_test/labels"]).scores
        report(f"seed {seed}: {method} IoU {scores.iou:.3f} F1 {scores.f1:.3f}")
        runs.append({"method": method, "seed": seed, "train_seconds": round(trained.seconds, 1),
                     **{m: getattr(scores, m) for m in METRICS}})
    return runs


def run_demo(out_dir: str | Path = "runs/demo", dims: int = 2, seeds: list[int] | None = None,
             iterations: int | None = None, overwrite: bool = False,
             report: Report | None = None, shape: tuple[int, int, int] | None = None,
             overrides: list[str] | None = None) -> DemoResult:
    """Run the whole comparison; returns the scores (also written to results.json / .md).

    ``shape`` (volume size) and ``overrides`` (recipe ``--set`` values for every run) exist for
    quick checks; the defaults are the demo.
    """
    seeds = seeds or [0]
    out = Path(out_dir)
    report = report or (lambda *args, **kwargs: None)
    if dims not in (2, 3):
        raise MaskTwinsError(f"--dims {dims}: expected 2 or 3")
    load_recipe(shipped_recipe(f"synthetic_mito{dims}d.toml"), overrides or [])  # fail fast
    for seed in seeds:
        if (out / f"seed{seed}").exists():
            if not overwrite:
                raise MaskTwinsError(f"{out / f'seed{seed}'} exists from an earlier demo: pass "
                                     "--overwrite or choose another folder (nothing was changed)")
            shutil.rmtree(out / f"seed{seed}")
    runs = [run for seed in seeds
            for run in _run_seed(out, dims, seed, iterations, report, shape, overrides or [])]
    summary = summarise(runs)
    results = out / "results.json"
    write_text_atomic(results, json.dumps({"dims": dims, "seeds": seeds, "runs": runs,
                                           "summary": summary}, indent=2) + "\n")
    write_text_atomic(out / "results.md", markdown_table(summary, dims, seeds))
    return DemoResult(dims, seeds, runs, summary, results)
