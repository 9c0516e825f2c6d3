"""Peak memory of ``evaluate`` as the volume grows, against reading it whole.

K classes (default): writes a class map and a truth of class ids (uint8, K classes) at two
sizes, the larger 8x the evaluation's slab (``SLAB_VOXELS``), and measures the peak resident
memory (``ru_maxrss``) of a fresh process that (a) runs ``evaluate_classes`` (slab by slab) and
(b) the named baseline: reads both volumes whole and computes the same confusion matrix.
``--binary``: a float32 foreground probability and a 0/1 truth (10 % foreground), scored in
volume mode (IoU, F1, MCC, exact AP) by ``evaluate`` (slice by slice; AP holds the foreground
voxels' scores) against the baseline that reads both whole first. Prints one table; the
streamed peak should stay flat (binary: grow only with the foreground) while the baseline grows
with the volume.

    python bench/evaluate_memory.py [--binary] [--slab-voxels 4194304] [--classes 19]
        [--out runs/evaluate_memory]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CHILD = r"""
import json, resource, sys, time
import numpy as np
from masktwins_cli.evaluation import classes_run
from masktwins_cli.io.volumes import open_volume
from masktwins_cli.scoring.classes import confusion_matrix
mode, pred, truth, k, slab = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
if mode == "streamed":
    classes_run.SLAB_VOXELS = slab
    result = int(classes_run.evaluate_classes(pred, truth, k).scores.matrix.sum())
elif mode == "whole":
    result = int(confusion_matrix(open_volume(pred).read_all(), open_volume(truth).read_all(), k).sum())
elif mode == "binary-streamed":
    from masktwins_cli.evaluation.run import evaluate
    result = evaluate(pred, truth, mode="volume").scores.ap
else:
    from masktwins_cli.scoring.metrics import score_volume
    result = score_volume(open_volume(pred).read_all(), open_volume(truth).read_all(), 0.5,
                          "volume").ap
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peak_mib": after / 1024, "over_imports_mib": (after - before) / 1024,
                  "seconds": time.perf_counter() - started, "result": result}))
"""


def write_pair(folder: Path, shape: tuple[int, int, int], k: int, seed: int = 0) -> tuple[str, str]:
    from masktwins_cli.io.volumes import create_volume

    rng = np.random.default_rng(seed)
    pred, truth = f"{folder}/pred.zarr/map", f"{folder}/truth.zarr/labels"
    chunks = (8, shape[1], shape[2])
    outputs = [create_volume(uri, shape, np.uint8, chunks, (1.0, 1.0, 1.0), overwrite=True)
               for uri in (pred, truth)]
    for z in range(0, shape[0], chunks[0]):
        block = rng.integers(0, k, (min(chunks[0], shape[0] - z), *shape[1:]), dtype=np.uint8)
        outputs[1][z:z + block.shape[0]] = block
        noisy = np.where(rng.random(block.shape) < 0.2, rng.integers(0, k, block.shape), block)
        outputs[0][z:z + block.shape[0]] = noisy.astype(np.uint8)
    return pred, truth


def write_binary_pair(folder: Path, shape: tuple[int, int, int], seed: int = 0) -> tuple[str, str]:
    """A float32 foreground probability and its 0/1 truth (about 10 % foreground)."""
    from masktwins_cli.io.volumes import create_volume

    rng = np.random.default_rng(seed)
    pred, truth = f"{folder}/pred.zarr/probabilities", f"{folder}/truth.zarr/labels"
    chunks = (8, shape[1], shape[2])
    prob = create_volume(pred, shape, np.float32, chunks, (1.0, 1.0, 1.0), overwrite=True)
    labels = create_volume(truth, shape, np.uint8, chunks, (1.0, 1.0, 1.0), overwrite=True)
    for z in range(0, shape[0], chunks[0]):
        depth = min(chunks[0], shape[0] - z)
        block = (rng.random((depth, *shape[1:])) < 0.1).astype(np.uint8)
        labels[z:z + depth] = block
        prob[z:z + depth] = np.clip(0.3 * block + 0.7 * rng.random(block.shape), 0, 1).astype(np.float32)
    return pred, truth


def measure(mode: str, pred: str, truth: str, k: int, slab: int) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, mode, pred, truth, str(k), str(slab)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slab-voxels", type=int, default=4 * 1024 * 1024)
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--out", type=Path, default=Path("runs/evaluate_memory"))
    parser.add_argument("--binary", action="store_true",
                        help="a foreground probability in volume mode instead of K classes")
    args = parser.parse_args()
    plane = (512, 512)
    slab_depth = max(1, args.slab_voxels // (plane[0] * plane[1]))
    rows = []
    for factor in (1, 8):
        shape = (slab_depth * factor, *plane)
        folder = args.out / f"x{factor}"
        folder.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        pred, truth = write_binary_pair(folder, shape) if args.binary else \
            write_pair(folder, shape, args.classes)
        written = time.perf_counter() - started
        for mode in ("streamed", "whole (baseline)"):
            child = ("binary-" if args.binary else "") + mode.split(" ")[0]
            figures = measure(child, pred, truth, args.classes, args.slab_voxels)
            rows.append({"volume": "x".join(map(str, shape)), "slabs": factor, "mode": mode,
                         **figures, "write_seconds": written})
    kind = "float32 probability, volume mode" if args.binary else f"uint8, {args.classes} classes"
    print(f"| volume ({kind}) | slabs of {args.slab_voxels:,} voxels | "
          "evaluate | peak RSS MiB | above imports MiB | seconds |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['volume']} | {row['slabs']} | {row['mode']} | {row['peak_mib']:.0f} | "
              f"{row['over_imports_mib']:.0f} | {row['seconds']:.2f} |")
    (args.out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
