"""``masktwins demo``: the main job on the embedded synthetic default.

For each seed: generate a synthetic source/target pair, train NoAdapt (source only), MaskTwins
and Oracle (trained on target labels: the upper reference) with the shipped recipe, predict the
held-out target test volume with each, and score it. Writes ``results.json`` and
``results.md`` (mean and standard deviation over seeds) in the output folder.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..config.recipe import load_recipe
from ..errors import MaskTwinsError
from ..io.atomic import write_text_atomic
from ..prepare.synthetic import prepare_synthetic
from .comparison import METRICS, Report, TestVolume, markdown_table, quoted, summarise, train_and_score

# method name -> recipe overrides on top of the shipped synthetic recipe
METHODS: dict[str, list[str]] = {
    "NoAdapt": ["method.adapt=false"],
    "MaskTwins": [],
    "Oracle": ["method.adapt=false",
               'data.source=[{raw = "target_train.zarr/raw", labels = "target_train.zarr/labels"}]'],
}
__all__ = ["METHODS", "METRICS", "DemoResult", "run_demo", "shipped_recipe", "summarise"]


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


def demo_table(summary: list[dict], dims: int, seeds: list[int]) -> str:
    """The summary as a Markdown table (for the README)."""
    return markdown_table(summary, f"Synthetic mitochondria, {dims}-D, target test volume, seeds "
                          f"{seeds} (mean ± std over seeds, per-slice metrics)")


def _run_seed(out: Path, dims: int, seed: int, iterations: int | None, report: Report,
              shape: tuple[int, int, int] | None, common: list[str]) -> list[dict]:
    seed_dir = out / f"seed{seed}"
    report(f"seed {seed}: generating the synthetic {dims}-D domain pair")
    data = prepare_synthetic(seed_dir / "data", task="mito", dims=dims, seed=seed, shape=shape)
    test = TestVolume(data.volumes["target_test/raw"], data.volumes["target_test/labels"])
    runs = []
    for method, extra in METHODS.items():
        overrides = [f"data.root={quoted(data.out_dir)}", f"train.seed={seed}", *extra, *common]
        if iterations is not None:
            overrides.append(f"train.iterations={iterations}")
        scored = train_and_score(shipped_recipe(f"synthetic_mito{dims}d.toml"), overrides,
                                 seed_dir / method.lower(), test, f"{method} seed {seed}", report)
        runs.append({"method": method, "seed": seed, **scored})
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
    if any(not 0 <= seed < 2**32 for seed in seeds):
        bad = next(seed for seed in seeds if not 0 <= seed < 2**32)
        raise MaskTwinsError(f"--seed {bad}: seeds are integers from 0 to 2**32 - 1")
    every_run = [*(overrides or []), *([f"train.iterations={iterations}"] if iterations is not None else [])]
    load_recipe(shipped_recipe(f"synthetic_mito{dims}d.toml"), every_run)  # fail fast: nothing written
    for seed in seeds:
        if (out / f"seed{seed}").exists():
            if not overwrite:
                raise MaskTwinsError(f"{out / f'seed{seed}'} exists from an earlier demo: pass "
                                     "--overwrite or choose another folder (nothing was changed)")
            shutil.rmtree(out / f"seed{seed}")
    runs = [run for seed in seeds
            for run in _run_seed(out, dims, seed, iterations, report, shape, overrides or [])]
    summary = summarise(runs, list(METHODS))
    results = out / "results.json"
    write_text_atomic(results, json.dumps({"dims": dims, "seeds": seeds, "runs": runs,
                                           "summary": summary}, indent=2) + "\n")
    write_text_atomic(out / "results.md", demo_table(summary, dims, seeds))
    return DemoResult(dims, seeds, runs, summary, results)
