"""Score finished runs on a labelled validation split of the target, apart from the test split.

A setting is chosen on a validation split, not on the test slices it is reported on. On the real
pair the CDeep3M *training* slices are that split: their images are the unlabelled target of
adaptation, their labels are never read by MaskTwins or NoAdapt (only the Oracle trains on them),
and the test slices (CDeep3M validation) stay untouched. A lab does the same when it labels a few
slices of its own target volume.

    python bench/val_split_scores.py --raw runs/real_on/data/cdeep3m/training.zarr/raw \
        --labels runs/real_on/data/cdeep3m/training.zarr/labels \
        "aug on=runs/real_on/seed*/masktwins" "aug off=runs/real_off/seed0/masktwins" ...

Each argument is ``LABEL=GLOB`` of run folders holding ``last.pt``; the prediction goes to
``RUN/val_split.zarr`` (replaced by each call: it belongs to this script). Prints per label the
runs' IoU, their mean and population std, and writes OUT/val_split.json.
"""

from __future__ import annotations

import argparse
import glob
import json
import statistics
import sys
from pathlib import Path

from masktwins_cli.errors import MaskTwinsError
from masktwins_cli.evaluation.run import evaluate
from masktwins_cli.inference.predict import infer_volume


def score_run(run: Path, raw: str, labels: str) -> dict:
    output = run / "val_split.zarr" / "probabilities"
    infer_volume(run / "last.pt", raw, str(output), device="cpu", overwrite=True)
    scores = evaluate(str(output), labels).scores.as_dict()
    return {"run": str(run), **{k: scores[k] for k in ("iou", "f1", "mcc", "ap")}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("groups", nargs="+", help="LABEL=GLOB of run folders")
    parser.add_argument("--raw", required=True)
    parser.add_argument("--labels", required=True)
    parser.add_argument("--out", type=Path, default=Path("runs/val_split"))
    args = parser.parse_args(argv)
    results = {}
    try:
        for group in args.groups:
            label, _, pattern = group.partition("=")
            runs = sorted(Path(p) for p in glob.glob(pattern) if (Path(p) / "last.pt").exists())
            if not runs:
                raise MaskTwinsError(f"{group}: no run folder with last.pt matches")
            results[label] = [score_run(run, args.raw, args.labels) for run in runs]
    except MaskTwinsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("| setting | runs | IoU per run | IoU mean ± std | mAP mean |")
    print("|---|---|---|---|---|")
    for label, rows in results.items():
        ious = [r["iou"] for r in rows]
        aps = [r["ap"] for r in rows if r["ap"] is not None]
        print(f"| {label} | {len(rows)} | {' / '.join(f'{v:.3f}' for v in ious)} | "
              f"{statistics.mean(ious):.3f} ± {statistics.pstdev(ious):.3f} | "
              f"{statistics.mean(aps):.3f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "val_split.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
