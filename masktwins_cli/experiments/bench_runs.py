"""Bookkeeping of benchmark tables that train many runs: one folder per (seed, method), a
``run.json`` per finished run, and a ``settings.json`` that keeps one table from mixing settings.

A second call with the same output folder and settings keeps the finished runs and trains only
the missing ones (a run an earlier call left unfinished starts again); other settings are
refused. Used by ``bench/real_mito.py`` and ``bench/synthetic_synapse.py``.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import MaskTwinsError
from ..io.atomic import write_text_atomic
from .comparison import MethodSpec


def chosen_methods(names: str, methods: Sequence[MethodSpec]) -> list[MethodSpec]:
    """The methods named in ``names`` (comma-separated; empty = all), in table order."""
    if not names:
        return list(methods)
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    known = {m.name: m for m in methods}
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise MaskTwinsError(f"--methods: unknown {unknown[0]!r}; known: {', '.join(known)}")
    return [m for m in methods if m.name in wanted]


def folder_name(method: str) -> str:
    """A run folder name from a method name: 'MaskTwins w/o EMA' -> 'masktwins_wo_ema'."""
    return re.sub(r"[^a-z0-9]+", "_", method.lower().replace("w/o", "wo")).strip("_")


def check_settings(path: Path, common: list[str], data: dict | None = None) -> dict:
    """The settings every run of a table shares (scale overrides + --set, and ``data``: how the
    benchmark's data were made, when it makes them); a folder made with other settings is
    refused, so runs of one table never mix settings."""
    settings = {"overrides": common, **({"data": data} if data else {})}
    if path.exists():
        earlier = json.loads(path.read_text())
        if earlier != settings:
            raise MaskTwinsError(f"{path.parent} holds runs made with other settings "
                                 f"({_describe(earlier)}; now {_describe(settings)}): pass "
                                 "--overwrite or another --out")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(settings, indent=2) + "\n")
    return settings


def _describe(settings: dict) -> str:
    """'--set a=1, test_shape [..]' for a settings.json record (``defaults`` when empty)."""
    data = settings.get("data", {})
    return ", ".join([f"--set {o}" for o in settings.get("overrides", [])] +
                     [f"{k} {v}" for k, v in data.items()]) or "defaults"


def run_once(run_dir: Path, method: str, seed: int, train_and_score: Callable[[], dict]) -> dict:
    """The run record from run_dir/run.json when an earlier call finished it; else
    ``train_and_score()`` (training into ``run_dir``), stored as run.json."""
    path = run_dir / "run.json"
    if path.exists():
        finished = json.loads(path.read_text())
        print(f">> {method} seed {seed}: finished earlier", flush=True)
        return finished
    shutil.rmtree(run_dir, ignore_errors=True)
    run = {"method": method, "seed": seed, **train_and_score()}
    write_text_atomic(path, json.dumps(run, indent=2) + "\n")
    return run


def all_runs(out: Path, runs: list[dict], methods: Sequence[MethodSpec]) -> list[dict]:
    """``runs`` plus every other finished run under ``out`` (seed*/*/run.json), in (seed, table
    order)."""
    done = {(r["method"], r["seed"]) for r in runs}
    earlier = [json.loads(p.read_text()) for p in sorted(out.glob("seed*/*/run.json"))]
    merged = runs + [r for r in earlier if (r["method"], r["seed"]) not in done]
    order = [m.name for m in methods]
    return sorted((r for r in merged if r["method"] in order),
                  key=lambda r: (r["seed"], order.index(r["method"])))


def add_table_arguments(parser, scales: Sequence[str], default_out: Path) -> None:
    """The options every table benchmark takes: --out, --scale, --seeds, --all-seeds, --methods,
    --set, --overwrite."""
    parser.add_argument("--out", type=Path, default=default_out)
    parser.add_argument("--scale", choices=sorted(scales), default="cpu")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--all-seeds", action="store_true",
                        help="run the rows marked first-seed-only (ablations, Oracle) for every seed")
    parser.add_argument("--methods", default="", help="comma-separated subset of method names")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="recipe override for every run (repeatable)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start OUT afresh (default: keep the finished runs of an earlier "
                             "call with the same --scale and --set, and run the missing ones)")


def run_table(args, methods: Sequence[MethodSpec], every_method: Sequence[MethodSpec],
              common: list[str], seed_setup: Callable[[int], tuple[Path, object]],
              train_and_score: Callable[..., dict]) -> list[dict]:
    """Train and score every (seed, method) of a table: ``seed_setup(seed)`` gives the data root
    and test volume of a seed; ``train_and_score(run_dir, overrides, test, label)`` one run.
    Runs a method marked ``every_seed=False`` for the first seed only unless ``args.all_seeds``.
    Returns every finished run under ``args.out`` (this call's and earlier ones)."""
    runs = []
    for seed in args.seeds:
        root, test = seed_setup(seed)
        for method in methods:
            if seed != args.seeds[0] and not method.every_seed and not args.all_seeds:
                continue
            run_dir = args.out / f"seed{seed}" / folder_name(method.name)
            overrides = [f"data.root={json.dumps(str(root))}", f"train.seed={seed}", *common,
                         *method.overrides]
            label = f"{method.name} seed {seed}"
            runs.append(run_once(run_dir, method.name, seed,
                                 lambda d=run_dir, o=overrides, t=test, b=label:
                                 train_and_score(d, o, t, b)))
    return all_runs(args.out, runs, every_method)


def write_training_curves(out: Path, runs: Sequence[dict], seed: int, title: str) -> Path | None:
    """OUT/curves.png: every logged term (losses, pseudo-label statistics, validation scores)
    of each run of ``seed``, one line per method; None, with the reason printed, when it cannot
    be drawn (e.g. matplotlib, the ``plot`` extra, is not installed)."""
    from ..evaluation.curves import choose_terms, load_runs, write_curves

    mine = [r for r in runs if r["seed"] == seed]
    if not mine:
        return None
    try:
        logs = load_runs([out / f"seed{seed}" / folder_name(r["method"]) for r in mine],
                         [r["method"] for r in mine])
        return write_curves(out / "curves.png", logs, choose_terms(logs, None), title)
    except MaskTwinsError as err:
        print(f"training curves not drawn: {err}")
        return None


def device_of(runs: Sequence[dict]) -> tuple[str, str]:
    """(device, its name) of the runs: the GPU's name, or the processor's."""
    import platform

    import torch

    device = runs[0]["device"]
    if device.startswith("cuda"):
        return device, torch.cuda.get_device_name(0)
    return device, platform.processor() or "CPU"
