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

from .comparison import MethodSpec
from .config.recipe import write_text_atomic
from .errors import MaskTwinsError


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


def check_settings(path: Path, common: list[str]) -> dict:
    """The settings every run of a table shares (scale overrides + --set); a folder made with
    other settings is refused, so runs of one table never mix settings."""
    settings = {"overrides": common}
    if path.exists():
        earlier = json.loads(path.read_text())
        if earlier != settings:
            raise MaskTwinsError(f"{path.parent} holds runs made with other settings "
                                 f"{earlier['overrides']}: pass --overwrite or another --out")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(settings, indent=2) + "\n")
    return settings


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
