"""Every GPU figure the README needs, from one prepared command of at most 8 minutes.

Runs, on the device it finds, each within a time share given up front:

1. ``train_speed``: ``bench/train_speed.py`` (3-D batch 4 of 96^3 and 2-D batch 2 of 512^2 at
   the GPU scale: the MaskTwins step against the naive fp32 loop; bf16, channels-last);
2. ``infer_speed``: ``bench/infer_speed.py`` (a 512^3 zarr -> zarr against MONAI's
   ``sliding_window_inference`` and the network alone; peak host RSS at two sizes);
3. ``real_pair``: ``bench/real_mito.py`` for NoAdapt and MaskTwins, one seed, at the GPU scale
   with fewer iterations so both fit (``REAL_PAIR_ITERATIONS``), on ``--data``: the raw stacks
   (``vnc3/``, ``cdeep3m/``) or a folder made by ``--pack-data`` (prepared, compressed volumes,
   small enough to travel with the command to a machine without ``../shared``).

Budget guard: a part starts only if the time left holds its estimate, and runs under a timeout
of the time left; a part that is skipped, fails or runs out of time leaves a note and no
half-written figures (its folder is removed). Results: ``OUT/device_check.json`` (every figure,
the device, torch / CUDA versions, the commit, the plan) and ``OUT/device_check.md`` (a table
for the README).

    python bench/device_check.py --out runs/device_check --data ../shared/data     # GPU run
    python bench/device_check.py --dry-run                                          # the plan
    python bench/device_check.py --scale smoke --out /tmp/smoke                     # CPU, < 1 min
    python bench/device_check.py --pack-data runs/device_data                       # data to carry

Estimates (seconds, GPU scale) and where they come from: see :data:`PLAN`; none of them has
been measured on a GPU yet (no device was lent while this was written), so they are upper
guesses from the H100 reference in ``train_speed.py`` (naive 3-D step 0.26 s) and the CPU
timings scaled down, with room for start-up (imports, CUDA context, cuDNN autotuning).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUDGET_SECONDS = 480  # 8 minutes of wall time
REAL_PAIR_ITERATIONS = 800  # per training at the GPU scale, so that both fit the share


@dataclass(frozen=True)
class Part:
    """One measurement: its command (without the output folder), its estimate in seconds
    at the GPU scale and what the estimate rests on."""

    name: str
    estimate: dict[str, float]  # scale -> seconds
    sizes: str
    basis: str


PLAN = (
    Part("train_speed", {"gpu": 90.0, "smoke": 20.0},
         "3-D batch 4 of 96^3, 2-D batch 2 of 512^2; 20 timed steps after 5 warm-up, naive fp32 "
         "and MaskTwins (bf16, channels-last)",
         "naive 3-D step 0.26 s on an H100 (train_speed.py): about 4 x 25 steps x 0.26 s for "
         "both loops and both sizes, plus 40 s of start-up"),
    Part("infer_speed", {"gpu": 170.0, "smoke": 30.0},
         "512^3 uint8 zarr -> zarr, window 96^3, batch 4; MONAI and the network alone on the "
         "same volume; peak host RSS at 512^3 and 1024^3",
         "writing 0.13 + 1.07 GB of input, about 2,500 windows of 96^3 per pass at ~100 windows/s "
         "for four passes, plus start-up"),
    Part("real_pair", {"gpu": 200.0, "smoke": 40.0},
         f"VNC III -> CDeep3M, NoAdapt and MaskTwins, seed 0, GPU scale ({REAL_PAIR_ITERATIONS} "
         "iterations, batch 8 of 256^2), predicted and scored on the validation slices",
         "about 12 iterations/s for a 2-D U-Net of this size on one H100 (two forwards of the "
         "twins, teacher, source): 2 x 70 s, plus 60 s for preparing, predicting and scoring"),
)


def command(part: str, scale: str, out: Path, data: Path | None) -> list[str]:
    """The benchmark command of a part, writing into ``out``."""
    bench = {"train_speed": "train_speed.py", "infer_speed": "infer_speed.py",
             "real_pair": "real_mito.py"}[part]
    argv = [sys.executable, str(REPO / "bench" / bench), "--out", str(out)]
    if part == "real_pair":
        argv += ["--scale", scale, "--methods", "NoAdapt,MaskTwins", "--seeds", "0", "--overwrite"]
        if scale == "gpu":
            argv += ["--set", f"train.iterations={REAL_PAIR_ITERATIONS}"]
        if data is not None:
            argv += ["--data", str(data)]
        return argv
    return argv + ["--scale", scale]


def device_facts() -> dict:
    """The device, library versions and commit the figures belong to."""
    import torch

    cuda = torch.cuda.is_available()
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {"device": "cuda" if cuda else "cpu",
            "device_name": torch.cuda.get_device_name(0) if cuda else (platform.processor() or "CPU"),
            "torch": torch.__version__, "cuda": torch.version.cuda if cuda else None,
            "cudnn": torch.backends.cudnn.version() if cuda else None,
            "python": platform.python_version(), "commit": commit}


def figures_of(part: str, folder: Path) -> dict:
    """The figures a part wrote (its JSON), flattened to what the README reports."""
    if part == "train_speed":
        rows = json.loads((folder / "train_speed.json").read_text())["rows"]
        return {f"{row['dims']}d": {"crop": row["crop"], "batch": row["batch"],
                                    "steps_per_second": row["steps_per_second"],
                                    "speedup": row["speedup"]} for row in rows}
    if part == "infer_speed":
        result = json.loads((folder / "infer_speed.json").read_text())
        return {"volume": result["volume"], "seconds": result["seconds"],
                "speedup_vs_monai": result["speedup_vs_monai"],
                "fraction_of_network": result["fraction_of_network"],
                "peak_rss_gib": {str(r["size"]): r["peak_rss_gib"] for r in result.get("rss", [])}}
    result = json.loads((folder / "results.json").read_text())
    return {"summary": result["summary"], "wall_seconds": result["wall_seconds"],
            "device_name": result.get("device_name")}


def targets_of(parts: dict) -> list[dict]:
    """The README's speed and memory targets, each with its value and whether it is met (None
    when its part did not finish)."""
    train = parts["train_speed"].get("figures") or {}
    infer = parts["infer_speed"].get("figures") or {}
    step = (train.get("3d") or {}).get("speedup", {}).get("masktwins")
    rss = list((infer.get("peak_rss_gib") or {}).values())
    rows = [("3-D training step >= 3x the naive fp32 loop", step, 3.0, ">="),
            ("inference >= 3x MONAI end to end", infer.get("speedup_vs_monai"), 3.0, ">="),
            ("inference >= 80 % of the network alone", infer.get("fraction_of_network"), 0.8, ">="),
            ("inference host RSS < 2 GiB at both sizes", max(rss) if rss else None, 2.0, "<")]
    return [{"target": name, "value": value,
             "met": None if value is None else (value >= bound if op == ">=" else value < bound)}
            for name, value, bound, op in rows]


def run_part(part: Part, scale: str, out: Path, data: Path | None, deadline: float) -> dict:
    """Run one part under the budget guard; its figures, or a note of why there are none."""
    left = deadline - time.monotonic()
    estimate = part.estimate[scale]
    if left < estimate:
        return {"status": "skipped", "seconds": 0.0, "figures": None,
                "note": f"{left:.0f} s left, the part needs about {estimate:.0f} s"}
    folder, log = out / part.name, out / "logs" / f"{part.name}.log"
    shutil.rmtree(folder, ignore_errors=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        with open(log, "w", encoding="utf-8") as stream:
            done = subprocess.run(command(part.name, scale, folder, data), cwd=REPO, stdout=stream,
                                  stderr=subprocess.STDOUT, timeout=left)
        status = "done" if done.returncode == 0 else "failed"
        note = "" if status == "done" else f"exit code {done.returncode}, see {log}"
        figures = figures_of(part.name, folder) if status == "done" else None
    except subprocess.TimeoutExpired:
        status, note, figures = "timed out", f"stopped when the budget ran out, see {log}", None
    except FileNotFoundError:  # the benchmark skipped itself (real_pair without its data)
        status, note, figures = "skipped", f"no figures written (no data at --data?), see {log}", None
    except (OSError, KeyError, ValueError) as err:
        status, note, figures = "failed", f"{type(err).__name__}: {err}; see {log}", None
    if figures is None:
        shutil.rmtree(folder, ignore_errors=True)  # never half-written figures
    return {"status": status, "seconds": round(time.monotonic() - started, 1),
            "figures": figures, "note": note}


def markdown(report: dict) -> str:
    """The table for the README."""
    d = report["device"]
    lines = [f"Device check on {d['device_name']} ({d['device']}), torch {d['torch']}, CUDA "
             f"{d['cuda']}, commit {str(d['commit'])[:10]}, scale {report['scale']}, "
             f"{report['seconds']:.0f} s of a {report['budget_seconds']} s budget.", "",
             "| part | status | seconds | figures |", "|---|---|---|---|"]
    for name, part in report["parts"].items():
        lines.append(f"| {name} | {part['status']} | {part['seconds']} | "
                     f"{_short(name, part['figures']) or part['note']} |")
    lines += ["", "| target | value | met |", "|---|---|---|"]
    for target in report["targets"]:
        value = "n/a" if target["value"] is None else f"{target['value']:.3g}"
        met = {True: "yes", False: "no", None: "n/a"}[target["met"]]
        lines.append(f"| {target['target']} | {value} | {met} |")
    return "\n".join(lines) + "\n"


def _short(name: str, figures: dict | None) -> str:
    if not figures:
        return ""
    if name == "train_speed":
        return "; ".join(f"{k}: {v['steps_per_second']['masktwins']:.2f} steps/s, "
                         f"{v['speedup']['masktwins']:.2f}x naive" for k, v in figures.items())
    if name == "infer_speed":
        rss = ", ".join(f"{size}^3 {gib:.2f} GiB" for size, gib in figures["peak_rss_gib"].items())
        return (f"{figures['speedup_vs_monai']:.2f}x MONAI, {100 * figures['fraction_of_network']:.0f} % "
                f"of the network alone; peak RSS {rss}")
    return "; ".join(f"{row['method']}: IoU {row['iou']['mean']:.3f}, F1 {row['f1']['mean']:.3f}"
                     for row in figures["summary"])


def pack_data(source: Path, out: Path) -> int:
    """Prepare the real pair once into ``out`` (what ``real_pair`` reads), so it can travel to a
    machine without ``../shared``; prints the size."""
    sys.path.insert(0, str(REPO / "bench"))
    from real_mito import prepare_data

    if out.exists():
        print(f"{out} exists; remove it first")
        return 2
    prepare_data(source, out)
    shutil.rmtree(out / "cdeep3m" / "testset.zarr", ignore_errors=True)  # not read by real_pair
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"packed {out}: {size / 2**20:.1f} MiB (real_pair reads it with --data {out})")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "device_check")
    parser.add_argument("--scale", choices=("gpu", "smoke"), default="gpu")
    parser.add_argument("--budget", type=float, default=BUDGET_SECONDS, help="seconds of wall time")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                        help="the real pair: raw stacks (vnc3/, cdeep3m/) or a --pack-data folder")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    parser.add_argument("--pack-data", type=Path, default=None, metavar="DIR",
                        help="prepare the real pair from --data into DIR and stop")
    args = parser.parse_args(argv)
    if args.pack_data is not None:
        return pack_data(args.data, args.pack_data)
    total = sum(p.estimate[args.scale] for p in PLAN)
    print(f"plan ({args.scale} scale, budget {args.budget:.0f} s; estimates add up to {total:.0f} s):")
    for part in PLAN:
        print(f"  {part.name:<12} {part.estimate[args.scale]:>6.0f} s  {part.sizes}\n"
              f"  {'':<12} {'':>8}  estimate: {part.basis}")
    if args.dry_run:
        return 0 if total <= args.budget else 1
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    deadline = started + args.budget
    parts = {}
    for part in PLAN:
        parts[part.name] = run_part(part, args.scale, args.out, args.data, deadline)
        print(f"{part.name}: {parts[part.name]['status']} in {parts[part.name]['seconds']} s "
              f"{parts[part.name]['note']}".rstrip(), flush=True)
    report = {"scale": args.scale, "budget_seconds": args.budget,
              "seconds": round(time.monotonic() - started, 1), "device": device_facts(),
              "plan": [{"part": p.name, "estimate_seconds": p.estimate[args.scale], "sizes": p.sizes,
                        "basis": p.basis} for p in PLAN],
              "parts": parts, "targets": targets_of(parts)}
    (args.out / "device_check.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    table = markdown(report)
    (args.out / "device_check.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
