"""Method comparisons: train one recipe under several switch settings, predict a labeled test
volume with each, score it, and summarise mean and spread over seeds.

Used by ``masktwins demo`` (synthetic pair) and ``bench/real_mito.py`` (real EM pair). A method
is a name and a list of recipe overrides (``--set`` strings) on top of one shared recipe, so
every method gets the same settings apart from the switch under test.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..config.recipe import load_recipe
from ..evaluation.run import evaluate
from ..inference.predict import infer_volume
from ..training.run import train

METRICS = ("iou", "f1", "mcc", "ap")
METRIC_HEADERS = ("IoU", "F1", "MCC", "mAP")
Report = Callable[..., None]


@dataclass(frozen=True)
class MethodSpec:
    """A compared method: its table name and recipe overrides; ``every_seed`` False runs it for
    the first seed only (ablation rows when time is short)."""

    name: str
    overrides: tuple[str, ...] = ()
    every_seed: bool = True


@dataclass(frozen=True)
class TestVolume:
    """The labeled volume every method is scored on (URIs)."""

    raw: str
    labels: str


def quoted(value: str | Path) -> str:
    """A string as a TOML value for ``--set key=value``."""
    return json.dumps(str(value))


def segmentation_scores(prediction: str, test: TestVolume) -> dict:
    """IoU, F1, MCC and AP of a foreground probability volume against ``test.labels``."""
    scores = evaluate(prediction, test.labels).scores
    return {m: getattr(scores, m) for m in METRICS}


def train_and_score(recipe_path: str | Path, overrides: Sequence[str], run_dir: Path,
                    test: TestVolume, label: str, report: Report,
                    scorer: Callable[[str, TestVolume], dict] = segmentation_scores) -> dict:
    """Train with ``recipe_path`` + ``overrides`` into ``run_dir``, predict ``test.raw`` into
    ``run_dir/prediction.zarr/probabilities`` and score it with ``scorer(prediction, test)``.

    Returns one run record: train and infer wall time (s), the device, the last logged training
    record (loss terms, confident fraction) and the scores (default: iou, f1, mcc, ap; ap None
    when the test volume has no foreground).
    """
    recipe = load_recipe(recipe_path, [*overrides, f"train.output_dir={quoted(run_dir)}"])
    report(f"training {label} ({recipe.train.iterations} iterations)")
    trained = train(recipe, report=lambda step, total, rec: report(label, step, total, rec))
    prediction = str(run_dir / "prediction.zarr" / "probabilities")
    inferred = infer_volume(trained.last_checkpoint, test.raw, prediction, overwrite=True)
    scores = scorer(prediction, test)
    report(f"{label}: " + " ".join(f"{k} {v:.3f}" for k, v in scores.items()
                                   if isinstance(v, float)))
    final = {k: v for k, v in trained.final_record.items() if isinstance(v, (int, float))}
    return {"train_seconds": round(trained.seconds, 1), "infer_seconds": round(inferred.seconds, 1),
            "device": trained.device, "iterations": trained.iterations, "final_record": final,
            "prediction": prediction, **scores}


def summarise(runs: Sequence[dict], methods: Sequence[str],
              metrics: Sequence[str] = METRICS) -> list[dict]:
    """Per method (in ``methods`` order): number of seeds, mean train time and the mean and
    population standard deviation of every metric (None values, e.g. undefined AP, skipped)."""
    rows = []
    for method in methods:
        mine = [r for r in runs if r["method"] == method]
        if not mine:
            continue
        row = {"method": method, "seeds": len(mine),
               "train_seconds": statistics.mean(r["train_seconds"] for r in mine)}
        for metric in metrics:
            values = [r[metric] for r in mine if r[metric] is not None]
            row[metric] = {"mean": statistics.mean(values) if values else float("nan"),
                           "std": statistics.pstdev(values) if len(values) > 1 else 0.0}
        rows.append(row)
    return rows


def markdown_table(summary: Sequence[dict], title: str, metrics: Sequence[str] = METRICS,
                   headers: Sequence[str] = METRIC_HEADERS) -> str:
    """The summary as a Markdown table: mean ± std over seeds, seed count, train seconds."""
    lines = [title, "", "| method | seeds | " + " | ".join(headers) + " | train s |",
             "|---|---|" + "---|" * len(metrics) + "---|"]
    for row in summary:
        cells = [stat_cell(row[m], row["seeds"]) for m in metrics]
        lines.append(f"| {row['method']} | {row['seeds']} | " + " | ".join(cells)
                     + f" | {row['train_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def stat_cell(stat: dict, seeds: int) -> str:
    """``mean ± std`` over seeds; the mean alone for one seed (a spread of one run is no
    spread)."""
    if math.isnan(stat["mean"]):
        return "nan"
    if seeds < 2:
        return f"{stat['mean']:.3f}"
    return f"{stat['mean']:.3f} ± {stat['std']:.3f}"


def gap_closed(summary: Sequence[dict], adapted: str, baseline: str = "NoAdapt",
               oracle: str = "Oracle", metric: str = "iou") -> float | None:
    """Fraction of the baseline-to-oracle gap in ``metric`` that ``adapted`` closes (mean over
    seeds); None when a row is missing or the oracle is not above the baseline."""
    means = {row["method"]: row[metric]["mean"] for row in summary}
    if not {adapted, baseline, oracle} <= means.keys():
        return None
    gap = means[oracle] - means[baseline]
    return None if gap <= 0 else (means[adapted] - means[baseline]) / gap
