"""Training next to a busy process: the OpenMP wait policy before (libgomp's default,
``OMP_WAIT_POLICY`` set empty) and after (PASSIVE, masktwins' default) this project's change.

Runs ``masktwins train`` (the demo recipe, ``--iterations`` iterations, 2 torch threads) as a
subprocess, alone and with one busy neighbour process (a pure-Python loop on one core), under
both policies, and prints the wall time of each against the baseline (default policy, alone).

    python bench/busy_neighbour.py                  # 30 iterations, 4 runs
    python bench/busy_neighbour.py --iterations 60 --out runs/busy

Writes OUT/busy_neighbour.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "synthetic_mito2d.toml"
POLICIES = {"default (before)": "", "PASSIVE (after)": "PASSIVE"}


def busy(stop_at: float) -> None:
    """Keep one core busy until ``stop_at`` (time.time())."""
    count = 0
    while time.time() < stop_at:
        count += 1


def train_seconds(data: Path, out: Path, iterations: int, policy: str) -> float:
    env = {**os.environ, "OMP_WAIT_POLICY": policy}
    command = [sys.executable, "-m", "masktwins_cli.cli", "train", str(RECIPE),
               "--set", f'data.root="{data}"', "--set", f"train.iterations={iterations}",
               "--set", "train.threads=2", "--set", f"train.checkpoint_every={iterations}",
               "--output-dir", str(out)]
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("runs/busy_neighbour"))
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from masktwins_cli.prepare.synthetic import prepare_synthetic

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = prepare_synthetic(Path(tmp) / "data", task="mito", dims=2, seed=0).out_dir
        for neighbour in (False, True):
            for name, policy in POLICIES.items():
                worker = None
                if neighbour:
                    worker = multiprocessing.Process(target=busy, args=(time.time() + 3600,))
                    worker.start()
                try:
                    seconds = train_seconds(data, Path(tmp) / f"run{len(rows)}", args.iterations,
                                            policy)
                finally:
                    if worker is not None:
                        worker.terminate()
                        worker.join()
                rows.append({"neighbour": neighbour, "policy": name, "seconds": round(seconds, 1)})
                print(f"{'busy neighbour' if neighbour else 'alone':15s} {name:17s} "
                      f"{seconds:7.1f} s ({seconds / rows[0]['seconds']:.2f}x the baseline: "
                      "default policy, alone)", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "busy_neighbour.json").write_text(json.dumps(
        {"machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
         "iterations": args.iterations, "runs": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
