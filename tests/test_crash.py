"""kill -9 at random points of `masktwins infer` (plain, --overwrite, shards, concurrent runs)
and `masktwins train`, including inside commits and checkpoint writes; every interrupted job is
rerun until it finishes and must equal an uninterrupted run exactly, with nothing left behind
that blocks or litters the next run (issue 16).

Seeded: the default suite runs one scenario of each kind; ``-m slow`` runs many (each prints
``crash: <scenario> kills=<n>``; the closing note of issue 16 sums them).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from test_infer_resume import CHILD_ENV, cli_command

from masktwins_cli.io.volumes import open_volume, write_volume
from tiny_data import blob_volume, toml_document

pytest_plugins = ["test_infer_resume"]  # its checkpoint fixture
SHAPE = (6, 96, 96)  # 216 blocks of one (1, 16, 16) chunk each, about a second of prediction
Trigger = Callable[[], bool]


# ------------------------------------------------------------------------------- harness
def run_or_kill(command: list[str], rng: random.Random, triggers: dict[str, Trigger],
                expected_seconds: float) -> str:
    """Run ``command``; kill -9 it at a random moment or as soon as a randomly chosen trigger
    fires. Returns what happened: 'killed at <when>' or 'finished' (exit code 0 asserted)."""
    name = rng.choice(["time", "time", *triggers])
    delay = rng.uniform(0.3, expected_seconds * 1.1)
    child = subprocess.Popen(command, env=CHILD_ENV, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    started = time.monotonic()
    while child.poll() is None:
        now = time.monotonic() - started
        fire = now >= delay if name == "time" else triggers[name]()
        if fire or now > 120:
            child.send_signal(signal.SIGKILL)
            child.communicate()
            return f"killed at {name}" + (f" {delay:.2f} s" if name == "time" else "")
        time.sleep(0.0005)
    stdout, stderr = child.communicate()
    assert child.returncode == 0, (command, stdout, stderr)
    return "finished"


def finish(command: list[str]) -> str:
    """Run ``command`` to its end; its stdout (exit code 0 asserted)."""
    done = subprocess.run(command, env=CHILD_ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (command, done.stdout, done.stderr)
    return done.stdout


def report(scenario: str, events: list[str]) -> int:
    kills = sum(event.startswith("killed") for event in events)
    print(f"\ncrash: {scenario} kills={kills} events={events}")
    return kills


def hidden_leftovers(folder: Path) -> list[str]:
    """Staging, claim, lock, set-aside and temporary names below ``folder``."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*"))


# --------------------------------------------------------------------------------- infer
@pytest.fixture(scope="module")
def reference(checkpoint, tmp_path_factory) -> tuple[str, Path, float]:
    """(input URI, the output folder of one uninterrupted child run, its seconds)."""
    folder = tmp_path_factory.mktemp("crash_reference")
    raw, _ = blob_volume(SHAPE, seed=5)
    uri = f"{folder}/in.zarr/raw"
    write_volume(uri, raw, (40.0, 5.0, 5.0))
    started = time.monotonic()
    finish(cli_command(checkpoint, uri, folder / "ref.zarr" / "p"))
    return uri, folder / "ref.zarr" / "p", time.monotonic() - started


def assert_same_output(output: Path, expected: Path) -> None:
    """Every chunk file byte-identical, and the same array."""
    chunks = sorted(p.relative_to(expected) for p in (expected / "c").rglob("*") if p.is_file())
    assert chunks == sorted(p.relative_to(output) for p in (output / "c").rglob("*") if p.is_file())
    for chunk in chunks:
        assert (output / chunk).read_bytes() == (expected / chunk).read_bytes(), chunk
    assert np.array_equal(open_volume(str(output)).read_all(), open_volume(str(expected)).read_all())


def infer_triggers(tmp: Path, output: Path) -> dict[str, Trigger]:
    """Moments worth a kill: blocks recorded, a commit under way, an old output set aside."""
    done = tmp / f".{output.parent.name}.p.partial" / "done"

    def recorded(n: int) -> Trigger:
        return lambda: done.is_dir() and len(os.listdir(done)) >= n

    return {"first blocks": recorded(2), "most blocks": recorded(200),
            "commit": (tmp / f".{output.parent.name}.p.commit").exists,
            "old set aside": lambda: any(output.parent.glob(".p.old-*"))}


def infer_scenario(variant: str, seed: int, checkpoint: Path, reference, tmp: Path) -> int:
    """One crash scenario of ``variant``; returns the number of kills."""
    volume, expected, seconds = reference
    rng = random.Random(seed)
    output = tmp / "pred.zarr" / "p"
    extra = ("--overwrite",) if variant == "overwrite" else ()
    if variant == "overwrite":  # an old output of other content with many files: a wide commit
        write_volume(str(output), np.full(SHAPE, 0.25, np.float32), (40.0, 5.0, 5.0),
                     chunks=(1, 4, 4))
    triggers = infer_triggers(tmp, output)
    events: list[str] = []
    rounds = rng.randint(2, 3)
    for _ in range(rounds):
        if variant in ("plain", "overwrite"):
            events.append(run_or_kill(cli_command(checkpoint, volume, output, *extra), rng,
                                      triggers, seconds))
        else:
            commands = ([cli_command(checkpoint, volume, output, "--shard", f"{i}/2")
                         for i in (1, 2)] if variant == "shards"
                        else [cli_command(checkpoint, volume, output)] * 2)
            events += parallel_run_or_kill(commands, rng, triggers, seconds)
    if variant == "shards":
        for i in (1, 2):
            finish(cli_command(checkpoint, volume, output, "--shard", f"{i}/2"))
    else:
        finish(cli_command(checkpoint, volume, output, *extra))
    assert_same_output(output, expected)
    assert hidden_leftovers(tmp) == []
    assert sorted(p.name for p in tmp.iterdir()) == ["pred.zarr"]
    assert "already complete" in finish(cli_command(checkpoint, volume, output))
    return report(f"infer {variant} seed {seed}", events)


def parallel_run_or_kill(commands: list[list[str]], rng: random.Random,
                         triggers: dict[str, Trigger], seconds: float) -> list[str]:
    """Start every command at once; each is killed (or not) at its own random point."""
    from concurrent.futures import ThreadPoolExecutor

    seeds = [rng.random() for _ in commands]
    with ThreadPoolExecutor(len(commands)) as pool:
        futures = [pool.submit(run_or_kill, command, random.Random(s), triggers, 2 * seconds)
                   for command, s in zip(commands, seeds)]
        return [future.result() for future in futures]


VARIANTS = ["plain", "overwrite", "shards", "concurrent"]


@pytest.mark.parametrize("variant", ["overwrite", "concurrent"])
def test_infer_killed_at_random_points_equals_an_uninterrupted_run(checkpoint, reference, tmp_path,
                                                                   variant):
    assert infer_scenario(variant, 0, checkpoint, reference, tmp_path) >= 0


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(1, 6))
@pytest.mark.parametrize("variant", VARIANTS)
def test_infer_many_random_kills(checkpoint, reference, tmp_path, variant, seed):
    infer_scenario(variant, seed, checkpoint, reference, tmp_path)


# --------------------------------------------------------------------------------- train
def write_crash_recipe(folder: Path) -> Path:
    """A tiny 2-D recipe of 40 iterations with a checkpoint every 3 (many checkpoint writes)."""
    from conftest import tiny_recipe_sections, write_tiny_em_volumes

    sections = tiny_recipe_sections(folder, write_tiny_em_volumes(folder / "data"))
    sections["train"].update(iterations=40, checkpoint_every=3)
    path = folder / "crash.toml"
    path.write_text(toml_document(sections), encoding="utf-8")
    return path


def train_command(recipe: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "masktwins_cli.cli", "train", str(recipe), "--output-dir",
            str(out), *extra]


@pytest.fixture(scope="module")
def train_reference(tmp_path_factory) -> tuple[Path, Path, float]:
    """(recipe, the run folder of one uninterrupted child run, its seconds)."""
    folder = tmp_path_factory.mktemp("crash_train")
    recipe = write_crash_recipe(folder)
    started = time.monotonic()
    finish(train_command(recipe, folder / "reference"))
    return recipe, folder / "reference", time.monotonic() - started


def comparable_log(run: Path) -> list[dict]:
    from masktwins_cli.training.metrics_log import read_log

    return [{k: v for k, v in record.items() if k != "seconds"}
            for record in read_log(run / "log.jsonl")]


def assert_same_run(run: Path, expected: Path) -> None:
    """The same final weights (student and teacher), optimiser state, step and log records."""
    from masktwins_cli.io.checkpoints import load_checkpoint

    ours, theirs = load_checkpoint(run / "last.pt"), load_checkpoint(expected / "last.pt")
    assert ours["step"] == theirs["step"]
    for part in ("model", "teacher"):
        assert ours[part].keys() == theirs[part].keys()
        for key in ours[part]:
            assert torch.equal(ours[part][key], theirs[part][key]), (part, key)
    assert repr(ours["optimizer"]) == repr(theirs["optimizer"])
    assert comparable_log(run) == comparable_log(expected)


def train_scenario(seed: int, train_reference, tmp: Path) -> int:
    recipe, expected, seconds = train_reference
    rng = random.Random(seed)
    out = tmp / "run"
    triggers = {
        "checkpoint write": lambda: out.is_dir() and any(".tmp" in p.name for p in out.iterdir()),
        "first checkpoint": (out / "last.pt").exists,
        "log started": (out / "log.jsonl").exists,
    }
    def command() -> list[str]:  # a killed run is resumed once it has left its folder
        return train_command(recipe, out, *(["--resume"] if out.exists() else []))

    events = []
    for _ in range(rng.randint(2, 4)):
        events.append(run_or_kill(command(), rng, triggers, seconds))
        if events[-1] == "finished":
            break
    if events[-1] != "finished":
        finish(command())
    assert_same_run(out, expected)
    assert sorted(p.name for p in out.iterdir()) == ["last.pt", "log.jsonl", "recipe.toml"]
    return report(f"train seed {seed}", events)


def test_train_killed_at_random_points_equals_an_uninterrupted_run(train_reference, tmp_path):
    assert train_scenario(0, train_reference, tmp_path) >= 0


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(1, 11))
def test_train_many_random_kills(train_reference, tmp_path, seed):
    train_scenario(seed, train_reference, tmp_path)


def test_resume_starts_over_a_run_killed_before_its_first_checkpoint(train_reference, tmp_path):
    """A run killed before its first checkpoint leaves recipe.toml and log.jsonl: --resume
    starts it over rather than refusing ('no checkpoint') while a plain rerun refuses to
    replace the files; another recipe in the folder is still refused."""
    recipe, expected, _ = train_reference
    out = tmp_path / "run"
    out.mkdir()
    from masktwins_cli.config.recipe import load_recipe, recipe_to_toml

    (out / "recipe.toml").write_text(recipe_to_toml(load_recipe(recipe, output_dir=out)),
                                     encoding="utf-8")
    (out / "log.jsonl").write_text('{"step": 1, "loss": 0.5}\n{"step": 2, "lo', encoding="utf-8")
    refused = subprocess.run(train_command(recipe, out), env=CHILD_ENV, capture_output=True,
                             text=True, timeout=300)
    assert refused.returncode == 2 and "recipe.toml exists" in refused.stderr
    finish(train_command(recipe, out, "--resume"))
    assert_same_run(out, expected)
    killed_at_once = tmp_path / "early"  # killed after creating its folder, before any file
    killed_at_once.mkdir()
    (killed_at_once / ".recipe.toml.tmp-otherhost-1-ab").write_text("half")
    finish(train_command(recipe, killed_at_once, "--resume"))
    assert_same_run(killed_at_once, expected)
    other = tmp_path / "other"
    other.mkdir()
    (other / "recipe.toml").write_text("# my own notes\n", encoding="utf-8")
    refused = subprocess.run(train_command(recipe, other, "--resume"), env=CHILD_ENV,
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "no checkpoint" in refused.stderr
    assert (other / "recipe.toml").read_text(encoding="utf-8") == "# my own notes\n"
